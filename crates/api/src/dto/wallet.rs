use chrono::{DateTime, Utc};
use morpheus_domain::WalletKeyStatus;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PrivateKeyCreate {
    #[schema(pattern = r"^0x[0-9a-fA-F]{64}$")]
    pub private_key: String,
}

impl std::fmt::Debug for PrivateKeyCreate {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("PrivateKeyCreate(..)")
    }
}

/// Whether a wallet key is stored, and when. The key itself is never returned.
#[derive(Debug, Serialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PrivateKeyStatus {
    pub has_key: bool,
    #[schema(required = true)]
    pub created_at: Option<DateTime<Utc>>,
    #[schema(required = true)]
    pub updated_at: Option<DateTime<Utc>>,
}

impl From<WalletKeyStatus> for PrivateKeyStatus {
    fn from(s: WalletKeyStatus) -> Self {
        Self {
            has_key: s.has_key,
            created_at: s.created_at,
            updated_at: s.updated_at,
        }
    }
}

#[derive(Debug, Serialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct MessageResponse {
    pub message: String,
}
