use actix_web::{HttpResponse, get};

use crate::dto::UserResponse;
use crate::error::{ApiError, ErrorResponse, ServerErrors};
use crate::extract::AuthenticatedUser;

/// The current user.
#[utoipa::path(
    operation_id = "get_current_user_api_v1_auth_me_get",
    tag = "Auth",
    responses(
        (status = 200, description = "The user the access token belongs to", body = UserResponse),
        (status = 401, description = "Missing or invalid access token", body = ErrorResponse),
        ServerErrors,
    ),
    security(("BearerAuth" = []))
)]
#[get("/me")]
pub async fn get_current_user(user: AuthenticatedUser) -> Result<HttpResponse, ApiError> {
    Ok(HttpResponse::Ok().json(UserResponse::from(user.0)))
}
