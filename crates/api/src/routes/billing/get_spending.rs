use actix_web::{HttpResponse, get, web};
use morpheus_domain::Usd;

use crate::AppState;
use crate::dto::{MonthSpendingResponse, SpendingMode, SpendingQuery, SpendingResponse};
use crate::error::{
    ApiError, ErrorResponse, FieldError, HTTPValidationError, LocItem, ServerErrors,
};
use crate::extract::{UserOrKey, ValidatedQuery};

/// What the caller spent in a year, month by month: `gross` counts charges, `net` subtracts
/// refunds.
#[utoipa::path(
    operation_id = "get_spending_api_v1_billing_spending_get",
    tag = "Billing",
    params(SpendingQuery),
    responses(
        (status = 200, description = "Spending by month", body = SpendingResponse),
        (status = 401, description = "Missing or invalid access token or API key", body = ErrorResponse),
        (status = 422, description = "year or mode is invalid", body = HTTPValidationError),
        ServerErrors,
    ),
    security(("BearerAuth" = []), ("APIKeyAuth" = []))
)]
#[get("/spending")]
pub async fn get_spending(
    state: web::Data<AppState>,
    user: UserOrKey,
    query: ValidatedQuery<SpendingQuery>,
) -> Result<HttpResponse, ApiError> {
    let query = query.0;
    let invalid = |name: &str, msg: &str| {
        ApiError::validation(FieldError::new(
            vec![LocItem::from("query"), LocItem::from(name)],
            "value_error",
            msg,
        ))
    };
    if query.year.is_some_and(|y| !(2000..=9999).contains(&y)) {
        return Err(invalid("year", "Input should be from 2000 to 9999"));
    }
    let net = query.mode == Some(SpendingMode::Net);
    let (year, months) = state.billing.spending(user.0, query.year, net).await?;
    let total = months
        .iter()
        .fold(Usd::ZERO, |sum, m| sum.saturating_add(m.amount));
    Ok(HttpResponse::Ok().json(SpendingResponse {
        year,
        mode: if net { "net" } else { "gross" }.to_owned(),
        months: months
            .into_iter()
            .map(MonthSpendingResponse::from)
            .collect(),
        total: total.to_string(),
        currency: "USD".to_owned(),
    }))
}
