use actix_web::{HttpResponse, post, web};

use crate::AppState;
use crate::dto::Logout;
use crate::error::{ApiError, ErrorResponse, FieldError, JsonBodyErrors, LocItem, ServerErrors};
use crate::extract::{AuthenticatedUser, ValidatedJson};

/// The longest refresh token accepted, as the contract declares (`Logout.refresh_token`).
const MAX_REFRESH_TOKEN_CHARS: usize = 8192;

/// Sign out.
///
/// Revokes the login the refresh token belongs to (every login with `everywhere`), and ends
/// all the account's access tokens (on every replica within `MORPHEUS_USER_CACHE_SECONDS`);
/// other logins get new access tokens with their refresh tokens. A refresh token that is not
/// the caller's, or not valid, revokes nothing, and the answer is the same 204.
#[utoipa::path(
    operation_id = "logout_api_v1_auth_logout_post",
    tag = "Auth",
    request_body = Logout,
    responses(
        (status = 204, description = "Signed out"),
        (status = 401, description = "Missing or invalid access token", body = ErrorResponse),
        JsonBodyErrors, ServerErrors,
    ),
    security(("BearerAuth" = []))
)]
#[post("/logout")]
pub async fn logout(
    state: web::Data<AppState>,
    user: AuthenticatedUser,
    body: ValidatedJson<Logout>,
) -> Result<HttpResponse, ApiError> {
    let body = body.0;
    // The bounds the contract declares: the answer is otherwise the same 204 for any token.
    let length = body.refresh_token.chars().count();
    if !(1..=MAX_REFRESH_TOKEN_CHARS).contains(&length) {
        let (kind, msg) = if length == 0 {
            (
                "string_too_short",
                "String should have at least 1 character",
            )
        } else {
            (
                "string_too_long",
                "String should have at most 8192 characters",
            )
        };
        return Err(ApiError::validation(FieldError::new(
            vec![LocItem::from("body"), LocItem::from("refresh_token")],
            kind,
            msg,
        )));
    }
    state
        .accounts
        .logout(user.0.id, &body.refresh_token, body.everywhere)
        .await?;
    Ok(HttpResponse::NoContent().finish())
}
