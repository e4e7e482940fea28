use actix_web::{HttpResponse, post, web};
use morpheus_domain::BidId;

use super::{owner, terms};
use crate::AppState;
use crate::dto::{BidSessionQuery, SessionDataRequest, SessionResponse};
use crate::error::{
    ApiError, CodedErrorResponse, ErrorResponse, FieldError, JsonBodyErrors, LocItem,
    MarketplaceErrors, ServerErrors,
};
use crate::extract::{ApiKeyUser, ValidatedJson, ValidatedQuery};

/// Opens a session on one bid. It replaces the key's active session for the bid's model.
#[utoipa::path(
    operation_id = "create_bid_session_api_v1_session_bidsession_post",
    tag = "Session",
    params(BidSessionQuery),
    request_body = SessionDataRequest,
    responses(
        (status = 200, description = "The new session", body = SessionResponse),
        (status = 401, description = "Missing or invalid API key", body = ErrorResponse),
        (status = 403, description = "The model is not on the API key's allowed_models; nothing was staked", body = ErrorResponse),
        (status = 404, description = "No such bid", body = ErrorResponse),
        JsonBodyErrors, MarketplaceErrors, ServerErrors,
        // After the shared ones, whose 429 and 503 these replace: the operator's stake caps
        // (nothing staked), named by `code`, beside the same statuses' other causes.
        (status = 429, description = "`too_many_sessions`: the user has as many active explicit sessions as allowed (MORPHEUS_MAX_SESSIONS_PER_USER), nothing was staked; or (no code) the proxy-router or provider is rate limiting, see Retry-After", body = CodedErrorResponse),
        (status = 503, description = "An operator's stake cap refused to open a session, nothing was staked: `stake_budget_exhausted` (Retry-After: until the UTC day's end), `bid_price_above_limit`, `mor_below_low_water_mark` or `stake_budget_unavailable`; or (no code) the database is unavailable, no proxy-router is configured or the server is saturated, retry later", body = CodedErrorResponse),
    ),
    security(("APIKeyAuth" = []))
)]
#[post("/bidsession")]
pub async fn create_bid_session(
    state: web::Data<AppState>,
    key: ApiKeyUser,
    query: ValidatedQuery<BidSessionQuery>,
    body: ValidatedJson<SessionDataRequest>,
) -> Result<HttpResponse, ApiError> {
    let bid = BidId::parse(&query.0.bid_id).map_err(|invalid| {
        ApiError::validation(FieldError::new(
            vec![LocItem::from("query"), LocItem::from("bid_id")],
            "string_pattern_mismatch",
            invalid.message,
        ))
    })?;
    let terms = terms(&body.0)?;
    let opened = state
        .sessions
        .open_for_bid(owner(&key.0), &bid, terms, &key.0.key.policy)
        .await?;
    Ok(HttpResponse::Ok().json(SessionResponse::new(
        &opened.session,
        key.0.key.prefix.as_str(),
        "Session created and associated with API key",
    )))
}
