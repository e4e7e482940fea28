use actix_web::{HttpRequest, HttpResponse, delete, web};
use morpheus_domain::DelegationId;

use crate::AppState;
use crate::error::{ApiError, ErrorResponse, HTTPValidationError, ServerErrors};
use crate::extract::{AuthenticatedUser, path_id};

/// Delete one of the current user's delegations. Another user's id answers 404.
#[utoipa::path(
    operation_id = "delete_delegation_api_v1_auth_delegation__delegation_id__delete",
    tag = "Auth",
    params(("delegation_id" = i64, Path, minimum = 1, description = "The delegation's id")),
    responses(
        (status = 204, description = "Deleted"),
        (status = 401, description = "Missing or invalid access token", body = ErrorResponse),
        (status = 404, description = "The user has no delegation with this id", body = ErrorResponse),
        (status = 422, description = "The id is not a positive integer", body = HTTPValidationError),
        ServerErrors,
    ),
    security(("BearerAuth" = []))
)]
#[delete("/delegation/{delegation_id}")]
pub async fn delete_delegation(
    req: HttpRequest,
    state: web::Data<AppState>,
    user: AuthenticatedUser,
) -> Result<HttpResponse, ApiError> {
    let id = DelegationId(path_id(&req, "delegation_id")?);
    state.delegations.delete(user.0.id, id).await?;
    Ok(HttpResponse::NoContent().finish())
}
