use actix_web::{HttpResponse, get, web};
use morpheus_domain::Page;

use crate::AppState;
use crate::dto::{DelegationPageQuery, DelegationRead};
use crate::error::{
    ApiError, ErrorResponse, FieldError, HTTPValidationError, LocItem, ServerErrors,
};
use crate::extract::{AuthenticatedUser, ValidatedQuery};

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
    let page = page(&query.0)?;
    let list = state.delegations.list(user.0.id, page).await?;
    Ok(HttpResponse::Ok().json(
        list.into_iter()
            .map(DelegationRead::from)
            .collect::<Vec<_>>(),
    ))
}

fn page(q: &DelegationPageQuery) -> Result<Page, ApiError> {
    let bounded = |name: &str, value: i64, min: i64, max: i64| {
        if (min..=max).contains(&value) {
            u32::try_from(value).map_err(|_| ApiError::Internal(anyhow::anyhow!("bounded")))
        } else {
            Err(ApiError::validation(FieldError::new(
                vec![LocItem::from("query"), LocItem::from(name)],
                if value < min {
                    "greater_than_equal"
                } else {
                    "less_than_equal"
                },
                format!("Input should be between {min} and {max}"),
            )))
        }
    };
    Ok(Page {
        skip: bounded("skip", q.skip.unwrap_or(0), 0, 1_000_000)?,
        limit: bounded(
            "limit",
            q.limit.unwrap_or(10),
            1,
            i64::from(Page::MAX_LIMIT),
        )?,
    })
}
