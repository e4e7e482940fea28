//! The gateway's record of a marketplace session: which API key opened it, for which model,
//! and until when the chain says it runs.

use chrono::{DateTime, Utc};

use super::{ApiKeyId, BidId, ModelId, SessionId, UserId};

/// How a session came to be.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SessionOrigin {
    /// Opened by a chat request (automation on).
    Automated,
    /// Opened with `POST /session/modelsession`.
    Model,
    /// Opened with `POST /session/bidsession`.
    Bid,
}

impl SessionOrigin {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Automated => "automated",
            Self::Model => "model",
            Self::Bid => "bid",
        }
    }

    pub fn parse(raw: &str) -> Option<Self> {
        match raw {
            "automated" => Some(Self::Automated),
            "model" => Some(Self::Model),
            "bid" => Some(Self::Bid),
            _ => None,
        }
    }
}

/// Where a session is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SessionState {
    /// Serving chat requests.
    Active,
    /// No longer used by the gateway, but still open on chain: it is closed once the chain's
    /// end has passed, because closing earlier locks the unused stake for about a day.
    Retired,
    /// Closed on chain (or found closed there).
    Closed,
}

impl SessionState {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Active => "active",
            Self::Retired => "retired",
            Self::Closed => "closed",
        }
    }

    pub fn parse(raw: &str) -> Option<Self> {
        match raw {
            "active" => Some(Self::Active),
            "retired" => Some(Self::Retired),
            "closed" => Some(Self::Closed),
            _ => None,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SessionRecord {
    pub id: SessionId,
    pub api_key_id: ApiKeyId,
    pub user_id: UserId,
    pub model_id: ModelId,
    pub bid_id: Option<BidId>,
    pub origin: SessionOrigin,
    pub state: SessionState,
    pub opened_at: DateTime<Utc>,
    /// The chain's `EndsAt`.
    pub ends_at: DateTime<Utc>,
    pub closed_at: Option<DateTime<Utc>>,
    /// In the shared pool: the gateway's, serving any key's requests one at a time. Sessions
    /// automation opens are pooled from the start; an explicit session joins when its key
    /// gives it up (it is paid for). Otherwise the session is its key's.
    pub pooled: bool,
}

impl SessionRecord {
    /// Usable for a request starting now: active, and not within `margin` of its end.
    pub fn is_usable(&self, now: DateTime<Utc>, margin: chrono::Duration) -> bool {
        self.state == SessionState::Active && self.ends_at > now + margin
    }
}
