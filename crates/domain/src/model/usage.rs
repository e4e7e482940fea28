//! One record per chat request: the base for limits and billing.

use chrono::{DateTime, Utc};

use super::{ApiKeyId, ModelId, SessionId, TokenUsage, UserId};

/// How a chat request ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UsageOutcome {
    /// Answered in full.
    Completed,
    /// Refused or failed before any byte of an answer reached the client.
    Failed,
    /// A stream that broke after it started (upstream cut, stall, garbage).
    Incomplete,
    /// The client went away before the answer was complete.
    ClientClosed,
}

impl UsageOutcome {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Completed => "completed",
            Self::Failed => "failed",
            Self::Incomplete => "incomplete",
            Self::ClientClosed => "client_closed",
        }
    }

    pub fn parse(raw: &str) -> Option<Self> {
        match raw {
            "completed" => Some(Self::Completed),
            "failed" => Some(Self::Failed),
            "incomplete" => Some(Self::Incomplete),
            "client_closed" => Some(Self::ClientClosed),
            _ => None,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UsageRecord {
    pub user_id: UserId,
    pub api_key_id: ApiKeyId,
    pub model_id: Option<ModelId>,
    pub session_id: Option<SessionId>,
    /// `None` when the provider reported nothing usable.
    pub usage: Option<TokenUsage>,
    pub outcome: UsageOutcome,
    /// The HTTP status the client got (200 for streams that started).
    pub status: u16,
    pub stream: bool,
    pub latency_ms: u32,
    pub created_at: DateTime<Utc>,
}
