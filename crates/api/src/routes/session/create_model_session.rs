use actix_web::{HttpResponse, post, web};

use super::{owner, terms};
use crate::AppState;
use crate::dto::{ModelSessionQuery, SessionDataRequest, SessionResponse};
use crate::error::{
    ApiError, CodedErrorResponse, ErrorResponse, FieldError, JsonBodyErrors, LocItem,
    MarketplaceErrors, ServerErrors,
};
use crate::extract::{ApiKeyUser, ValidatedJson, ValidatedQuery};

/// Opens a session for a model (or returns the key's active one for it). Duration and payment
/// options are honoured (the original ignored them and always used 3600 s).
#[utoipa::path(
    operation_id = "create_model_session_api_v1_session_modelsession_post",
    tag = "Session",
    params(ModelSessionQuery),
    request_body = SessionDataRequest,
    responses(
        (status = 200, description = "The key's session for the model", body = SessionResponse),
        (status = 401, description = "Missing or invalid API key", body = ErrorResponse),
        (status = 403, description = "The model is not on the API key's allowed_models; nothing was staked", body = ErrorResponse),
        (status = 404, description = "No such model", body = ErrorResponse),
        JsonBodyErrors, MarketplaceErrors, ServerErrors,
        // After the shared ones, whose 429 and 503 these replace: the operator's stake caps
        // (nothing staked), named by `code`, beside the same statuses' other causes.
        (status = 429, description = "`too_many_sessions`: the user has as many active explicit sessions as allowed (MORPHEUS_MAX_SESSIONS_PER_USER), nothing was staked; or (no code) the proxy-router or provider is rate limiting, see Retry-After", body = CodedErrorResponse),
        (status = 503, description = "An operator's stake cap refused to open a session, nothing was staked: `stake_budget_exhausted` (Retry-After: until the UTC day's end), `bid_price_above_limit`, `mor_below_low_water_mark` or `stake_budget_unavailable`; or (no code) the database is unavailable, no proxy-router is configured or the server is saturated, retry later", body = CodedErrorResponse),
    ),
    security(("APIKeyAuth" = []))
)]
#[post("/modelsession")]
pub async fn create_model_session(
    state: web::Data<AppState>,
    key: ApiKeyUser,
    query: ValidatedQuery<ModelSessionQuery>,
    body: ValidatedJson<SessionDataRequest>,
) -> Result<HttpResponse, ApiError> {
    let model = query.0.model_id.trim();
    if model.is_empty() || model.chars().count() > 256 {
        return Err(ApiError::validation(FieldError::new(
            vec![LocItem::from("query"), LocItem::from("model_id")],
            "string_too_short",
            "model_id must be 1 to 256 characters",
        )));
    }
    let terms = terms(&body.0)?;
    let opened = state
        .sessions
        .open_for_model(owner(&key.0), model, terms, &key.0.key.policy)
        .await?;
    let message = if opened.created {
        "Session created and associated with API key"
    } else {
        "The API key already has an active session for this model"
    };
    Ok(HttpResponse::Ok().json(SessionResponse::new(
        &opened.session,
        key.0.key.prefix.as_str(),
        message,
    )))
}
