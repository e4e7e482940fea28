use actix_web::{HttpResponse, get, web};

use crate::AppState;
use crate::dto::APIKeyDB;
use crate::error::{ApiError, ErrorResponse, ServerErrors};
use crate::extract::AuthenticatedUser;

/// List the current user's API keys (newest first, revoked ones included). Secrets are never
/// listed, only prefixes.
#[utoipa::path(
    operation_id = "get_api_keys_api_v1_auth_keys_get",
    tag = "Auth",
    responses(
        (status = 200, description = "The user's keys", body = Vec<APIKeyDB>),
        (status = 401, description = "Missing or invalid access token", body = ErrorResponse),
        ServerErrors,
    ),
    security(("BearerAuth" = []))
)]
#[get("/keys")]
pub async fn get_api_keys(
    state: web::Data<AppState>,
    user: AuthenticatedUser,
) -> Result<HttpResponse, ApiError> {
    let keys = state.api_keys.list(user.0.id).await?;
    Ok(HttpResponse::Ok().json(keys.into_iter().map(APIKeyDB::from).collect::<Vec<_>>()))
}
