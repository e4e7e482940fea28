use actix_web::HttpRequest;

use crate::AppState;
use crate::error::ApiError;

/// Checks the operator's credential (`X-Admin-Token`, `MORPHEUS_ADMIN_TOKEN`, compared in
/// constant time). `unconfigured` is the 503's message when no token is set (the action is
/// then off), `refused` the 403's when the header is missing or wrong.
pub fn require_operator(
    state: &AppState,
    http: &HttpRequest,
    unconfigured: &'static str,
    refused: &'static str,
) -> Result<(), ApiError> {
    let Some(token) = &state.admin_token else {
        return Err(ApiError::ServiceUnavailable(unconfigured));
    };
    let presented = http
        .headers()
        .get("x-admin-token")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default();
    if token.matches(presented) {
        Ok(())
    } else {
        Err(ApiError::Forbidden(refused))
    }
}
