//! Marketplace sessions: which session a chat request runs on, and the session operations of
//! the API (open by model or bid, close, ping, approve).
//!
//! A session a key opens explicitly (by model or bid) belongs to that key; a key has at most one
//! active such session per model, and its requests use it. Opening one is single-flight per
//! (key, model) in this process, and the storage's unique index settles races between replicas.
//! Without one, requests run on the shared pool ([`SessionPool`]) when automation is on.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, Weak};

use chrono::{DateTime, Utc};

use super::keyed_locks::KeyedLocks;
use super::{
    AutomationService, ModelCatalogue, ResolveModelError, ResolvedModel, SessionLease, SessionPool,
    StakeGovernor, StakeRefusal, StakeReservation,
};
use crate::model::*;
use crate::ports::*;

/// A request does not start on a session this close to its end: it could expire mid-answer.
const END_MARGIN_SECONDS: i64 = 30;

/// How long a key's active session is taken from memory before it is read again. Changes made
/// on this replica apply at once; this bounds how long one made on another replica (a close,
/// a session opened by bid) goes unseen here. A session that ended meanwhile is caught by the
/// upstream's answer and renewed.
const RECENT_SESSION_TTL: std::time::Duration = std::time::Duration::from_secs(5);

/// Most (key, model) pairs whose session is kept in memory.
const RECENT_SESSION_CAPACITY: usize = 10_000;

/// The caller of a session operation: the API key the request was made with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SessionOwner {
    pub key: ApiKeyId,
    pub user: UserId,
}

#[derive(Clone)]
pub struct SessionService {
    sessions: Arc<dyn SessionRepository>,
    market: Arc<dyn Marketplace>,
    automation: AutomationService,
    catalogue: Arc<ModelCatalogue>,
    spender: Option<EthAddress>,
    pool: SessionPool,
    flights: Arc<Mutex<Flights>>,
    /// Each key's own session serves one request at a time on this replica, as the node
    /// serves one per session (proxy-router-behaviour.md §2.3): the others wait here, under
    /// the pool's queue deadline, rather than inside the node against their first-byte time.
    turns: Arc<Mutex<HashMap<SessionId, Weak<tokio::sync::Semaphore>>>>,
    /// The explicit session (or that there is none) of recently seen (key, model) pairs: the
    /// steady state of chat needs no database read per request.
    recent: Arc<quick_cache::sync::Cache<(ApiKeyId, ModelId), RecentSession>>,
    /// The operator's caps on opens; `None`: none.
    governor: Option<StakeGovernor>,
    /// A user's explicit opens, one at a time on this replica, so two at once cannot both
    /// pass the cap on the user's sessions.
    user_opens: Arc<KeyedLocks<UserId>>,
}

#[derive(Clone)]
struct RecentSession {
    session: Option<SessionRecord>,
    read_at: std::time::Instant,
}

/// The opens in progress, per (key, model); weak, so finished ones can be dropped.
type Flights = HashMap<(ApiKeyId, ModelId), Weak<OpenLock>>;

/// Held while a session for one (key, model) is being opened.
type OpenLock = tokio::sync::Mutex<()>;

