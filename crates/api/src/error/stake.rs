//! The operator's stake caps refusing an open → HTTP, for the session routes (`{"detail",
//! "code"}`) and for chat (OpenAI's shape). Nothing was staked in any of these cases.

use actix_web::http::StatusCode;
use morpheus_domain::services::StakeRefusal;

use super::{ApiError, FieldError, LocItem, OpenAiError};

/// Status, stable code and `Retry-After` (seconds) of a refusal.
pub(super) fn parts(refusal: &StakeRefusal) -> (StatusCode, &'static str, Option<u64>) {
    let secs = |d: std::time::Duration| Some(d.as_secs().max(1));
    match refusal {
        // Until the UTC day's end, when the budget starts again.
        StakeRefusal::BudgetExhausted { retry_after, .. } => (
            StatusCode::SERVICE_UNAVAILABLE,
            "stake_budget_exhausted",
            secs(*retry_after),
        ),
        StakeRefusal::BudgetUnavailable { retry_after } => (
            StatusCode::SERVICE_UNAVAILABLE,
            "stake_budget_unavailable",
            secs(*retry_after),
        ),
        StakeRefusal::BidPriceAboveLimit { .. } => (
            StatusCode::SERVICE_UNAVAILABLE,
            "bid_price_above_limit",
            None,
        ),
        StakeRefusal::BelowLowWaterMark { .. } => (
            StatusCode::SERVICE_UNAVAILABLE,
            "mor_below_low_water_mark",
            None,
        ),
        StakeRefusal::TooManySessions { .. } => {
            (StatusCode::TOO_MANY_REQUESTS, "too_many_sessions", None)
        }
        StakeRefusal::DurationExceeded { .. } => (
            StatusCode::UNPROCESSABLE_ENTITY,
            "session_duration_exceeded",
            None,
        ),
    }
}

impl From<StakeRefusal> for ApiError {
    fn from(refusal: StakeRefusal) -> Self {
        if let StakeRefusal::DurationExceeded { .. } = refusal {
            // A field of the request is at fault: the validation shape, naming it.
            return ApiError::validation(FieldError::new(
                vec![LocItem::from("body"), LocItem::from("sessionDuration")],
                "session_duration_exceeded",
                refusal.to_string(),
            ));
        }
        let (status, code, retry_after) = parts(&refusal);
        ApiError::Refused {
            status,
            code,
            message: refusal.to_string(),
            retry_after,
        }
    }
}

impl From<StakeRefusal> for OpenAiError {
    fn from(refusal: StakeRefusal) -> Self {
        let (status, code, retry_after) = parts(&refusal);
        let (kind, param) = match status.as_u16() {
            429 => ("rate_limit_error", None),
            422 => ("invalid_request_error", Some("sessionDuration")),
            _ => ("server_error", None),
        };
        let mut error = OpenAiError::new(status, kind, code, param, refusal.to_string());
        error.retry_after = retry_after;
        error
    }
}
