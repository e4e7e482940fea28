//! Storage of the gateway's session records and usage records.

use async_trait::async_trait;
use chrono::{DateTime, Utc};

use crate::model::*;

#[derive(Debug, thiserror::Error)]
pub enum InsertSessionError {
    /// The key already has an active session for this model (a unique index guards it, so two
    /// replicas racing cannot both store one).
    #[error("the key already has an active session for this model")]
    ActiveExists,
    /// A record with this session id exists already.
    #[error("session already recorded")]
    Duplicate,
    #[error(transparent)]
    Unknown(#[from] anyhow::Error),
}

#[async_trait]
pub trait SessionRepository: Send + Sync {
    async fn insert_session(&self, session: SessionRecord) -> Result<(), InsertSessionError>;
    /// The key's active session for `model`, if any (whatever its end).
    async fn find_active_session(
        &self,
        key: ApiKeyId,
        model: &ModelId,
    ) -> anyhow::Result<Option<SessionRecord>>;
    /// The session with this id if it belongs to `key` (any state).
    async fn find_key_session(
        &self,
        key: ApiKeyId,
        id: &SessionId,
    ) -> anyhow::Result<Option<SessionRecord>>;
    /// The key's active sessions, newest first.
    async fn list_active_sessions(&self, key: ApiKeyId) -> anyhow::Result<Vec<SessionRecord>>;
    /// How many sessions are active, all keys together.
    async fn count_active_sessions(&self) -> anyhow::Result<u64>;
    /// Moves an active session to `Retired`; `false` if it was not active.
    async fn retire_session(&self, id: &SessionId) -> anyhow::Result<bool>;
    /// Marks the session closed (from any state).
    async fn mark_session_closed(&self, id: &SessionId, at: DateTime<Utc>) -> anyhow::Result<()>;
    /// Sessions not yet closed whose end is at or before `now`, oldest end first.
    async fn sessions_due_for_close(
        &self,
        now: DateTime<Utc>,
        limit: u32,
    ) -> anyhow::Result<Vec<SessionRecord>>;
    /// Every session not yet closed (for reconciling with the chain), in id order after `after`.
    async fn list_open_sessions(
        &self,
        after: Option<&SessionId>,
        limit: u32,
    ) -> anyhow::Result<Vec<SessionRecord>>;
    /// Corrects the recorded end after the chain was asked.
    async fn update_session_end(
        &self,
        id: &SessionId,
        ends_at: DateTime<Utc>,
    ) -> anyhow::Result<()>;
    /// The session with this id, whoever holds it (operators' tools).
    async fn find_session(&self, id: &SessionId) -> anyhow::Result<Option<SessionRecord>>;
    /// Sessions newest first, at most `limit`: the user's when given, closed ones only when
    /// `include_closed` (operators' tools).
    async fn list_sessions(
        &self,
        user: Option<UserId>,
        include_closed: bool,
        limit: u32,
    ) -> anyhow::Result<Vec<SessionRecord>>;
}

#[async_trait]
pub trait UsageRepository: Send + Sync {
    /// Stores the records in one transaction.
    async fn insert_usage(&self, records: Vec<UsageRecord>) -> anyhow::Result<()>;
    /// The user's records, newest first (for tests and later for billing views).
    async fn list_usage(&self, user: UserId, limit: u32) -> anyhow::Result<Vec<UsageRecord>>;
}

/// Where a finished chat request leaves its usage record. Never blocks and never fails on the
/// request's path: implementations queue the record and write batches in the background.
pub trait UsageSink: Send + Sync {
    fn record(&self, record: UsageRecord);
}
