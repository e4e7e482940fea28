use actix_web::{HttpRequest, HttpResponse, post, web};
use morpheus_domain::ports::PostingOutcome;
use morpheus_domain::services::GrantError;
use morpheus_domain::{Email, LedgerEntryType, Usd, UserId};

use crate::AppState;
use crate::dto::{
    BalanceResponse, CreditAdjustmentRequest, CreditAdjustmentResponse, LedgerEntryResponse,
};
use crate::error::{ApiError, ErrorResponse, FieldError, HTTPValidationError, LocItem};
use crate::extract::{ValidatedJson, require_operator};

/// Grants a user credit, or takes it back (a negative amount), as an `adjustment` entry of
/// their ledger. An operator action: it takes `X-Admin-Token` (`MORPHEUS_ADMIN_TOKEN`).
#[utoipa::path(
    operation_id = "adjust_credits_api_v1_billing_credits_adjust_post",
    tag = "Billing",
    request_body = CreditAdjustmentRequest,
    params(
        ("X-Admin-Token" = String, Header, description = "The operator's credential, `MORPHEUS_ADMIN_TOKEN`"),
    ),
    responses(
        (status = 200, description = "The entry and the balance after it", body = CreditAdjustmentResponse),
        (status = 403, description = "Missing or wrong X-Admin-Token", body = ErrorResponse),
        (status = 404, description = "No such user", body = ErrorResponse),
        (status = 422, description = "The request is invalid", body = HTTPValidationError),
        (status = 503, description = "No operator token is configured (MORPHEUS_ADMIN_TOKEN), or the database is unavailable", body = ErrorResponse),
        (status = 500, description = "Unexpected server error (details are logged, not returned)", body = ErrorResponse),
    )
)]
#[post("/credits/adjust")]
pub async fn adjust_credits(
    state: web::Data<AppState>,
    http: HttpRequest,
    body: ValidatedJson<CreditAdjustmentRequest>,
) -> Result<HttpResponse, ApiError> {
    require_operator(
        &state,
        &http,
        "Adjusting credits is an operator action and no operator token is configured \
         (MORPHEUS_ADMIN_TOKEN)",
        "Adjusting credits needs the operator's X-Admin-Token",
    )?;
    let request = body.0;
    let invalid = |field: &str, msg: String| {
        ApiError::validation(FieldError::new(
            vec![LocItem::from("body"), LocItem::from(field)],
            "value_error",
            msg,
        ))
    };
    let amount: Usd = request
        .amount_usd
        .parse()
        .map_err(|e: morpheus_domain::validation::Invalid| invalid("amount_usd", e.message))?;
    if amount == Usd::ZERO {
        return Err(invalid(
            "amount_usd",
            "the amount must not be zero".to_owned(),
        ));
    }
    if request
        .idempotency_key
        .as_ref()
        .is_some_and(|k| k.is_empty() || k.len() > 200)
    {
        return Err(invalid(
            "idempotency_key",
            "an idempotency key has 1 to 200 characters".to_owned(),
        ));
    }
    if request.description.as_ref().is_some_and(|d| d.len() > 500) {
        return Err(invalid(
            "description",
            "a description has at most 500 characters".to_owned(),
        ));
    }
    let user = match (request.user_id, request.email.as_deref()) {
        (Some(id), None) => UserId(id),
        (None, Some(email)) => {
            let email = Email::parse(email).map_err(|e| invalid("email", e.message))?;
            state
                .accounts
                .find_user_by_email(&email)
                .await?
                .ok_or(ApiError::NotFound("User not found".to_owned()))?
                .id
        }
        _ => {
            return Err(invalid(
                "user_id",
                "name the user by exactly one of user_id and email".to_owned(),
            ));
        }
    };
    let outcome = state
        .billing
        .grant(
            user,
            LedgerEntryType::Adjustment,
            amount,
            request.description,
            request.idempotency_key.map(|k| format!("operator:{k}")),
        )
        .await
        .map_err(|e| match e {
            GrantError::NoUser => ApiError::NotFound("User not found".to_owned()),
            GrantError::Unknown(e) => e.into(),
        })?;
    let (entry, duplicate) = match outcome {
        PostingOutcome::Posted(entry) => (entry, false),
        PostingOutcome::Duplicate(entry) => (entry, true),
        PostingOutcome::NoUser => return Err(ApiError::NotFound("User not found".to_owned())),
    };
    let balance = state
        .billing
        .balance(user)
        .await?
        .ok_or(ApiError::NotFound("User not found".to_owned()))?;
    tracing::info!(user = user.0, amount = %amount, duplicate, "operator adjusted a user's credit");
    Ok(HttpResponse::Ok().json(CreditAdjustmentResponse {
        entry: LedgerEntryResponse::from(entry),
        duplicate,
        balance: BalanceResponse::from(balance),
    }))
}
