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
    /// How many explicit (not pooled) sessions of the user, all keys together, are active and
    /// end after `now`: what the cap on a user's sessions counts.
    async fn count_explicit_sessions(
        &self,
        user: UserId,
        now: DateTime<Utc>,
    ) -> anyhow::Result<u64>;
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

/// A reservation for one session open, counted against the model's cap on every replica until
/// [`SessionPoolRepository::finish_open`] ends it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OpenTicket(pub i64);

/// What a replica asks the shared pool for when it needs one more session of a model.
#[derive(Debug, Clone)]
pub struct PoolTakeRequest {
    pub model: ModelId,
    /// The replica asking (leases are recorded under this name).
    pub replica: String,
    /// Most pooled sessions of the model, open or being opened, on all replicas together.
    pub cap: u32,
    pub now: DateTime<Utc>,
    /// A session must end after this to be leased or counted (it could serve a request).
    pub usable_after: DateTime<Utc>,
    /// Until when a session leased now is this replica's.
    pub lease_until: DateTime<Utc>,
    /// Reservations started before this belong to a replica that died mid-open: they no longer
    /// count.
    pub opens_stale_before: DateTime<Utc>,
}

/// What the shared pool gave.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PoolTake {
    /// An idle pooled session no replica held, now leased to the asking one.
    Leased(SessionRecord),
    /// Room under the cap: the asking replica may open one session.
    Reserved(OpenTicket),
    /// The model's pool is at its cap on all replicas together.
    Full,
}

/// The pooled sessions' leases and the per-model cap, shared by every replica through the
/// database: the decisions are taken in one transaction under a per-model lock, so no session
/// is leased twice and no two replicas open past the cap.
#[async_trait]
pub trait SessionPoolRepository: Send + Sync {
    async fn take_or_reserve(&self, request: PoolTakeRequest) -> anyhow::Result<PoolTake>;
    /// Ends the reservation `ticket`; when the open succeeded, stores its session in the same
    /// transaction, pooled and leased to `replica` until `lease_until`.
    async fn finish_open(
        &self,
        ticket: OpenTicket,
        opened: Option<SessionRecord>,
        replica: &str,
        lease_until: DateTime<Utc>,
    ) -> Result<(), InsertSessionError>;
    /// Extends every lease `replica` holds on an active session to `until`, and returns the
    /// sessions it holds: a session missing from the list was taken over after its lease ran
    /// out and is no longer this replica's.
    async fn renew_leases(
        &self,
        replica: &str,
        until: DateTime<Utc>,
    ) -> anyhow::Result<Vec<SessionId>>;
    /// Gives up `replica`'s leases on `ids` at `at` (remembered, for the idle grace): the
    /// sessions stay in the pool for any replica.
    async fn release_leases(
        &self,
        replica: &str,
        ids: Vec<SessionId>,
        at: DateTime<Utc>,
    ) -> anyhow::Result<()>;
    /// Leases to `replica` the pooled sessions no replica has held since before
    /// `released_before`, except each model's last active one (a warm model keeps one), for
    /// closing them.
    async fn take_idle_for_closing(
        &self,
        replica: &str,
        now: DateTime<Utc>,
        released_before: DateTime<Utc>,
        lease_until: DateTime<Utc>,
    ) -> anyhow::Result<Vec<SessionRecord>>;
    /// Moves an active session into the pool (its key gave it up); `false` if it was not active.
    async fn join_pool(&self, id: &SessionId) -> anyhow::Result<bool>;
    /// How many pooled sessions and reservations each model has, for metrics:
    /// `(model, active sessions, leased sessions, opens in progress)`.
    async fn pool_census(&self, now: DateTime<Utc>) -> anyhow::Result<Vec<PoolCensus>>;
}

/// One model's pool across replicas.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PoolCensus {
    pub model: ModelId,
    pub active: u64,
    pub leased: u64,
    pub opening: u64,
}
