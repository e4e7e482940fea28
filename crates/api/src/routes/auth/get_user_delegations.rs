use actix_web::{HttpResponse, get, web};

use crate::AppState;
use crate::dto::{DelegationPageQuery, DelegationRead};
use crate::error::{ApiError, ErrorResponse, HTTPValidationError, ServerErrors};
use crate::extract::{AuthenticatedUser, ValidatedQuery, page};

/// The current user's delegations, newest first.
#[utoipa::path(
    operation_id = "get_user_delegations_api_v1_auth_delegation_get",
    tag = "Auth",
    params(DelegationPageQuery),
    responses(
        (status = 200, description = "A page of delegations", body = Vec<DelegationRead>),
        (status = 401, description = "Missing or invalid access token", body = ErrorResponse),
        (status = 422, description = "skip or limit is out of range", body = HTTPValidationError),
        ServerErrors,
    ),
    security(("BearerAuth" = []))
)]
#[get("/delegation")]
pub async fn get_user_delegations(
    state: web::Data<AppState>,
    user: AuthenticatedUser,
    query: ValidatedQuery<DelegationPageQuery>,
) -> Result<HttpResponse, ApiError> {
    let page = page(query.0.skip, query.0.limit, 10)?;
    let list = state.delegations.list(user.0.id, page).await?;
    Ok(HttpResponse::Ok().json(
        list.into_iter()
            .map(DelegationRead::from)
            .collect::<Vec<_>>(),
    ))
}
