use actix_web::{HttpRequest, HttpResponse, delete, web};
use morpheus_domain::ApiKeyId;

use crate::AppState;
use crate::dto::APIKeyDB;
use crate::error::{ApiError, ErrorResponse, HTTPValidationError, ServerErrors};
use crate::extract::{AuthenticatedUser, path_id};

/// Revoke one of the current user's API keys. It is refused from the next request on. Another
/// user's key id answers 404, like an id that does not exist.
#[utoipa::path(
    operation_id = "delete_api_key_api_v1_auth_keys__key_id__delete",
    tag = "Auth",
    params(("key_id" = i64, Path, minimum = 1, description = "The key's id, from the key list")),
    responses(
        (status = 200, description = "The key, now inactive", body = APIKeyDB),
        (status = 401, description = "Missing or invalid access token", body = ErrorResponse),
        (status = 404, description = "The user has no key with this id", body = ErrorResponse),
        (status = 422, description = "The key id is not a positive integer", body = HTTPValidationError),
        ServerErrors,
    ),
    security(("BearerAuth" = []))
)]
#[delete("/keys/{key_id}")]
pub async fn delete_api_key(
    req: HttpRequest,
    state: web::Data<AppState>,
    user: AuthenticatedUser,
) -> Result<HttpResponse, ApiError> {
    let id = ApiKeyId(path_id(&req, "key_id")?);
    let key = state.api_keys.revoke(user.0.id, id).await?;
    Ok(HttpResponse::Ok().json(APIKeyDB::from(key)))
}
