use actix_web::{HttpResponse, put, web};
use morpheus_domain::{AutomationUpdate, SessionDuration};

use crate::AppState;
use crate::dto::{AutomationSettings, AutomationSettingsBase};
use crate::error::{ApiError, ErrorResponse, Fields, JsonBodyErrors, ServerErrors};
use crate::extract::{ApiKeyUser, ValidatedJson};

/// Update the key owner's automation settings. Fields left out or null keep their value (the
/// original gateway reset them to defaults).
#[utoipa::path(
    operation_id = "update_automation_settings_api_v1_automation_settings_put",
    tag = "Automation",
    request_body = AutomationSettingsBase,
    responses(
        (status = 200, description = "The updated settings", body = AutomationSettings),
        (status = 401, description = "Missing or invalid API key", body = ErrorResponse),
        JsonBodyErrors, ServerErrors,
    ),
    security(("APIKeyAuth" = []))
)]
#[put("/settings")]
pub async fn update_automation_settings(
    state: web::Data<AppState>,
    key: ApiKeyUser,
    body: ValidatedJson<AutomationSettingsBase>,
) -> Result<HttpResponse, ApiError> {
    let mut fields = Fields::default();
    let duration = fields.check(
        "session_duration",
        body.0
            .session_duration
            .map(SessionDuration::parse)
            .transpose(),
    );
    let Some(session_duration) = duration else {
        return Err(fields.into());
    };
    let update = AutomationUpdate {
        is_enabled: body.0.is_enabled,
        session_duration,
    };
    let settings = state.automation.update(key.0.user_id(), update).await?;
    Ok(HttpResponse::Ok().json(AutomationSettings::from(settings)))
}
