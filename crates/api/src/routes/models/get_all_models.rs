use actix_web::{HttpResponse, get, web};

use super::list_models::loaded_catalogue;
use crate::AppState;
use crate::dto::ModelList;
use crate::error::{ApiError, ErrorResponse};

/// Every model registered on chain and not deleted (from the same background-refreshed
/// cache).
#[utoipa::path(
    operation_id = "get_all_models_api_v1_models_allmodels_get",
    tag = "Models",
    responses(
        (status = 200, description = "The models on chain", body = ModelList),
        (status = 503, description = "Neither a proxy-router nor a providers file is configured, or the list has not been loaded yet", body = ErrorResponse),
    )
)]
#[get("/allmodels")]
pub async fn get_all_models(state: web::Data<AppState>) -> Result<HttpResponse, ApiError> {
    let snapshot = loaded_catalogue(&state)?;
    Ok(HttpResponse::Ok().json(ModelList::from_models(&snapshot.all)))
}
