use actix_web::{HttpRequest, HttpResponse, patch, web};
use morpheus_domain::ApiKeyId;

use crate::AppState;
use crate::dto::{APIKeyDB, APIKeyUpdate};
use crate::error::{ApiError, ErrorResponse, JsonBodyErrors, ServerErrors};
use crate::extract::{AuthenticatedUser, ValidatedJson, path_id};

/// Change the name and policy of one of the current user's API keys. A field given replaces
/// its value, `null` clears it (no limit), a field left out stays. The change holds from the
/// next request on, on every replica. Another user's key id answers 404, like an id that does
/// not exist.
#[utoipa::path(
    operation_id = "update_api_key_api_v1_auth_keys__key_id__patch",
    tag = "Auth",
    params(("key_id" = i64, Path, minimum = 1, description = "The key's id, from the key list")),
    request_body = APIKeyUpdate,
    responses(
        (status = 200, description = "The key as changed", body = APIKeyDB),
        (status = 401, description = "Missing or invalid access token", body = ErrorResponse),
        (status = 404, description = "The user has no key with this id", body = ErrorResponse),
        JsonBodyErrors, ServerErrors,
    ),
    security(("BearerAuth" = []))
)]
#[patch("/keys/{key_id}")]
pub async fn update_api_key(
    req: HttpRequest,
    state: web::Data<AppState>,
    user: AuthenticatedUser,
    body: ValidatedJson<APIKeyUpdate>,
) -> Result<HttpResponse, ApiError> {
    let id = ApiKeyId(path_id(&req, "key_id")?);
    let change = body.0.parse(chrono::Utc::now())?;
    let key = state.api_keys.update(user.0.id, id, change).await?;
    Ok(HttpResponse::Ok().json(APIKeyDB::from(key)))
}
