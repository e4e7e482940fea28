use actix_web::{HttpResponse, get, web};

use crate::AppState;
use crate::dto::APIKeyDB;
use crate::error::{ApiError, ErrorResponse, ServerErrors};
use crate::extract::AuthenticatedUser;

/// The current user's oldest API key that is active and not expired, or `null`.
#[utoipa::path(
    operation_id = "get_first_api_key_api_v1_auth_keys_first_get",
    tag = "Auth",
    responses(
        (status = 200, description = "The oldest usable key, or null", body = Option<APIKeyDB>),
        (status = 401, description = "Missing or invalid access token", body = ErrorResponse),
        ServerErrors,
    ),
    security(("BearerAuth" = []))
)]
#[get("/keys/first")]
pub async fn get_first_api_key(
    state: web::Data<AppState>,
    user: AuthenticatedUser,
) -> Result<HttpResponse, ApiError> {
    let key = state.api_keys.first_key(user.0.id).await?;
    Ok(HttpResponse::Ok().json(key.map(APIKeyDB::from)))
}
