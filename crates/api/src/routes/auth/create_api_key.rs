use actix_web::{HttpResponse, post, web};

use crate::AppState;
use crate::dto::{APIKeyCreate, APIKeyResponse};
use crate::error::{ApiError, ErrorResponse, JsonBodyErrors, ServerErrors};
use crate::extract::{AuthenticatedUser, ValidatedJson};

/// Create an API key for the current user, optionally with a policy (expiry, allowed models,
/// rates, budgets; absent: unlimited).
///
/// The whole key (`sk-XXXXXX.…`) is in this response and nowhere else: only a keyed digest is
/// stored. Use it as `Authorization: Bearer sk-…` on the API-key operations. Creations are
/// limited per user per 24 hours, revoked keys included (`MORPHEUS_KEY_CREATIONS_PER_DAY`).
#[utoipa::path(
    operation_id = "create_api_key_api_v1_auth_keys_post",
    tag = "Auth",
    request_body = APIKeyCreate,
    responses(
        (status = 200, description = "The new key, shown once", body = APIKeyResponse),
        (status = 401, description = "Missing or invalid access token", body = ErrorResponse),
        (status = 409, description = "The user already has the maximum number of active keys", body = ErrorResponse),
        (status = 429, description = "The user has created the most keys allowed in 24 hours", body = ErrorResponse),
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
    let (name, policy) = body.0.parse(chrono::Utc::now())?;
    let (key, secret) = state.api_keys.create(user.0.id, name, policy).await?;
    Ok(HttpResponse::Ok().json(APIKeyResponse::new(&key, &secret)))
}
