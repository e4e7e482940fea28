use actix_web::{HttpResponse, get, web};
use morpheus_domain::ModelId;

use crate::AppState;
use crate::client_address::Client;
use crate::dto::{RatedBidEntry, RatedBids, RatedBidsQuery};
use crate::error::{
    ApiError, ErrorResponse, FieldError, HTTPValidationError, LocItem, MarketplaceErrors,
};
use crate::extract::ValidatedQuery;

/// The bids for a model, best first, as rated by the proxy-router. The model is named as for
/// `POST /session/modelsession`: a name, an alias or an on-chain id.
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
        (status = 404, description = "No such model", body = ErrorResponse),
        (status = 422, description = "model_id is missing or blank", body = HTTPValidationError),
        (status = 503, description = "No proxy-router is configured, or the model list is not loaded yet", body = ErrorResponse),
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
    let requested = query.0.model_id.trim();
    if requested.is_empty() || requested.chars().count() > 256 {
        return Err(ApiError::validation(FieldError::new(
            vec![LocItem::from("query"), LocItem::from("model_id")],
            "string_too_short",
            "model_id must be 1 to 256 characters",
        )));
    }
    // An on-chain id is asked for as it is (the catalogue may not list it); a name or an
    // alias is resolved first, so both share the id's cached answer.
    let model = match ModelId::parse(requested) {
        Ok(id) => id,
        Err(_) => state.sessions.catalogue().resolve(Some(requested))?.id,
    };
    let market = state.sessions.market();
    let bids = state
        .rated_bids
        .get(&model, || market.rated_bids(&model))
        .await?;
    Ok(HttpResponse::Ok().json(RatedBids {
        bids: bids.iter().map(RatedBidEntry::from).collect(),
    }))
}
