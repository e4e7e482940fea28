use actix_web::{HttpResponse, delete, web};

use crate::AppState;
use crate::dto::AccountDeleted;
use crate::error::{ApiError, ErrorResponse, ServerErrors};
use crate::extract::AuthenticatedUser;

/// Delete the current user's account and everything it owns (API keys, wallet key,
/// delegations, automation settings, refresh tokens).
#[utoipa::path(
    operation_id = "delete_user_account_api_v1_auth_register_delete",
    tag = "Auth",
    responses(
        (status = 200, description = "The account and its data were deleted", body = AccountDeleted),
        (status = 401, description = "Missing or invalid access token", body = ErrorResponse),
        (status = 404, description = "The account no longer exists", body = ErrorResponse),
        ServerErrors,
    ),
    security(("BearerAuth" = []))
)]
#[delete("/register")]
pub async fn delete_user_account(
    state: web::Data<AppState>,
    user: AuthenticatedUser,
) -> Result<HttpResponse, ApiError> {
    let id = user.0.id;
    let deleted = state.accounts.delete_account(id).await?;
    Ok(HttpResponse::Ok().json(AccountDeleted::new(id.0, deleted)))
}
