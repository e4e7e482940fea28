use actix_web::{HttpResponse, post, web};
use morpheus_domain::WalletPrivateKey;

use crate::AppState;
use crate::dto::{PrivateKeyCreate, PrivateKeyStatus};
use crate::error::{ApiError, ErrorResponse, Fields, JsonBodyErrors, ServerErrors};
use crate::extract::{AuthenticatedUser, ValidatedJson};

/// Store the current user's wallet private key, replacing any previous one.
///
/// The key is sealed with AES-256-GCM under the server's master key, bound to this user, and is
/// never returned or logged.
#[utoipa::path(
    operation_id = "store_private_key_api_v1_auth_private_key_post",
    tag = "Auth",
    request_body = PrivateKeyCreate,
    responses(
        (status = 201, description = "The key is stored", body = PrivateKeyStatus),
        (status = 401, description = "Missing or invalid access token", body = ErrorResponse),
        JsonBodyErrors, ServerErrors,
    ),
    security(("BearerAuth" = []))
)]
#[post("/private-key")]
pub async fn store_private_key(
    state: web::Data<AppState>,
    user: AuthenticatedUser,
    body: ValidatedJson<PrivateKeyCreate>,
) -> Result<HttpResponse, ApiError> {
    let mut fields = Fields::default();
    let Some(key) = fields.check("private_key", WalletPrivateKey::parse(body.0.private_key)) else {
        return Err(fields.into());
    };
    let status = state.wallets.store(user.0.id, key).await?;
    Ok(HttpResponse::Created().json(PrivateKeyStatus::from(status)))
}
