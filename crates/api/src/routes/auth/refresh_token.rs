use actix_web::{HttpResponse, post, web};

use crate::AppState;
use crate::dto::{Token, TokenRefresh};
use crate::error::{ApiError, ErrorResponse, JsonBodyErrors, ServerErrors};
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
        JsonBodyErrors, ServerErrors,
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
