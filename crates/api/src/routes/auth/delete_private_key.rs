use actix_web::{HttpResponse, delete, web};

use crate::AppState;
use crate::dto::MessageResponse;
use crate::error::{ApiError, ErrorResponse, ServerErrors};
use crate::extract::AuthenticatedUser;

/// Delete the current user's stored wallet key.
#[utoipa::path(
    operation_id = "delete_private_key_api_v1_auth_private_key_delete",
    tag = "Auth",
    responses(
        (status = 200, description = "The key was deleted", body = MessageResponse),
        (status = 401, description = "Missing or invalid access token", body = ErrorResponse),
        (status = 404, description = "No key is stored", body = ErrorResponse),
        ServerErrors,
    ),
    security(("BearerAuth" = []))
)]
#[delete("/private-key")]
pub async fn delete_private_key(
    state: web::Data<AppState>,
    user: AuthenticatedUser,
) -> Result<HttpResponse, ApiError> {
    state.wallets.delete(user.0.id).await?;
    Ok(HttpResponse::Ok().json(MessageResponse {
        message: "Private key deleted successfully".to_owned(),
    }))
}
