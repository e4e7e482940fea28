use actix_web::{HttpResponse, post, web};
use morpheus_domain::Password;

use crate::AppState;
use crate::client_address::Client;
use crate::dto::{PasswordChange, Token};
use crate::error::{ApiError, ErrorResponse, Fields, JsonBodyErrors, ServerErrors};
use crate::extract::{AuthenticatedUser, ValidatedJson};

/// Change the password.
///
/// Needs the access token and the current password (attempts are limited as logins are). The
/// new password follows the rules of registration. Every login of the account ends: refresh
/// tokens are revoked and access tokens refused (on every replica within
/// `MORPHEUS_USER_CACHE_SECONDS`); the answer is a new token pair.
#[utoipa::path(
    operation_id = "change_password_api_v1_auth_password_post",
    tag = "Auth",
    request_body = PasswordChange,
    responses(
        (status = 200, description = "Changed; a new token pair (every other login has ended)", body = Token),
        (status = 401, description = "Missing or invalid access token", body = ErrorResponse),
        (status = 403, description = "The current password is incorrect", body = ErrorResponse),
        (status = 429, description = "Too many password attempts for this account from this client", body = ErrorResponse),
        JsonBodyErrors, ServerErrors,
    ),
    security(("BearerAuth" = []))
)]
#[post("/password")]
pub async fn change_password(
    client: Client,
    state: web::Data<AppState>,
    user: AuthenticatedUser,
    body: ValidatedJson<PasswordChange>,
) -> Result<HttpResponse, ApiError> {
    let body = body.0;
    let mut fields = Fields::default();
    let current = fields.check(
        "current_password",
        Password::for_login(body.current_password),
    );
    let new = fields.check("new_password", Password::parse(body.new_password));
    let (Some(current), Some(new)) = (current, new) else {
        return Err(fields.into());
    };
    let pair = state
        .accounts
        .change_password(&user.0, current, new, client.ip())
        .await?;
    Ok(HttpResponse::Ok().json(Token::from(pair)))
}
