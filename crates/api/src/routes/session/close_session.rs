use actix_web::{HttpResponse, post, web};

use super::{owner, selected};
use crate::AppState;
use crate::dto::{CloseSessionResponse, SessionSelector};
use crate::error::{ApiError, ErrorResponse, HTTPValidationError, MarketplaceErrors, ServerErrors};
use crate::extract::{ApiKeyUser, ValidatedQuery};

/// Closes one of the key's sessions (`session_id`), or all its active ones. Closing before the
/// session's end locks the unused stake on chain for about a day.
#[utoipa::path(
    operation_id = "close_session_api_v1_session_closesession_post",
    tag = "Session",
    params(SessionSelector),
    responses(
        (status = 200, description = "What was closed", body = CloseSessionResponse),
        (status = 401, description = "Missing or invalid API key", body = ErrorResponse),
        (status = 404, description = "The session is not one of this key's", body = ErrorResponse),
        (status = 422, description = "session_id is not a session id", body = HTTPValidationError),
        MarketplaceErrors, ServerErrors,
    ),
    security(("APIKeyAuth" = []))
)]
#[post("/closesession")]
pub async fn close_session(
    state: web::Data<AppState>,
    key: ApiKeyUser,
    query: ValidatedQuery<SessionSelector>,
) -> Result<HttpResponse, ApiError> {
    let which = selected(query.0.session_id.as_deref())?;
    let closed = state.sessions.close(owner(&key.0), which.as_ref()).await?;
    let message = match closed.len() {
        0 => "No active session found to close".to_owned(),
        1 => "Session closed successfully".to_owned(),
        n => format!("{n} sessions closed"),
    };
    let ids: Vec<String> = closed.iter().map(ToString::to_string).collect();
    Ok(HttpResponse::Ok().json(CloseSessionResponse {
        success: true,
        message,
        session_id: if ids.len() == 1 {
            ids.first().cloned()
        } else {
            None
        },
        closed: ids,
    }))
}
