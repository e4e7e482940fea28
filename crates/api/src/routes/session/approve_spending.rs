use actix_web::{HttpRequest, HttpResponse, post, web};

use crate::AppState;
use crate::dto::{ApproveQuery, ApproveResponse};
use crate::error::{
    ApiError, ErrorResponse, FieldError, HTTPValidationError, LocItem, MarketplaceErrors,
};
use crate::extract::{ApiKeyUser, ValidatedQuery, require_operator};

/// Lets the configured Diamond contract spend `amount` wei of MOR from the proxy-router's
/// wallet. Sessions do not need it (the proxy-router approves each stake itself). An operator
/// action: the node's wallet signs a transaction (gas, and the allowance is overwritten), so
/// besides an API key it takes the operator's `X-Admin-Token` (`MORPHEUS_ADMIN_TOKEN`).
#[utoipa::path(
    operation_id = "approve_spending_api_v1_session_approve_post",
    tag = "Session",
    params(
        ApproveQuery,
        ("X-Admin-Token" = String, Header, description = "The operator's credential, `MORPHEUS_ADMIN_TOKEN`"),
    ),
    responses(
        (status = 200, description = "The approval transaction", body = ApproveResponse),
        (status = 401, description = "Missing or invalid API key", body = ErrorResponse),
        (status = 403, description = "Missing or wrong X-Admin-Token", body = ErrorResponse),
        (status = 422, description = "amount is missing or not a positive integer", body = HTTPValidationError),
        (status = 503, description = "No operator token (MORPHEUS_ADMIN_TOKEN), proxy-router or spender is configured, or the database is unavailable", body = ErrorResponse),
        (status = 500, description = "Unexpected server error (details are logged, not returned)", body = ErrorResponse),
        MarketplaceErrors,
    ),
    security(("APIKeyAuth" = []))
)]
#[post("/approve")]
pub async fn approve_spending(
    state: web::Data<AppState>,
    http: HttpRequest,
    _key: ApiKeyUser,
    query: ValidatedQuery<ApproveQuery>,
) -> Result<HttpResponse, ApiError> {
    require_operator(
        &state,
        &http,
        "Approving spending is an operator action and no operator token is configured \
         (MORPHEUS_ADMIN_TOKEN)",
        "Approving spending needs the operator's X-Admin-Token",
    )?;
    let amount = query.0.amount;
    let Ok(amount) = u64::try_from(amount) else {
        return Err(positive_amount());
    };
    if amount == 0 {
        return Err(positive_amount());
    }
    let tx = state.sessions.approve(u128::from(amount)).await?;
    Ok(HttpResponse::Ok().json(ApproveResponse {
        tx: tx.to_string(),
        spender: state
            .sessions
            .spender()
            .map(|s| s.as_str().to_owned())
            .unwrap_or_default(),
        amount: amount.to_string(),
    }))
}

fn positive_amount() -> ApiError {
    ApiError::validation(FieldError::new(
        vec![LocItem::from("query"), LocItem::from("amount")],
        "greater_than_equal",
        "Input should be greater than or equal to 1",
    ))
}
