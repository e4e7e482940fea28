use actix_web::{HttpResponse, get, web};
use morpheus_domain::LedgerEntryType;
use morpheus_domain::ports::LedgerFilter;

use crate::AppState;
use crate::dto::{LedgerPageResponse, UsageQuery};
use crate::error::{ApiError, ErrorResponse, HTTPValidationError, ServerErrors};
use crate::extract::{UserOrKey, ValidatedQuery};

/// The caller's charges, newest first: per request, the model, the tokens, the prices and what
/// it cost; `estimated` when it was charged on the text delivered.
#[utoipa::path(
    operation_id = "get_usage_api_v1_billing_usage_get",
    tag = "Billing",
    params(UsageQuery),
    responses(
        (status = 200, description = "A page of charges", body = LedgerPageResponse),
        (status = 401, description = "Missing or invalid access token or API key", body = ErrorResponse),
        (status = 422, description = "A parameter is out of range", body = HTTPValidationError),
        ServerErrors,
    ),
    security(("BearerAuth" = []), ("APIKeyAuth" = []))
)]
#[get("/usage")]
pub async fn get_usage(
    state: web::Data<AppState>,
    user: UserOrKey,
    query: ValidatedQuery<UsageQuery>,
) -> Result<HttpResponse, ApiError> {
    let query = query.0;
    let (limit, offset) = super::paging(query.limit, query.offset)?;
    let (from, to) = super::period(query.from, query.to)?;
    let filter = LedgerFilter {
        entry_type: Some(LedgerEntryType::UsageCharge),
        model: query.model,
        from,
        to,
    };
    let (entries, total) = state.billing.ledger(user.0, filter, limit, offset).await?;
    Ok(HttpResponse::Ok().json(super::page_of(entries, total, limit, offset)))
}
