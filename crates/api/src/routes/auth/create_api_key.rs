use actix_web::{HttpResponse, post, web};
use morpheus_domain::parse_key_name;

use crate::AppState;
use crate::dto::{APIKeyCreate, APIKeyResponse};
use crate::error::{ApiError, ErrorResponse, Fields, JsonBodyErrors, ServerErrors};
use crate::extract::{AuthenticatedUser, ValidatedJson};

/// Create an API key for the current user.
///
/// The whole key (`sk-XXXXXX.…`) is in this response and nowhere else: only a keyed digest is
/// stored. Use it as `Authorization: Bearer sk-…` on the API-key operations.
#[utoipa::path(
    operation_id = "create_api_key_api_v1_auth_keys_post",
    tag = "Auth",
    request_body = APIKeyCreate,
    responses(
        (status = 200, description = "The new key, shown once", body = APIKeyResponse),
        (status = 401, description = "Missing or invalid access token", body = ErrorResponse),
        (status = 409, description = "The user already has the maximum number of active keys", body = ErrorResponse),
        JsonBodyErrors, ServerErrors,
    ),
    security(("BearerAuth" = []))
)]
#[post("/keys")]
pub async fn create_api_key(
    state: web::Data<AppState>,
    user: AuthenticatedUser,
    body: ValidatedJson<APIKeyCreate>,
) -> Result<HttpResponse, ApiError> {
    let mut fields = Fields::default();
    let Some(name) = fields.check("name", parse_key_name(body.0.name)) else {
        return Err(fields.into());
    };
    let (key, secret) = state.api_keys.create(user.0.id, name).await?;
    Ok(HttpResponse::Ok().json(APIKeyResponse::new(&key, &secret)))
}
