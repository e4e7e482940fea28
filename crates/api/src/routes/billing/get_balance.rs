use actix_web::{HttpResponse, get, web};

use crate::AppState;
use crate::dto::BalanceResponse;
use crate::error::{ApiError, ErrorResponse, ServerErrors};
use crate::extract::UserOrKey;

/// The caller's credit: what posted entries add up to, what requests in flight set aside, and
/// what is available. A user's first read (or first request) gives them the sign-up credit.
#[utoipa::path(
    operation_id = "get_balance_api_v1_billing_balance_get",
    tag = "Billing",
    responses(
        (status = 200, description = "The credit", body = BalanceResponse),
        (status = 401, description = "Missing or invalid access token or API key", body = ErrorResponse),
        ServerErrors,
    ),
    security(("BearerAuth" = []), ("APIKeyAuth" = []))
)]
#[get("/balance")]
pub async fn get_balance(
    state: web::Data<AppState>,
    user: UserOrKey,
) -> Result<HttpResponse, ApiError> {
    let balance = state
        .billing
        .balance(user.0)
        .await?
        // Authenticated a moment ago: the account was deleted since.
        .ok_or(ApiError::Unauthorized("Could not validate credentials"))?;
    Ok(HttpResponse::Ok().json(BalanceResponse::from(balance)))
}
