use actix_web::{HttpResponse, get, web};
use morpheus_domain::Page;

use crate::AppState;
use crate::dto::{APIKeyDB, KeyPageQuery};
use crate::error::{ApiError, ErrorResponse, HTTPValidationError, ServerErrors};
use crate::extract::{AuthenticatedUser, ValidatedQuery, page};

/// List the current user's API keys (newest first, revoked ones included), one page at a time
/// (`skip`, `limit`; 100 at most, the default). Secrets are never listed, only prefixes. An
/// active key's budgets show what their current windows have counted and when they reset.
#[utoipa::path(
    operation_id = "get_api_keys_api_v1_auth_keys_get",
    tag = "Auth",
    params(KeyPageQuery),
    responses(
        (status = 200, description = "A page of the user's keys", body = Vec<APIKeyDB>),
        (status = 401, description = "Missing or invalid access token", body = ErrorResponse),
        (status = 422, description = "skip or limit is out of range", body = HTTPValidationError),
        ServerErrors,
    ),
    security(("BearerAuth" = []))
)]
#[get("/keys")]
pub async fn get_api_keys(
    state: web::Data<AppState>,
    user: AuthenticatedUser,
    query: ValidatedQuery<KeyPageQuery>,
) -> Result<HttpResponse, ApiError> {
    let page = page(query.0.skip, query.0.limit, Page::MAX_LIMIT)?;
    let keys = state.api_keys.list(user.0.id, page).await?;
    let listed = keys.into_iter().map(|key| async {
        let uses = match key.is_active {
            true => state.limiter.budget_use(key.id, &key.policy.budgets).await,
            false => None,
        };
        let listed = APIKeyDB::from(key);
        match uses {
            Some(uses) => listed.with_budget_use(&uses),
            None => listed,
        }
    });
    Ok(HttpResponse::Ok().json(futures_util::future::join_all(listed).await))
}
