use actix_web::{HttpResponse, get, web};

use crate::AppState;
use crate::dto::PrivateKeyStatus;
use crate::error::{ApiError, ErrorResponse, ServerErrors};
use crate::extract::AuthenticatedUser;

/// Whether the current user has a stored wallet key, and when it was stored. Never the key.
#[utoipa::path(
    operation_id = "get_private_key_status_api_v1_auth_private_key_get",
    tag = "Auth",
    responses(
        (status = 200, description = "The key's status", body = PrivateKeyStatus),
        (status = 401, description = "Missing or invalid access token", body = ErrorResponse),
        ServerErrors,
    ),
    security(("BearerAuth" = []))
)]
#[get("/private-key")]
pub async fn get_private_key_status(
    state: web::Data<AppState>,
    user: AuthenticatedUser,
) -> Result<HttpResponse, ApiError> {
    let status = state.wallets.status(user.0.id).await?;
    Ok(HttpResponse::Ok().json(PrivateKeyStatus::from(status)))
}
