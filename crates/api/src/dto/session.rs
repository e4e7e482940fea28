use chrono::{DateTime, Utc};
use morpheus_domain::SessionRecord;
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

/// How to open a session.
#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(example = json!({"sessionDuration": 3600, "directPayment": false, "failover": false}))]
pub struct SessionDataRequest {
    /// Seconds, 60 to 86400 (default 3600).
    #[serde(default, rename = "sessionDuration")]
    #[schema(minimum = 300, maximum = 86400, default = 3600)]
    pub session_duration: Option<i64>,
    /// Pay the provider directly instead of staking (default false).
    #[serde(default, rename = "directPayment")]
    #[schema(default = false)]
    pub direct_payment: Option<bool>,
    /// Let the proxy-router move the session to another provider on failure (default false).
    #[serde(default)]
    #[schema(default = false)]
    pub failover: Option<bool>,
}

#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct ModelSessionQuery {
    /// A model name, alias or on-chain id (`0x` + 64 hex digits).
    #[param(min_length = 1, max_length = 256, pattern = "\\S")]
    pub model_id: String,
}

#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct BidSessionQuery {
    /// The bid's id on chain (`0x` + 64 hex digits).
    #[param(pattern = "^0x[0-9a-fA-F]{64}$")]
    pub bid_id: String,
}

#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct ApproveQuery {
    /// Wei of MOR to approve (a positive integer).
    #[param(minimum = 1)]
    pub amount: i64,
}

#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct SessionSelector {
    /// One of this key's sessions; without it, the operation applies to the key's active
    /// sessions.
    #[param(pattern = "^0x[0-9a-fA-F]{64}$")]
    pub session_id: Option<String>,
}

/// A session of the calling API key.
#[derive(Debug, Serialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SessionResponse {
    pub success: bool,
    pub message: String,
    pub session_id: String,
    /// The prefix of the API key the session belongs to.
    pub api_key_prefix: String,
    /// The model's on-chain id.
    pub model: String,
    /// When the chain ends the session.
    pub ends_at: DateTime<Utc>,
}

impl SessionResponse {
    pub fn new(session: &SessionRecord, prefix: &str, message: &str) -> Self {
        Self {
            success: true,
            message: message.to_owned(),
            session_id: session.id.to_string(),
            api_key_prefix: prefix.to_owned(),
            model: session.model_id.to_string(),
            ends_at: session.ends_at,
        }
    }
}

#[derive(Debug, Serialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CloseSessionResponse {
    pub success: bool,
    pub message: String,
    /// The session closed, when exactly one was.
    #[schema(required = true)]
    pub session_id: Option<String>,
    /// Every session closed by this call.
    pub closed: Vec<String>,
}

#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum PingStatus {
    Alive,
    Expired,
    NoSession,
}

#[derive(Debug, Serialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PingSessionResponse {
    pub status: PingStatus,
    pub message: String,
    #[schema(required = true)]
    pub session_id: Option<String>,
    pub success: bool,
}

#[derive(Debug, Serialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ApproveResponse {
    /// The approval's transaction hash.
    pub tx: String,
    /// The contract allowed to spend (from the gateway's configuration).
    pub spender: String,
    /// The amount approved, in wei, as a decimal string.
    pub amount: String,
}
