use actix_web::{HttpResponse, get, web};
use morpheus_domain::ModelId;

use crate::AppState;
use crate::client_address::Client;
use crate::dto::{RatedBidEntry, RatedBids, RatedBidsQuery};
use crate::error::{
    ApiError, ErrorResponse, FieldError, HTTPValidationError, LocItem, MarketplaceErrors,
};
use crate::extract::ValidatedQuery;

/// The bids for a model, best first, as rated by the proxy-router.
///
/// Needs no credential: answers are shared for a short while per model (concurrent calls wait
/// for the one request to the proxy-router in flight), and calls are limited per client
/// address (429 with `Retry-After`).
#[utoipa::path(
    operation_id = "get_rated_bids_api_v1_models_ratedbids_get",
    tag = "Models",
    params(RatedBidsQuery),
    responses(
        (status = 200, description = "The model's bids with their scores", body = RatedBids),
        (status = 422, description = "model_id is missing or not an on-chain id", body = HTTPValidationError),
        (status = 503, description = "No proxy-router is configured", body = ErrorResponse),
        MarketplaceErrors,
    )
)]
#[get("/ratedbids")]
pub async fn get_rated_bids(
    state: web::Data<AppState>,
    client: Client,
    query: ValidatedQuery<RatedBidsQuery>,
) -> Result<HttpResponse, ApiError> {
    state
        .rated_bids
        .admit(client.0)
        .map_err(|retry_after| ApiError::TooManyRequests {
            message: "Too many requests for rated bids from this client address",
            retry_after,
        })?;
    let model = ModelId::parse(&query.0.model_id).map_err(|invalid| {
        ApiError::validation(FieldError::new(
            vec![LocItem::from("query"), LocItem::from("model_id")],
            "string_pattern_mismatch",
            invalid.message,
        ))
    })?;
    let market = state.sessions.market();
    let bids = state
        .rated_bids
        .get(&model, || market.rated_bids(&model))
        .await?;
    Ok(HttpResponse::Ok().json(RatedBids {
        bids: bids.iter().map(RatedBidEntry::from).collect(),
    }))
}