/// Why a chat request has no session to run on.
#[derive(Debug, thiserror::Error)]
pub enum ChatSessionError {
    /// The `session_id` the client gave is not one of its key's sessions.
    #[error("session not found")]
    NotFound,
    /// The `session_id` the client gave has ended.
    #[error("session has ended")]
    Ended,
    /// No active session and automation is off for this user.
    #[error("automation is disabled")]
    AutomationDisabled,
    /// Every pooled session of the model is busy, the cap allows no more, and none came back
    /// within the queue's deadline.
    #[error("every session of the model is busy")]
    PoolBusy(super::PoolBusy),
    /// No provider of the model would open a session (none left after the bid walk).
    #[error("no provider of the model accepts a session")]
    ModelUnavailable,
    /// One of the operator's stake caps refused to open a session: nothing was staked.
    #[error(transparent)]
    Stake(StakeRefusal),
    #[error(transparent)]
    Upstream(#[from] MarketplaceError),
    #[error(transparent)]
    Unknown(#[from] anyhow::Error),
}

impl ChatSessionError {
    /// The same error again, for telling several waiting requests (an `anyhow` error cannot
    /// be cloned; its text is kept).
    pub fn duplicate(&self) -> Self {
        match self {
            Self::NotFound => Self::NotFound,
            Self::Ended => Self::Ended,
            Self::AutomationDisabled => Self::AutomationDisabled,
            Self::PoolBusy(busy) => Self::PoolBusy(*busy),
            Self::ModelUnavailable => Self::ModelUnavailable,
            Self::Stake(refusal) => Self::Stake(refusal.clone()),
            Self::Upstream(e) => Self::Upstream(e.clone()),
            Self::Unknown(e) => Self::Unknown(anyhow::anyhow!("{e:#}")),
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum OpenSessionError {
    #[error(transparent)]
    Model(#[from] ResolveModelError),
    /// The proxy-router does not know the bid.
    #[error("bid not found")]
    BidNotFound,
    /// The model (named, or of the bid) is not on the key's allow-list: nothing was staked.
    #[error("this API key may not use the model '{0}'")]
    ModelNotAllowed(String),
    /// One of the operator's stake caps refused: nothing was staked.
    #[error(transparent)]
    Stake(#[from] StakeRefusal),
    #[error(transparent)]
    Upstream(#[from] MarketplaceError),
    #[error(transparent)]
    Unknown(#[from] anyhow::Error),
}

#[derive(Debug, thiserror::Error)]
pub enum CloseSessionError {
    #[error("session not found")]
    NotFound,
    #[error(transparent)]
    Upstream(#[from] MarketplaceError),
    #[error(transparent)]
    Unknown(#[from] anyhow::Error),
}

#[derive(Debug, thiserror::Error)]
pub enum PingSessionError {
    #[error("session not found")]
    NotFound,
    #[error(transparent)]
    Upstream(#[from] MarketplaceError),
    #[error(transparent)]
    Unknown(#[from] anyhow::Error),
}

#[derive(Debug, thiserror::Error)]
pub enum ApproveError {
    /// No spender (the Diamond contract) is configured.
    #[error("no spender is configured")]
    NoSpender,
    #[error(transparent)]
    Upstream(#[from] MarketplaceError),
}

/// What a ping found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PingOutcome {
    /// The key has no active session.
    NoSession,
    Alive(SessionRecord),
    /// Past its end or closed on chain; the record is retired.
    Ended(SessionRecord),
}

/// What opening by model or bid did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OpenedSession {
    pub session: SessionRecord,
    /// `false` when the key's active session for the model was returned as is.
    pub created: bool,
}

impl SessionService {
    pub fn new(
        sessions: Arc<dyn SessionRepository>,
        market: Arc<dyn Marketplace>,
        automation: AutomationService,
        catalogue: Arc<ModelCatalogue>,
        spender: Option<EthAddress>,
        pool: SessionPool,
    ) -> Self {
        Self {
            sessions,
            market,
            automation,
            catalogue,
            spender,
            pool,
            flights: Arc::default(),
            turns: Arc::default(),
            recent: Arc::new(quick_cache::sync::Cache::new(RECENT_SESSION_CAPACITY)),
            governor: None,
            user_opens: Arc::default(),
        }
    }

    /// Puts every open, explicit and pooled, under the operator's stake caps.
    pub fn with_governor(mut self, governor: StakeGovernor) -> Self {
        self.pool.govern(governor.clone());
        self.governor = Some(governor);
        self
    }

    pub fn governor(&self) -> Option<&StakeGovernor> {
        self.governor.as_ref()
    }

    fn remember(&self, session: &SessionRecord) {
        self.recent.insert(
            (session.api_key_id, session.model_id.clone()),
            RecentSession {
                session: Some(session.clone()),
                read_at: std::time::Instant::now(),
            },
        );
    }

    /// Forgets the session of (key, model) if it is `id`.
    fn forget(&self, key: ApiKeyId, model: &ModelId, id: &SessionId) {
        self.recent.remove_if(&(key, model.clone()), |recent| {
            recent.session.as_ref().is_none_or(|s| &s.id == id)
        });
    }

    /// Retires a session in storage and in memory.
    async fn retire(&self, session: &SessionRecord) -> anyhow::Result<bool> {
        self.forget(session.api_key_id, &session.model_id, &session.id);
        self.sessions.retire_session(&session.id).await
    }

    pub fn catalogue(&self) -> &Arc<ModelCatalogue> {
        &self.catalogue
    }

    pub fn spender(&self) -> Option<&EthAddress> {
        self.spender.as_ref()
    }

    pub fn market(&self) -> &Arc<dyn Marketplace> {
        &self.market
    }

    pub fn pool(&self) -> &SessionPool {
        &self.pool
    }

    /// Sessions recorded as active, all keys and replicas together (for metrics).
    pub async fn count_active(&self) -> anyhow::Result<u64> {
        self.sessions.count_active_sessions().await
    }

    fn margin() -> chrono::Duration {
        chrono::Duration::seconds(END_MARGIN_SECONDS)
    }

    /// The session the client named in a chat request: it must belong to the key.
    pub async fn pinned_session(
        &self,
        owner: SessionOwner,
        id: &SessionId,
    ) -> Result<SessionRecord, ChatSessionError> {
        let session = self
            .sessions
            .find_key_session(owner.key, id)
            .await?
            .ok_or(ChatSessionError::NotFound)?;
        if session.state != SessionState::Active || session.ends_at <= Utc::now() {
            return Err(ChatSessionError::Ended);
        }
        Ok(session)
    }

    /// The session a chat request without `session_id` runs on: the key's own session for
    /// the model, else one of the shared pool when the user's automation allows it.
    pub async fn session_for_chat(
        &self,
        owner: SessionOwner,
        model: &ResolvedModel,
    ) -> Result<SessionLease, ChatSessionError> {
        if let Some(session) = self.usable_session(owner.key, &model.id).await? {
            return self.take_turn(session).await;
        }
        let settings = self.automation.get(owner.user).await?;
        if !settings.is_enabled {
            return Err(ChatSessionError::AutomationDisabled);
        }
        let terms = SessionTerms {
            duration: settings.session_duration,
            direct_payment: false,
            failover: false,
        };
        self.pool.claim(&model.id, terms, owner).await
    }

    /// Waits for this request's turn on a key's own session, up to the pool's queue deadline
    /// (then 429 `pool_busy`, as for pooled sessions).
    pub async fn take_turn(
        &self,
        session: SessionRecord,
    ) -> Result<SessionLease, ChatSessionError> {
        let turn = {
            let mut turns = self
                .turns
                .lock()
                .unwrap_or_else(|poisoned| poisoned.into_inner());
            // Only sessions with a request in flight or waiting are kept.
            turns.retain(|_, weak| weak.strong_count() > 0);
            let entry = turns.entry(session.id.clone()).or_default();
            match entry.upgrade() {
                Some(turn) => turn,
                None => {
                    let fresh = Arc::new(tokio::sync::Semaphore::new(1));
                    *entry = Arc::downgrade(&fresh);
                    fresh
                }
            }
        };
        let wait = self.pool.settings().queue_wait;
        match tokio::time::timeout(wait, turn.acquire_owned()).await {
            Ok(Ok(permit)) => Ok(SessionLease::unpooled(session, permit)),
            Ok(Err(closed)) => Err(ChatSessionError::Unknown(anyhow::anyhow!(
                "a session's turn was closed: {closed}"
            ))),
            Err(_) => Err(ChatSessionError::PoolBusy(super::PoolBusy {
                retry_after: wait.max(std::time::Duration::from_secs(1)),
            })),
        }
    }

    /// Whether the chain still has `session` open although the node just said `session not
    /// found`: the node says so for any failed chain read (proxy-router-behaviour.md §2.6), and
    /// retiring a live session would pay for a new one. `None` when the chain cannot be read
    /// either: then nobody knows, and nothing is retired or opened.
    pub async fn still_open_on_chain(&self, session: &SessionRecord) -> Option<bool> {
        match self.market.session(&session.id).await {
            Ok(upstream) => {
                Some(!upstream.is_closed() && upstream.ends_at_utc() > Utc::now() + Self::margin())
            }
            Err(MarketplaceError::SessionGone(_)) => Some(false),
            Err(error) => {
                tracing::warn!(session = %session.id, %error, "cannot confirm that a session is gone");
                None
            }
        }
    }

    /// After the upstream said a session is expired or unknown: stop using it and find another
    /// for the same model (automation permitting).
    pub async fn renew_for_chat(
        &self,
        owner: SessionOwner,
        mut gone: SessionLease,
    ) -> Result<SessionLease, ChatSessionError> {
        let model = self.catalogue.named(&gone.session().model_id);
        if gone.session().pooled {
            // Retired as it goes back; the pool opens another if requests wait.
            gone.spoil();
        } else {
            self.retire(gone.session()).await?;
        }
        drop(gone);
        self.session_for_chat(owner, &model).await
    }

    async fn usable_session(
        &self,
        key: ApiKeyId,
        model: &ModelId,
    ) -> anyhow::Result<Option<SessionRecord>> {
        let now = Utc::now();
        let cache_key = (key, model.clone());
        if let Some(recent) = self.recent.get(&cache_key) {
            if recent.read_at.elapsed() < RECENT_SESSION_TTL {
                match recent.session {
                    None => return Ok(None),
                    Some(session) if session.is_usable(now, Self::margin()) => {
                        return Ok(Some(session));
                    }
                    Some(_) => {}
                }
            }
            self.recent.remove(&cache_key);
        }
        let found = self.sessions.find_active_session(key, model).await?;
        let usable = found.filter(|s| s.is_usable(now, Self::margin()));
        // Remembered either way: most keys have no explicit session, and asking the database
        // each time would put a round trip on every pooled request.
        self.recent.insert(
            cache_key,
            RecentSession {
                session: usable.clone(),
                read_at: std::time::Instant::now(),
            },
        );
        Ok(usable)
    }

    /// `POST /session/modelsession`: the key's active session for the model, or a new one.
    pub async fn open_for_model(
        &self,
        owner: SessionOwner,
        model: &str,
        terms: SessionTerms,
        policy: &KeyPolicy,
    ) -> Result<OpenedSession, OpenSessionError> {
        let model = self.catalogue.resolve(Some(model))?;
        if !policy.allows_model(&model.name, model.id.as_str()) {
            return Err(OpenSessionError::ModelNotAllowed(model.name));
        }
        if let Some(governor) = &self.governor {
            governor.check_duration(terms)?;
        }
        self.open_single_flight(owner, &model.id, SessionOrigin::Model, terms)
            .await
    }

    /// `POST /session/bidsession`: a new session on exactly this bid. It replaces the key's
    /// active session for the bid's model.
    pub async fn open_for_bid(
        &self,
        owner: SessionOwner,
        bid: &BidId,
        terms: SessionTerms,
        policy: &KeyPolicy,
    ) -> Result<OpenedSession, OpenSessionError> {
        // The node does not say "not found" for an unknown bid: it reads the chain's zero bid
        // and fails the provider handshake after staking nothing (proxy-router-behaviour.md
        // §1 row 7). Asking first turns that into a clear 404 and spares the node the attempt.
        if let Some(governor) = &self.governor {
            governor.check_duration(terms)?;
        }
        let Some(found) = self.market.bid(bid).await? else {
            return Err(OpenSessionError::BidNotFound);
        };
        if policy.allowed_models.is_some() {
            let model = ModelId::parse(&found.model_agent_id)
                .map(|id| self.catalogue.named(&id))
                .map_err(|_| OpenSessionError::ModelNotAllowed(found.model_agent_id.clone()))?;
            if !policy.allows_model(&model.name, model.id.as_str()) {
                return Err(OpenSessionError::ModelNotAllowed(model.name));
            }
        }
        let user_lock = self.user_lock(owner.user);
        let _user_turn = match &user_lock {
            Some(lock) => Some(lock.lock().await),
            None => None,
        };
        let reservation = match &self.governor {
            Some(governor) => Some(self.admit_bid_open(governor, owner, &found, terms).await?),
            None => None,
        };
        let id = match self.market.open_bid_session(bid, terms).await {
            Ok(id) => id,
            Err(e) => {
                if let Some(reservation) = reservation {
                    reservation.release().await;
                }
                return Err(match e {
                    MarketplaceError::Rejected { ref message, .. }
                        if message.to_lowercase().contains("not found") =>
                    {
                        OpenSessionError::BidNotFound
                    }
                    other => OpenSessionError::Upstream(other),
                });
            }
        };
        let opened_at = Utc::now();
        let upstream = self.market.session(&id).await.ok();
        if let Some(reservation) = reservation {
            reservation.settle(upstream.as_ref()).await;
        }
        let model_id = upstream
            .as_ref()
            .and_then(|s| ModelId::parse(&s.model_agent_id).ok())
            .ok_or_else(|| {
                OpenSessionError::Unknown(anyhow::anyhow!(
                    "the proxy-router did not report which model session {id} serves"
                ))
            })?;
        let record = SessionRecord {
            id,
            api_key_id: owner.key,
            user_id: owner.user,
            model_id,
            bid_id: Some(bid.clone()),
            origin: SessionOrigin::Bid,
            state: SessionState::Active,
            opened_at,
            ends_at: ends_at(upstream.as_ref(), opened_at, terms),
            closed_at: None,
            pooled: false,
        };
        let flight = self.flight(owner.key, &record.model_id);
        let _guard = flight.lock().await;
        if let Some(previous) = self
            .sessions
            .find_active_session(owner.key, &record.model_id)
            .await?
        {
            // Paid for and still open: it serves the pool until its end rather than nobody.
            self.forget(previous.api_key_id, &previous.model_id, &previous.id);
            self.pool.join(&previous.id).await?;
        }
        let session = self.store(record).await?;
        Ok(OpenedSession {
            session,
            created: true,
        })
    }

    /// Opens at most one session per (key, model) at a time in this process: concurrent
    /// callers wait for the first and then find its session. The open runs on a task of its
    /// own: a caller that goes away does not cancel it (the node would carry on and stake the
    /// session anyway, its Go handler ignores the caller leaving), so the session is recorded
    /// and the next request uses it.
    async fn open_single_flight(
        &self,
        owner: SessionOwner,
        model: &ModelId,
        origin: SessionOrigin,
        terms: SessionTerms,
    ) -> Result<OpenedSession, OpenSessionError> {
        let service = self.clone();
        let model = model.clone();
        tokio::spawn(async move { service.open_in_flight(owner, &model, origin, terms).await })
            .await
            .map_err(|e| OpenSessionError::Unknown(anyhow::anyhow!("the open task failed: {e}")))?
    }

    async fn open_in_flight(
        &self,
        owner: SessionOwner,
        model: &ModelId,
        origin: SessionOrigin,
        terms: SessionTerms,
    ) -> Result<OpenedSession, OpenSessionError> {
        // The user's turn first, then the key's flight: the bid open takes them in this order.
        let user_lock = self.user_lock(owner.user);
        let _user_turn = match &user_lock {
            Some(lock) => Some(lock.lock().await),
            None => None,
        };
        let flight = self.flight(owner.key, model);
        let _guard = flight.lock().await;
        if let Some(existing) = self.sessions.find_active_session(owner.key, model).await? {
            if existing.is_usable(Utc::now(), Self::margin()) {
                return Ok(OpenedSession {
                    session: existing,
                    created: false,
                });
            }
            // Ending soon or past its end: stop using it; the janitor closes it once the
            // chain's end has passed (closing earlier locks the unused stake).
            self.retire(&existing).await?;
        }
        let (on_bid, reservation) = match &self.governor {
            Some(governor) => self.admit_model_open(governor, owner, model, terms).await?,
            None => (None, None),
        };
        let opened_at = Utc::now();
        let opened = match &on_bid {
            Some(bid) => self.market.open_bid_session(bid, terms).await,
            None => self.market.open_model_session(model, terms).await,
        };
        let id = match opened {
            Ok(id) => id,
            Err(error) => {
                if let Some(reservation) = reservation {
                    reservation.release().await;
                }
                return Err(error.into());
            }
        };
        let (ends_at, upstream) = read_new_session(&*self.market, &id, opened_at, terms).await;
        if let Some(reservation) = reservation {
            reservation.settle(upstream.as_ref()).await;
        }
        let record = SessionRecord {
            id,
            api_key_id: owner.key,
            user_id: owner.user,
            model_id: model.clone(),
            bid_id: on_bid,
            origin,
            state: SessionState::Active,
            opened_at,
            ends_at,
            closed_at: None,
            pooled: false,
        };
        let session = self.store(record).await?;
        Ok(OpenedSession {
            session,
            created: true,
        })
    }

    /// Stores a freshly opened session. If another replica stored one for the same key and
    /// model meanwhile, ours is kept as retired (the janitor closes it at its end) and theirs
    /// is used.
    async fn store(&self, record: SessionRecord) -> Result<SessionRecord, OpenSessionError> {
        match self.sessions.insert_session(record.clone()).await {
            Ok(()) => {
                self.remember(&record);
                Ok(record)
            }
            Err(InsertSessionError::ActiveExists) => {
                let mut retired = record.clone();
                retired.state = SessionState::Retired;
                if let Err(error) = self.sessions.insert_session(retired).await {
                    tracing::error!(session = %record.id, %error, "could not record a surplus session");
                }
                self.sessions
                    .find_active_session(record.api_key_id, &record.model_id)
                    .await?
                    .ok_or_else(|| anyhow::anyhow!("the winning session vanished").into())
            }
            Err(InsertSessionError::Duplicate) => Err(OpenSessionError::Unknown(anyhow::anyhow!(
                "the proxy-router returned session {} twice",
                record.id
            ))),
            Err(InsertSessionError::Unknown(e)) => Err(OpenSessionError::Unknown(e)),
        }
    }

    /// The user's lock for explicit opens, when their number is capped.
    fn user_lock(&self, user: UserId) -> Option<super::keyed_locks::KeyLock> {
        self.governor
            .as_ref()
            .filter(|g| g.limits_user_sessions())
            .map(|_| self.user_opens.of(user))
    }

    /// The user's cap on explicit sessions; `replacing`: the open takes the place of one of
    /// them (it goes to the pool), so the count does not grow.
    async fn check_user_sessions(
        &self,
        governor: &StakeGovernor,
        owner: SessionOwner,
        replacing: bool,
    ) -> Result<(), OpenSessionError> {
        if !governor.limits_user_sessions() {
            return Ok(());
        }
        let active = self
            .sessions
            .count_explicit_sessions(owner.user, Utc::now())
            .await?;
        governor.check_user_sessions(active.saturating_sub(u64::from(replacing)))?;
        Ok(())
    }

    /// The caps before an explicit open by model, in the order that stakes nothing: the
    /// user's sessions, the MOR low-water mark, the bid price, then the day's budget. Returns
    /// the bid to open on instead of letting the node choose (when some of the model's bids
    /// are above the price cap), and the budget's reservation.
    async fn admit_model_open(
        &self,
        governor: &StakeGovernor,
        owner: SessionOwner,
        model: &ModelId,
        terms: SessionTerms,
    ) -> Result<(Option<BidId>, Option<StakeReservation>), OpenSessionError> {
        self.check_user_sessions(governor, owner, false).await?;
        governor.check_low_water_mark(model).await?;
        if !governor.limits_price() && governor.settings().daily_budget.is_none() {
            return Ok((None, None));
        }
        let mut bids = self.market.rated_bids(model).await?;
        bids.sort_by(|a, b| b.score.total_cmp(&a.score));
        let mut on_bid = None;
        let mut price = bids
            .iter()
            .map(|b| b.bid.price_per_second)
            .max()
            .unwrap_or(0);
        if governor.limits_price()
            && bids
                .iter()
                .any(|b| !governor.price_allowed(b.bid.price_per_second))
        {
            // The node would choose among every bid of the model: open on the best-rated one
            // within the cap instead.
            let Some(best) = bids
                .iter()
                .find(|b| governor.price_allowed(b.bid.price_per_second))
            else {
                return Err(governor.price_refusal(None).into());
            };
            on_bid = Some(best.bid.id.clone());
            price = best.bid.price_per_second;
        }
        let reservation = governor.reserve(price, terms).await?;
        Ok((on_bid, Some(reservation)))
    }

    /// The caps before an explicit open on `bid`.
    async fn admit_bid_open(
        &self,
        governor: &StakeGovernor,
        owner: SessionOwner,
        bid: &Bid,
        terms: SessionTerms,
    ) -> Result<StakeReservation, OpenSessionError> {
        let model = ModelId::parse(&bid.model_agent_id).ok();
        let replacing = match &model {
            Some(model) => self
                .sessions
                .find_active_session(owner.key, model)
                .await?
                .is_some(),
            None => false,
        };
        self.check_user_sessions(governor, owner, replacing).await?;
        if let Some(model) = &model {
            governor.check_low_water_mark(model).await?;
        }
        if !governor.price_allowed(bid.price_per_second) {
            return Err(governor.price_refusal(Some(bid.price_per_second)).into());
        }
        Ok(governor.reserve(bid.price_per_second, terms).await?)
    }

    fn flight(&self, key: ApiKeyId, model: &ModelId) -> Arc<OpenLock> {
        let mut flights = self
            .flights
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        // Drop the entries nobody holds any more, so the map stays as small as the number
        // of opens in progress.
        flights.retain(|_, weak| weak.strong_count() > 0);
        let entry = flights.entry((key, model.clone())).or_default();
        if let Some(existing) = entry.upgrade() {
            return existing;
        }
        let fresh = Arc::new(OpenLock::new(()));
        *entry = Arc::downgrade(&fresh);
        fresh
    }

    /// `POST /session/closesession`: closes one of the key's sessions, or all its active ones.
    /// Returns the ids closed.
    pub async fn close(
        &self,
        owner: SessionOwner,
        which: Option<&SessionId>,
    ) -> Result<Vec<SessionId>, CloseSessionError> {
        let targets = match which {
            Some(id) => {
                let session = self
                    .sessions
                    .find_key_session(owner.key, id)
                    .await?
                    .ok_or(CloseSessionError::NotFound)?;
                if session.state == SessionState::Closed {
                    return Ok(vec![]);
                }
                vec![session]
            }
            None => self.sessions.list_active_sessions(owner.key).await?,
        };
        let mut closed = Vec::with_capacity(targets.len());
        for session in targets {
            self.close_on_chain(&session).await?;
            closed.push(session.id);
        }
        Ok(closed)
    }

    /// Operators: a session, whoever holds it.
    pub async fn find(&self, id: &SessionId) -> anyhow::Result<Option<SessionRecord>> {
        self.sessions.find_session(id).await
    }

    /// Operators: sessions newest first, the user's when given, closed ones when asked.
    pub async fn list_all(
        &self,
        user: Option<UserId>,
        include_closed: bool,
        limit: u32,
    ) -> anyhow::Result<Vec<SessionRecord>> {
        self.sessions
            .list_sessions(user, include_closed, limit)
            .await
    }

    /// Operators: closes a session, the key's own or a pooled one (on chain, then the
    /// record); `false` when it was closed already.
    pub async fn close_any(&self, id: &SessionId) -> Result<bool, CloseSessionError> {
        let session = self
            .sessions
            .find_session(id)
            .await?
            .ok_or(CloseSessionError::NotFound)?;
        if session.state == SessionState::Closed {
            return Ok(false);
        }
        // A pooled session still held by a replica is dropped from it when its next request
        // hears that it is gone.
        self.close_on_chain(&session).await?;
        Ok(true)
    }

    /// Closes a session on chain (one the chain no longer knows counts as closed), then in
    /// memory and in its record.
    async fn close_on_chain(&self, session: &SessionRecord) -> Result<(), CloseSessionError> {
        match self.market.close_session(&session.id).await {
            Ok(_) | Err(MarketplaceError::SessionGone(_)) => {}
            Err(e) => return Err(e.into()),
        }
        self.forget(session.api_key_id, &session.model_id, &session.id);
        self.sessions
            .mark_session_closed(&session.id, Utc::now())
            .await?;
        Ok(())
    }

    /// `POST /session/pingsession`: asks the chain about the session (no tokens are spent, the
    /// original sent a real prompt).
    pub async fn ping(
        &self,
        owner: SessionOwner,
        which: Option<&SessionId>,
    ) -> Result<PingOutcome, PingSessionError> {
        let session = match which {
            Some(id) => self
                .sessions
                .find_key_session(owner.key, id)
                .await?
                .ok_or(PingSessionError::NotFound)?,
            None => match self
                .sessions
                .list_active_sessions(owner.key)
                .await?
                .into_iter()
                .next()
            {
                Some(s) => s,
                None => return Ok(PingOutcome::NoSession),
            },
        };
        if session.state != SessionState::Active {
            return Ok(PingOutcome::Ended(session));
        }
        let alive = match self.market.session(&session.id).await {
            Ok(upstream) => !upstream.is_closed() && upstream.ends_at_utc() > Utc::now(),
            Err(MarketplaceError::SessionGone(_)) => false,
            Err(e) => return Err(e.into()),
        };
        if alive {
            Ok(PingOutcome::Alive(session))
        } else {
            self.retire(&session).await?;
            Ok(PingOutcome::Ended(session))
        }
    }

    /// `POST /session/approve`: lets the configured spender move `amount` wei from the node's
    /// wallet.
    pub async fn approve(&self, amount: u128) -> Result<TxHash, ApproveError> {
        let spender = self.spender.as_ref().ok_or(ApproveError::NoSpender)?;
        Ok(self.market.approve(spender, amount).await?)
    }
}

/// A session just opened, as the chain has it (`None` when it cannot be read, logged), and its
/// end: the chain's, else estimated.
pub(super) async fn read_new_session(
    market: &dyn Marketplace,
    id: &SessionId,
    opened_at: DateTime<Utc>,
    terms: SessionTerms,
) -> (DateTime<Utc>, Option<UpstreamSession>) {
    let upstream = match market.session(id).await {
        Ok(s) => Some(s),
        Err(error) => {
            tracing::warn!(session = %id, %error, "could not read a new session's end; estimating it");
            None
        }
    };
    (ends_at(upstream.as_ref(), opened_at, terms), upstream)
}

/// The chain's end when known; otherwise an estimate from the requested duration (the janitor
/// corrects it from the chain later).
fn ends_at(
    upstream: Option<&UpstreamSession>,
    opened_at: DateTime<Utc>,
    terms: SessionTerms,
) -> DateTime<Utc> {
    match upstream {
        Some(s) if s.ends_at > 0 => s.ends_at_utc(),
        _ => opened_at + chrono::Duration::seconds(i64::from(terms.duration.seconds())),
    }
}

#[cfg(test)]
mod tests;
