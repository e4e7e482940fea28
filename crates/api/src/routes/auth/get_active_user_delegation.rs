use actix_web::{HttpResponse, get, web};

use crate::AppState;
use crate::dto::DelegationRead;
use crate::error::{ApiError, ErrorResponse, ServerErrors};
use crate::extract::AuthenticatedUser;

/// The current user's active delegation, or `null` when there is none.
#[utoipa::path(
    operation_id = "get_active_user_delegation_api_v1_auth_delegation_active_get",
    tag = "Auth",
    responses(
        (status = 200, description = "The active delegation, or null", body = Option<DelegationRead>),
        (status = 401, description = "Missing or invalid access token", body = ErrorResponse),
        ServerErrors,
    ),
    security(("BearerAuth" = []))
)]
#[get("/delegation/active")]
pub async fn get_active_user_delegation(
    state: web::Data<AppState>,
    user: AuthenticatedUser,
) -> Result<HttpResponse, ApiError> {
    let active = state.delegations.active(user.0.id).await?;
    Ok(HttpResponse::Ok().json(active.map(DelegationRead::from)))
}
