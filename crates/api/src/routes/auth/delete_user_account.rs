use actix_web::{HttpResponse, delete, web};
use morpheus_domain::Password;
use morpheus_domain::services::SignedIn;

use crate::AppState;
use crate::client_address::Client;
use crate::dto::{AccountDeleted, AccountDeletionConfirmation};
use crate::error::{ApiError, ErrorResponse, FieldError, JsonBodyErrors, ServerErrors};
use crate::extract::{AuthenticatedUser, OptionalJson};

/// Delete the current user's account and everything it owns (API keys, wallet key,
/// delegations, automation settings, refresh tokens).
///
/// Needs a recent sign-in: an access token from a login (or password change) of the last
/// `MORPHEUS_FRESH_SIGN_IN_SECONDS` (refreshing keeps the login's time), or the current
/// password in the optional body.
#[utoipa::path(
    operation_id = "delete_user_account_api_v1_auth_register_delete",
    tag = "Auth",
    request_body(content = Option<AccountDeletionConfirmation>, description = "Optional (absent or null: none): the current password, needed when the sign-in is not recent"),
    responses(
        (status = 200, description = "The account and its data were deleted", body = AccountDeleted),
        (status = 401, description = "Missing or invalid access token", body = ErrorResponse),
        (status = 403, description = "The sign-in is not recent and no password was sent, or the password is incorrect", body = ErrorResponse),
        (status = 404, description = "The account no longer exists", body = ErrorResponse),
        (status = 429, description = "Too many password attempts for this account from this client", body = ErrorResponse),
        JsonBodyErrors, ServerErrors,
    ),
    security(("BearerAuth" = []))
)]
#[delete("/register")]
pub async fn delete_user_account(
    client: Client,
    state: web::Data<AppState>,
    user: AuthenticatedUser,
    body: OptionalJson<AccountDeletionConfirmation>,
) -> Result<HttpResponse, ApiError> {
    let password = body
        .0
        .and_then(|b| b.password)
        .map(Password::for_login)
        .transpose()
        .map_err(|invalid| ApiError::validation(FieldError::body("password", invalid)))?;
    let AuthenticatedUser(user, token) = user;
    let id = user.id;
    let signed_in = SignedIn { user, token };
    let deleted = state
        .accounts
        .delete_own_account(&signed_in, password, client.ip())
        .await?;
    Ok(HttpResponse::Ok().json(AccountDeleted::new(id.0, deleted)))
}
