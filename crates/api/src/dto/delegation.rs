use chrono::{DateTime, Utc};
use morpheus_domain::Delegation;
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

fn active_by_default() -> bool {
    true
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct DelegationCreate {
    #[schema(pattern = r"^0x[0-9a-fA-F]{40}$")]
    pub delegate_address: String,
    #[schema(min_length = 1, max_length = 65536, pattern = r"^[^\u0000]*$")]
    pub signed_delegation_data: String,
    #[serde(default)]
    pub expiry: Option<DateTime<Utc>>,
    #[serde(default = "active_by_default")]
    #[schema(default = true)]
    pub is_active: bool,
}

#[derive(Debug, Serialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct DelegationRead {
    pub id: i64,
    pub user_id: i64,
    pub delegate_address: String,
    pub signed_delegation_data: String,
    #[schema(required = true)]
    pub expiry: Option<DateTime<Utc>>,
    pub is_active: bool,
    pub created_at: DateTime<Utc>,
}

impl From<Delegation> for DelegationRead {
    fn from(d: Delegation) -> Self {
        Self {
            id: d.id.0,
            user_id: d.user_id.0,
            delegate_address: d.delegate_address.as_str().to_owned(),
            signed_delegation_data: d.signed_delegation_data.as_str().to_owned(),
            expiry: d.expiry,
            is_active: d.is_active,
            created_at: d.created_at,
        }
    }
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct DelegationPageQuery {
    /// How many delegations to skip (newest first).
    #[param(minimum = 0, maximum = 1000000, default = 0)]
    pub skip: Option<i64>,
    /// How many to return (at most 100).
    #[param(minimum = 1, maximum = 100, default = 10)]
    pub limit: Option<i64>,
}
