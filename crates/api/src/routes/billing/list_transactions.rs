use actix_web::{HttpResponse, get, web};
use morpheus_domain::ports::LedgerFilter;

use crate::AppState;
use crate::dto::{LedgerPageResponse, TransactionsQuery};
use crate::error::{ApiError, ErrorResponse, HTTPValidationError, ServerErrors};
use crate::extract::{UserOrKey, ValidatedQuery};

/// The caller's ledger, newest first: grants, holds in flight, charges (with the tokens and
/// prices they were made at), voided holds and refunds.
#[utoipa::path(
    operation_id = "list_transactions_api_v1_billing_transactions_get",
    tag = "Billing",
    params(TransactionsQuery),
    responses(
        (status = 200, description = "A page of ledger entries", body = LedgerPageResponse),
        (status = 401, description = "Missing or invalid access token or API key", body = ErrorResponse),
        (status = 422, description = "A parameter is out of range or unknown", body = HTTPValidationError),
        ServerErrors,
    ),
    security(("BearerAuth" = []), ("APIKeyAuth" = []))
)]
#[get("/transactions")]
pub async fn list_transactions(
    state: web::Data<AppState>,
    user: UserOrKey,
    query: ValidatedQuery<TransactionsQuery>,
) -> Result<HttpResponse, ApiError> {
    let query = query.0;
    let (limit, offset) = super::paging(query.limit, query.offset)?;
    let (from, to) = super::period(query.from, query.to)?;
    let filter = LedgerFilter {
        entry_type: query.entry_type.map(Into::into),
        model: None,
        from,
        to,
    };
    let (entries, total) = state.billing.ledger(user.0, filter, limit, offset).await?;
    Ok(HttpResponse::Ok().json(super::page_of(entries, total, limit, offset)))
}
