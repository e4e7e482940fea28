use actix_web::{HttpResponse, post, web};
use morpheus_domain::services::NewDelegation;
use morpheus_domain::{EthAddress, SignedDelegation};

use crate::AppState;
use crate::dto::{DelegationCreate, DelegationRead};
use crate::error::{ApiError, ErrorResponse, Fields, JsonBodyErrors, ServerErrors};
use crate::extract::{AuthenticatedUser, ValidatedJson};

/// Store a signed delegation. When it is active, the user's previously active delegation is
/// deactivated.
#[utoipa::path(
    operation_id = "store_delegation_api_v1_auth_delegation_post",
    tag = "Auth",
    request_body = DelegationCreate,
    responses(
        (status = 200, description = "The stored delegation", body = DelegationRead),
        (status = 400, description = "The delegate is not the configured gateway address", body = ErrorResponse),
        (status = 401, description = "Missing or invalid access token", body = ErrorResponse),
        (status = 409, description = "The user already stores the most delegations allowed", body = ErrorResponse),
        JsonBodyErrors, ServerErrors,
    ),
    security(("BearerAuth" = []))
)]
#[post("/delegation")]
pub async fn store_delegation(
    state: web::Data<AppState>,
    user: AuthenticatedUser,
    body: ValidatedJson<DelegationCreate>,
) -> Result<HttpResponse, ApiError> {
    let body = body.0;
    let mut fields = Fields::default();
    let address = fields.check(
        "delegate_address",
        EthAddress::parse(&body.delegate_address),
    );
    let data = fields.check(
        "signed_delegation_data",
        SignedDelegation::parse(body.signed_delegation_data, state.delegations.max_chars()),
    );
    let (Some(delegate_address), Some(signed_delegation_data)) = (address, data) else {
        return Err(fields.into());
    };
    let new = NewDelegation {
        delegate_address,
        signed_delegation_data,
        expiry: body.expiry,
        is_active: body.is_active,
    };
    let stored = state.delegations.store(user.0.id, new).await?;
    Ok(HttpResponse::Ok().json(DelegationRead::from(stored)))
}
