use actix_web::{HttpResponse, post, web};

use crate::AppState;
use crate::dto::{Token, TokenRefresh};
use crate::error::{ApiError, ErrorResponse, HTTPValidationError};
use crate::extract::ValidatedJson;

/// Exchange a refresh token for a new token pair.
///
/// Refresh tokens are single use: the old one stops working. Presenting an already-used refresh
/// token revokes every token descended from the same login (reuse detection).
#[utoipa::path(
    operation_id = "refresh_token_api_v1_auth_refresh_post",
    tag = "Auth",
    request_body = TokenRefresh,
    responses(
        (status = 200, description = "A new token pair", body = Token),
        (status = 401, description = "The refresh token is invalid, expired, used or revoked", body = ErrorResponse),
        (status = 413, description = "The request body is larger than 1 MiB", body = ErrorResponse),
        (status = 415, description = "The request declared a Content-Type other than JSON", body = ErrorResponse),
        (status = 422, description = "The request is invalid", body = HTTPValidationError),
        (status = 500, description = "Unexpected server error", body = ErrorResponse),
        (status = 503, description = "The database is unavailable", body = ErrorResponse),
    ),
    security(())
)]
#[post("/refresh")]
pub async fn refresh_token(
    state: web::Data<AppState>,
    body: ValidatedJson<TokenRefresh>,
) -> Result<HttpResponse, ApiError> {
    let pair = state.accounts.refresh(&body.0.refresh_token).await?;
    Ok(HttpResponse::Ok().json(Token::from(pair)))
}
