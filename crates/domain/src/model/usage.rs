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

/// Where a request's token counts were read. The node passes the provider's `usage` only when
/// it was asked for (`stream_options.include_usage`) and adds its own two counts to final
/// chunks and whole answers (proxy-router-behaviour.md §4: `usage_from_provider`, the
/// provider's figures as the node received them; `usage_from_consumer`, the node's own count).
/// The audio routes bill units the gateway can count itself (speech's input characters, a WAV
/// upload's seconds): `gateway`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UsageSource {
    Usage,
    UsageFromProvider,
    UsageFromConsumer,
    Gateway,
}

impl UsageSource {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Usage => "usage",
            Self::UsageFromProvider => "usage_from_provider",
            Self::UsageFromConsumer => "usage_from_consumer",
            Self::Gateway => "gateway",
        }
    }

    pub fn parse(raw: &str) -> Option<Self> {
        match raw {
            "usage" => Some(Self::Usage),
            "usage_from_provider" => Some(Self::UsageFromProvider),
            "usage_from_consumer" => Some(Self::UsageFromConsumer),
            "gateway" => Some(Self::Gateway),
            _ => None,
        }
    }
}

/// Token counts and the member they were read from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ReportedUsage {
    pub tokens: TokenUsage,
    pub source: UsageSource,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UsageRecord {
    pub user_id: UserId,
    pub api_key_id: ApiKeyId,
    pub model_id: Option<ModelId>,
    pub session_id: Option<SessionId>,
    /// `marketplace`, or the name of the operator's provider that served (the last one
    /// tried when all failed); `None` when the request never reached one.
    pub upstream: Option<String>,
    /// `None` when the provider reported nothing usable.
    pub usage: Option<TokenUsage>,
    /// Where `usage` was read; `None` with it.
    pub usage_source: Option<UsageSource>,
    pub outcome: UsageOutcome,
    /// The HTTP status the client got (200 for streams that started).
    pub status: u16,
    pub stream: bool,
    pub latency_ms: u32,
    pub created_at: DateTime<Utc>,
}
