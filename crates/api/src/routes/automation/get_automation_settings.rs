use actix_web::{HttpResponse, get, web};

use crate::AppState;
use crate::dto::AutomationSettings;
use crate::error::{ApiError, ErrorResponse, ServerErrors};
use crate::extract::ApiKeyUser;

/// The key owner's automation settings; created with defaults (off, 3600 s) on first read.
#[utoipa::path(
    operation_id = "get_automation_settings_api_v1_automation_settings_get",
    tag = "Automation",
    responses(
        (status = 200, description = "The settings", body = AutomationSettings),
        (status = 401, description = "Missing or invalid API key", body = ErrorResponse),
        ServerErrors,
    ),
    security(("APIKeyAuth" = []))
)]
#[get("/settings")]
pub async fn get_automation_settings(
    state: web::Data<AppState>,
    key: ApiKeyUser,
) -> Result<HttpResponse, ApiError> {
    let settings = state.automation.get(key.0.user_id()).await?;
    Ok(HttpResponse::Ok().json(AutomationSettings::from(settings)))
}
