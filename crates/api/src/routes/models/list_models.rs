use actix_web::{HttpResponse, get, web};

use crate::AppState;
use crate::dto::ModelList;
use crate::error::{ApiError, ErrorResponse, UpstreamFailure};

/// The models chat requests may name, from the in-memory catalogue (refreshed in the
/// background; a request never waits for the marketplace).
#[utoipa::path(
    operation_id = "list_models_api_v1_models_get",
    tag = "Models",
    responses(
        (status = 200, description = "The models available", body = ModelList),
        (status = 503, description = "Neither a proxy-router nor a providers file is configured, or the list has not been loaded yet", body = ErrorResponse),
    )
)]
#[get("")]
pub async fn list_models(state: web::Data<AppState>) -> Result<HttpResponse, ApiError> {
    listed(&state)
}

/// The same list under the trailing-slash path the original gateway documented.
#[utoipa::path(
    operation_id = "list_models_api_v1_models__get",
    tag = "Models",
    responses(
        (status = 200, description = "The models available", body = ModelList),
        (status = 503, description = "Neither a proxy-router nor a providers file is configured, or the list has not been loaded yet", body = ErrorResponse),
    )
)]
#[get("/")]
pub async fn list_models_slash(state: web::Data<AppState>) -> Result<HttpResponse, ApiError> {
    listed(&state)
}

fn listed(state: &AppState) -> Result<HttpResponse, ApiError> {
    let snapshot = loaded_catalogue(state)?;
    Ok(HttpResponse::Ok().json(ModelList::from_models(&snapshot.listed)))
}

/// The catalogue, or the 503 that explains why there is none.
pub(super) fn loaded_catalogue(
    state: &AppState,
) -> Result<std::sync::Arc<morpheus_domain::services::CatalogueSnapshot>, ApiError> {
    // Without a marketplace, a providers file's models are the whole list.
    if !state.marketplace_configured && !state.chat.has_providers() {
        return Err(ApiError::Upstream(UpstreamFailure::from(
            &morpheus_domain::ports::MarketplaceError::NotConfigured,
        )));
    }
    let snapshot = state.sessions.catalogue().snapshot();
    if !snapshot.is_loaded() {
        return Err(ApiError::ServiceUnavailable(
            "The model list has not been loaded from the marketplace yet; retry shortly",
        ));
    }
    Ok(snapshot)
}
