use actix_web::{HttpResponse, get, web};
use morpheus_domain::ModelId;

use crate::AppState;
use crate::dto::{RatedBidEntry, RatedBids, RatedBidsQuery};
use crate::error::{
    ApiError, ErrorResponse, FieldError, HTTPValidationError, LocItem, MarketplaceErrors,
};
use crate::extract::ValidatedQuery;

/// The bids for a model, best first, as rated by the proxy-router.
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
    query: ValidatedQuery<RatedBidsQuery>,
) -> Result<HttpResponse, ApiError> {
    let model = ModelId::parse(&query.0.model_id).map_err(|invalid| {
        ApiError::validation(FieldError::new(
            vec![LocItem::from("query"), LocItem::from("model_id")],
            "string_pattern_mismatch",
            invalid.message,
        ))
    })?;
    let bids = state.sessions.market().rated_bids(&model).await?;
    Ok(HttpResponse::Ok().json(RatedBids {
        bids: bids.iter().map(RatedBidEntry::from).collect(),
    }))
}
