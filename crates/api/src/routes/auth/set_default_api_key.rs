use actix_web::{HttpRequest, HttpResponse, put, web};
use morpheus_domain::ApiKeyId;

use crate::AppState;
use crate::dto::APIKeyDB;
use crate::error::{ApiError, ErrorResponse, HTTPValidationError, ServerErrors};
use crate::extract::{AuthenticatedUser, path_id};

/// Make one of the current user's keys their default (and no other). A revoked or expired key,
/// and another user's key id, answer 404 like an id that does not exist.
#[utoipa::path(
    operation_id = "set_default_api_key_api_v1_auth_keys__key_id__default_put",
    tag = "Auth",
    params(("key_id" = i64, Path, minimum = 1, description = "The key's id, from the key list")),
    responses(
        (status = 200, description = "The key, now the default", body = APIKeyDB),
        (status = 401, description = "Missing or invalid access token", body = ErrorResponse),
        (status = 404, description = "The user has no usable key with this id", body = ErrorResponse),
        (status = 422, description = "The key id is not a positive integer", body = HTTPValidationError),
        ServerErrors,
    ),
    security(("BearerAuth" = []))
)]
#[put("/keys/{key_id}/default")]
pub async fn set_default_api_key(
    req: HttpRequest,
    state: web::Data<AppState>,
    user: AuthenticatedUser,
) -> Result<HttpResponse, ApiError> {
    let id = ApiKeyId(path_id(&req, "key_id")?);
    let key = state.api_keys.set_default(user.0.id, id).await?;
    Ok(HttpResponse::Ok().json(APIKeyDB::from(key)))
}
