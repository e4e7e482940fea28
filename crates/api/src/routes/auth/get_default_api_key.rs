use actix_web::{HttpResponse, get, web};

use crate::AppState;
use crate::dto::APIKeyDB;
use crate::error::{ApiError, ErrorResponse, ServerErrors};
use crate::extract::AuthenticatedUser;

/// The current user's default API key: the one they marked (`PUT /keys/{key_id}/default`)
/// while it is active and not expired, else their oldest such key; `null` when they have none.
/// Only its prefix is shown: keys are stored as digests, never in a form that gives the secret
/// back.
#[utoipa::path(
    operation_id = "get_default_api_key_api_v1_auth_keys_default_get",
    tag = "Auth",
    responses(
        (status = 200, description = "The default key, or null", body = Option<APIKeyDB>),
        (status = 401, description = "Missing or invalid access token", body = ErrorResponse),
        ServerErrors,
    ),
    security(("BearerAuth" = []))
)]
#[get("/keys/default")]
pub async fn get_default_api_key(
    state: web::Data<AppState>,
    user: AuthenticatedUser,
) -> Result<HttpResponse, ApiError> {
    let key = state.api_keys.default_key(user.0.id).await?;
    Ok(HttpResponse::Ok().json(key.map(APIKeyDB::from)))
}
