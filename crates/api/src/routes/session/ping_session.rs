use actix_web::{HttpResponse, post, web};
use morpheus_domain::services::PingOutcome;

use super::{owner, selected};
use crate::AppState;
use crate::dto::{PingSessionResponse, PingStatus, SessionSelector};
use crate::error::{ApiError, ErrorResponse, HTTPValidationError, MarketplaceErrors, ServerErrors};
use crate::extract::{ApiKeyUser, ValidatedQuery};

/// Whether the key's session (or the one named) is still open on chain. Asks the chain; no
/// prompt is sent, so nothing is spent (the original sent a real chat request).
#[utoipa::path(
    operation_id = "ping_session_api_v1_session_pingsession_post",
    tag = "Session",
    params(SessionSelector),
    responses(
        (status = 200, description = "The session's state", body = PingSessionResponse),
        (status = 401, description = "Missing or invalid API key", body = ErrorResponse),
        (status = 404, description = "The session is not one of this key's", body = ErrorResponse),
        (status = 422, description = "session_id is not a session id", body = HTTPValidationError),
        MarketplaceErrors, ServerErrors,
    ),
    security(("APIKeyAuth" = []))
)]
#[post("/pingsession")]
pub async fn ping_session(
    state: web::Data<AppState>,
    key: ApiKeyUser,
    query: ValidatedQuery<SessionSelector>,
) -> Result<HttpResponse, ApiError> {
    let which = selected(query.0.session_id.as_deref())?;
    let body = match state.sessions.ping(owner(&key.0), which.as_ref()).await? {
        PingOutcome::NoSession => PingSessionResponse {
            status: PingStatus::NoSession,
            message: "No active session found for this API key".to_owned(),
            session_id: None,
            success: false,
        },
        PingOutcome::Alive(s) => PingSessionResponse {
            status: PingStatus::Alive,
            message: "Session is alive".to_owned(),
            session_id: Some(s.id.to_string()),
            success: true,
        },
        PingOutcome::Ended(s) => PingSessionResponse {
            status: PingStatus::Expired,
            message: "Session has ended and is no longer used".to_owned(),
            session_id: Some(s.id.to_string()),
            success: false,
        },
    };
    Ok(HttpResponse::Ok().json(body))
}
