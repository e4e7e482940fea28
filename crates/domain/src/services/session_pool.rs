//! The shared session pool: sessions automation opens belong to the gateway and serve any
//! key's requests, one request per session at a time, because the node serves one request per
//! session and queues the rest inside itself (proxy-router-behaviour.md §2.1).
//!
//! Per model, a replica holds leases on some pooled sessions (recorded in the database) and
//! claims them in memory: the chat path has no database round trip while a held session is
//! idle. When none is, the request waits in a bounded queue while the replica takes one more
//! from the database: an idle session no replica holds, or the right to open one while the
//! model has fewer than the cap on all replicas together. Opens are started one per waiting
//! request, never more than the cap allows, and run on their own task: a caller that leaves
//! does not cancel them, and their session joins the pool.

use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use tokio::sync::oneshot;

use super::{ChatSessionError, SessionOwner, StakeGovernor, StakeReservation};
use crate::model::*;
use crate::ports::*;

/// How long a replica waits before asking the database again when the model is at its cap on
/// all replicas together (a session comes back, or another replica lets one go).
const FULL_RETRY: Duration = Duration::from_millis(250);

/// The operator's bounds on the pool.
#[derive(Debug, Clone)]
pub struct PoolSettings {
    /// Most pooled sessions per model, open or opening, all replicas together.
    pub max_sessions_per_model: u32,
    /// Most requests waiting per model on one replica; more are refused at once.
    pub queue_depth: usize,
    /// How long a request waits for a session before it is refused.
    pub queue_wait: Duration,
    /// How long a lease lasts without renewal; renewed every quarter of it.
    pub lease: Duration,
    /// An idle session a replica holds longer than this is let go (its lease released), so a
    /// replica that gets the traffic can take it; one per model is kept warm. Short: under
    /// load a session comes back busy long before.
    pub idle_release: Duration,
    /// Sessions no replica took for this long are closed, except each model's last; `None`
    /// keeps them until their end (closing early locks the unused stake for about a day).
    pub idle_grace: Option<Duration>,
    /// A reservation this old is from a replica that died mid-open (longer than an open and
    /// its recovery can take).
    pub open_stale_after: Duration,
    /// A request does not start on a session this close to its end.
    pub end_margin: Duration,
    /// Most bids one open tries (the next when a provider refuses).
    pub open_attempts: u32,
    /// How long a provider that refused or lost a session is not asked for new ones.
    pub provider_cooldown: Duration,
}

/// The pool said no within the queue's deadline (or the queue is full).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PoolBusy {
    pub retry_after: Duration,
}

/// Counts for metrics, by model, of this replica's view.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PoolSnapshot {
    pub model: String,
    pub idle: u64,
    pub busy: u64,
    pub acquiring: u64,
    pub waiting: u64,
}

/// What happened to claims and opens since start (for metrics).
#[derive(Debug, Default)]
pub struct PoolCounters {
    pub claims_immediate: std::sync::atomic::AtomicU64,
    pub claims_queued: std::sync::atomic::AtomicU64,
    pub claims_refused: std::sync::atomic::AtomicU64,
    pub opens_ok: std::sync::atomic::AtomicU64,
    pub opens_failed: std::sync::atomic::AtomicU64,
    pub leases_taken: std::sync::atomic::AtomicU64,
    pub closed_idle: std::sync::atomic::AtomicU64,
    /// Bids tried by opens (one per open when the first provider accepts).
    pub bid_walk_steps: std::sync::atomic::AtomicU64,
    /// Requests moved off a session whose provider could not serve it any more.
    pub failovers: std::sync::atomic::AtomicU64,
}

#[derive(Clone)]
pub struct SessionPool {
    inner: Arc<Inner>,
}

struct Inner {
    repo: Arc<dyn SessionPoolRepository>,
    sessions: Arc<dyn SessionRepository>,
    market: Arc<dyn Marketplace>,
    replica: String,
    settings: PoolSettings,
    models: Mutex<HashMap<ModelId, ModelPool>>,
    counters: PoolCounters,
    /// Providers that refused a session or lost one, until when they are not asked again.
    cooling: Mutex<HashMap<String, Instant>>,
    /// The provider of each bid this replica opened a session on.
    providers: Mutex<HashMap<BidId, String>>,
    /// Observes each queued claim's wait (metrics), set by the composition root.
    wait_observer: std::sync::OnceLock<WaitObserver>,
    /// The operator's stake caps, set by the composition root; unset: none.
    governor: std::sync::OnceLock<StakeGovernor>,
}

type WaitObserver = Arc<dyn Fn(Duration) + Send + Sync>;

type Waiter = oneshot::Sender<Result<SessionLease, ChatSessionError>>;

#[derive(Default)]
struct ModelPool {
    /// Most recently returned last: claims take the warmest, the rest age and can be let go.
    idle: Vec<IdleSession>,
    busy: HashSet<SessionId>,
    /// Sessions this replica lost the lease of while they were busy: not taken back.
    lost: HashSet<SessionId>,
    /// Tasks taking one more session from the database (leasing or opening).
    acquiring: usize,
    waiters: VecDeque<Waiter>,
    /// The terms and the key of the latest claim: an open started for no request in
    /// particular (to replace a session that went away) uses them.
    last_demand: Option<(SessionTerms, SessionOwner)>,
}

struct IdleSession {
    session: SessionRecord,
    since: Instant,
}

impl ModelPool {
    fn held(&self) -> usize {
        self.idle.len() + self.busy.len()
    }

    fn drop_gone_waiters(&mut self) {
        self.waiters.retain(|w| !w.is_closed());
    }
}

/// One request's hold on a session: the session goes back to the pool when the lease is
/// dropped (after the answer was relayed, or the stream broke). Explicit sessions are wrapped
/// in a lease that returns nowhere.
pub struct SessionLease {
    session: SessionRecord,
    pool: Option<SessionPool>,
    spoiled: bool,
    /// A key's own session: this request's turn on it (one at a time, as the node serves),
    /// given back when the lease is dropped.
    #[allow(dead_code, reason = "held for its permit, released when dropped")]
    turn: Option<tokio::sync::OwnedSemaphorePermit>,
}

impl std::fmt::Debug for SessionLease {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SessionLease")
            .field("session", &self.session.id)
            .field("pooled", &self.pool.is_some())
            .finish()
    }
}

impl SessionLease {
    /// A key's own session, held for this request's `turn` on it: not the pool's.
    pub fn unpooled(session: SessionRecord, turn: tokio::sync::OwnedSemaphorePermit) -> Self {
        Self {
            session,
            pool: None,
            spoiled: false,
            turn: Some(turn),
        }
    }

    pub fn session(&self) -> &SessionRecord {
        &self.session
    }

    /// The upstream said the session is gone: it does not go back to the pool.
    pub fn spoil(&mut self) {
        self.spoiled = true;
    }

    /// Takes the session out without giving it back (it is being handed to someone else).
    fn disarm(mut self) -> SessionRecord {
        self.pool = None;
        self.session.clone()
    }
}

impl Drop for SessionLease {
    fn drop(&mut self) {
        if let Some(pool) = self.pool.take() {
            pool.give_back(self.session.clone(), self.spoiled);
        }
    }
}

impl SessionPool {
    pub fn new(
        repo: Arc<dyn SessionPoolRepository>,
        sessions: Arc<dyn SessionRepository>,
        market: Arc<dyn Marketplace>,
        replica: String,
        settings: PoolSettings,
    ) -> Self {
        Self {
            inner: Arc::new(Inner {
                repo,
                sessions,
                market,
                replica,
                settings,
                models: Mutex::default(),
                counters: PoolCounters::default(),
                cooling: Mutex::default(),
                providers: Mutex::default(),
                wait_observer: std::sync::OnceLock::new(),
                governor: std::sync::OnceLock::new(),
            }),
        }
    }

    /// Calls `observe` with each queued claim's wait (for a histogram); the first call wins.
    pub fn observe_waits(&self, observe: WaitObserver) {
        let _ = self.inner.wait_observer.set(observe);
    }

    /// Puts the pool's opens under the operator's stake caps; the first call wins.
    pub fn govern(&self, governor: StakeGovernor) {
        let _ = self.inner.governor.set(governor);
    }

    pub fn settings(&self) -> &PoolSettings {
        &self.inner.settings
    }

    pub fn replica(&self) -> &str {
        &self.inner.replica
    }

    pub fn counters(&self) -> &PoolCounters {
        &self.inner.counters
    }

    fn models(&self) -> MutexGuard<'_, HashMap<ModelId, ModelPool>> {
        self.inner
            .models
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    fn margin(&self) -> chrono::Duration {
        chrono::Duration::from_std(self.inner.settings.end_margin).unwrap_or_default()
    }

    fn lease_until(&self) -> DateTime<Utc> {
        Utc::now() + chrono::Duration::from_std(self.inner.settings.lease).unwrap_or_default()
    }

    /// A session of the pool for one request, waiting in the queue up to its deadline.
    /// `terms` and `owner` are used if a session has to be opened for it (the record says
    /// which key's request opened it).
    pub async fn claim(
        &self,
        model: &ModelId,
        terms: SessionTerms,
        owner: SessionOwner,
    ) -> Result<SessionLease, ChatSessionError> {
        use std::sync::atomic::Ordering::Relaxed;
        let counters = &self.inner.counters;
        let mut rx = {
            let mut models = self.models();
            let pool = models.entry(model.clone()).or_default();
            pool.last_demand = Some((terms, owner));
            let now = Utc::now();
            while let Some(idle) = pool.idle.pop() {
                if idle.session.is_usable(now, self.margin()) {
                    pool.busy.insert(idle.session.id.clone());
                    counters.claims_immediate.fetch_add(1, Relaxed);
                    return Ok(self.lease(idle.session));
                }
                // Too close to its end to start a request on: the janitor closes it then.
            }
            pool.drop_gone_waiters();
            if pool.waiters.len() >= self.inner.settings.queue_depth {
                counters.claims_refused.fetch_add(1, Relaxed);
                return Err(ChatSessionError::PoolBusy(self.busy()));
            }
            let (tx, rx) = oneshot::channel();
            pool.waiters.push_back(tx);
            self.start_acquiring(model, pool, terms, owner);
            rx
        };
        counters.claims_queued.fetch_add(1, Relaxed);
        let started = Instant::now();
        let result = match tokio::time::timeout(self.inner.settings.queue_wait, &mut rx).await {
            Ok(Ok(result)) => result,
            Ok(Err(_)) => Err(ChatSessionError::Unknown(anyhow::anyhow!(
                "the session pool dropped a waiting request"
            ))),
            Err(_) => {
                // A session may have been handed over at the last moment: take it.
                rx.close();
                match rx.try_recv() {
                    Ok(result) => result,
                    Err(_) => {
                        counters.claims_refused.fetch_add(1, Relaxed);
                        Err(ChatSessionError::PoolBusy(self.busy()))
                    }
                }
            }
        };
        if let Some(observe) = self.inner.wait_observer.get() {
            observe(started.elapsed());
        }
        result
    }

    fn busy(&self) -> PoolBusy {
        PoolBusy {
            retry_after: self.inner.settings.queue_wait.max(Duration::from_secs(1)),
        }
    }

    fn lease(&self, session: SessionRecord) -> SessionLease {
        SessionLease {
            session,
            pool: Some(self.clone()),
            spoiled: false,
            turn: None,
        }
    }

    /// Starts one more acquisition per waiting request not yet covered by one, within the cap
    /// as far as this replica can see it (the database enforces it across replicas).
    fn start_acquiring(
        &self,
        model: &ModelId,
        pool: &mut ModelPool,
        terms: SessionTerms,
        owner: SessionOwner,
    ) {
        let cap = self.inner.settings.max_sessions_per_model as usize;
        while pool.acquiring < pool.waiters.len() && pool.held() + pool.acquiring < cap {
            pool.acquiring += 1;
            let this = self.clone();
            let model = model.clone();
            tokio::spawn(async move { this.acquire(model, terms, owner).await });
        }
    }

    /// Takes one session from the shared pool, or opens one, for the model's waiting requests.
    async fn acquire(self, model: ModelId, terms: SessionTerms, owner: SessionOwner) {
        let outcome = self.acquire_one(&model, terms, owner).await;
        let failed = {
            let mut models = self.models();
            let pool = models.entry(model.clone()).or_default();
            pool.acquiring -= 1;
            match outcome {
                Ok(Some(session)) => Some(Ok(session)),
                Ok(None) => None,
                Err(error) => {
                    // The waiter this open was for learns why; the others keep waiting when a
                    // session can still come (one is busy or being acquired), else they learn
                    // it too rather than wait for nothing.
                    let hopeless = pool.busy.is_empty() && pool.acquiring == 0;
                    let mut told = Vec::new();
                    pool.drop_gone_waiters();
                    if hopeless {
                        told.extend(pool.waiters.drain(..));
                    } else if let Some(first) = pool.waiters.pop_front() {
                        told.push(first);
                    }
                    Some(Err((error, told)))
                }
            }
        };
        match failed {
            Some(Ok(session)) => self.hand_over(session, false),
            Some(Err((error, told))) => {
                for waiter in told {
                    let _ = waiter.send(Err(error.duplicate()));
                }
            }
            None => {}
        }
    }

    async fn acquire_one(
        &self,
        model: &ModelId,
        terms: SessionTerms,
        owner: SessionOwner,
    ) -> Result<Option<SessionRecord>, ChatSessionError> {
        use std::sync::atomic::Ordering::Relaxed;
        loop {
            let waiting = {
                let mut models = self.models();
                let pool = models.entry(model.clone()).or_default();
                pool.drop_gone_waiters();
                !pool.waiters.is_empty()
            };
            if !waiting {
                return Ok(None);
            }
            let now = Utc::now();
            let request = PoolTakeRequest {
                model: model.clone(),
                replica: self.inner.replica.clone(),
                cap: self.inner.settings.max_sessions_per_model,
                now,
                usable_after: now + self.margin(),
                lease_until: self.lease_until(),
                opens_stale_before: now
                    - chrono::Duration::from_std(self.inner.settings.open_stale_after)
                        .unwrap_or_default(),
            };
            match self.inner.repo.take_or_reserve(request).await? {
                PoolTake::Leased(session) => {
                    self.inner.counters.leases_taken.fetch_add(1, Relaxed);
                    return Ok(Some(session));
                }
                PoolTake::Reserved(ticket) => {
                    return self.open(model, terms, owner, ticket).await.map(Some);
                }
                PoolTake::Full => tokio::time::sleep(FULL_RETRY).await,
            }
        }
    }

    async fn open(
        &self,
        model: &ModelId,
        terms: SessionTerms,
        owner: SessionOwner,
        ticket: OpenTicket,
    ) -> Result<SessionRecord, ChatSessionError> {
        use std::sync::atomic::Ordering::Relaxed;
        let opened_at = Utc::now();
        let (id, bid, reservation) = match self.open_walking_bids(model, terms).await {
            Ok(opened) => opened,
            Err(error) => {
                self.inner.counters.opens_failed.fetch_add(1, Relaxed);
                if let Err(e) = self
                    .inner
                    .repo
                    .finish_open(ticket, None, &self.inner.replica, self.lease_until())
                    .await
                {
                    tracing::warn!(error = %e, "could not end an open's reservation; it goes stale");
                }
                return Err(error);
            }
        };
        let (ends_at, upstream) =
            super::sessions::read_new_session(&*self.inner.market, &id, opened_at, terms).await;
        if let Some(reservation) = reservation {
            reservation.settle(upstream.as_ref()).await;
        }
        let record = SessionRecord {
            id,
            api_key_id: owner.key,
            user_id: owner.user,
            model_id: model.clone(),
            bid_id: Some(bid),
            origin: SessionOrigin::Automated,
            state: SessionState::Active,
            opened_at,
            ends_at,
            closed_at: None,
            pooled: true,
        };
        self.inner
            .repo
            .finish_open(
                ticket,
                Some(record.clone()),
                &self.inner.replica,
                self.lease_until(),
            )
            .await
            .map_err(|e| {
                ChatSessionError::Unknown(anyhow::anyhow!("recording a pooled session: {e}"))
            })?;
        self.inner.counters.opens_ok.fetch_add(1, Relaxed);
        Ok(record)
    }

    /// Opens a session on the model's best-rated bid whose provider is not cooling down,
    /// trying the next bid when a provider refuses (at most `open_attempts` bids): the node
    /// walks bids within one open too, but forgets a failing provider at once, and its
    /// `omitProvider` is not reachable over HTTP (proxy-router-behaviour.md §4).
    ///
    /// Under the operator's stake caps: below the MOR low-water mark only warm models open,
    /// bids above the price cap are skipped, and each attempt reserves its estimated stake from
    /// the day's budget (given back when the attempt fails, settled by the caller otherwise).
    async fn open_walking_bids(
        &self,
        model: &ModelId,
        terms: SessionTerms,
    ) -> Result<(SessionId, BidId, Option<StakeReservation>), ChatSessionError> {
        use std::sync::atomic::Ordering::Relaxed;
        let governor = self.inner.governor.get();
        if let Some(governor) = governor {
            governor
                .check_low_water_mark(model)
                .await
                .map_err(ChatSessionError::Stake)?;
        }
        let mut bids = self.inner.market.rated_bids(model).await?;
        bids.sort_by(|a, b| b.score.total_cmp(&a.score));
        let mut tried = 0;
        let mut priced_out = false;
        for rated in bids {
            if tried >= self.inner.settings.open_attempts {
                break;
            }
            if self.cooling_down(&rated.bid.provider) {
                continue;
            }
            let price = rated.bid.price_per_second;
            if governor.is_some_and(|g| !g.price_allowed(price)) {
                priced_out = true;
                continue;
            }
            let reservation = match governor {
                Some(governor) => Some(
                    governor
                        .reserve(price, terms)
                        .await
                        .map_err(ChatSessionError::Stake)?,
                ),
                None => None,
            };
            tried += 1;
            self.inner.counters.bid_walk_steps.fetch_add(1, Relaxed);
            // The bid's own id: the node leaves the rated list's outer `ID` zero
            // (proxy-router-behaviour.md §1).
            let bid = &rated.bid.id;
            match self.inner.market.open_bid_session(bid, terms).await {
                Ok(id) => {
                    self.remember_provider(bid, &rated.bid.provider);
                    return Ok((id, bid.clone(), reservation));
                }
                Err(error) => {
                    if let Some(reservation) = reservation {
                        reservation.release().await;
                    }
                    if !provider_refused(&error) {
                        return Err(error.into());
                    }
                    tracing::info!(%bid, provider = %rated.bid.provider, %error, "a provider refused a session; trying the next bid");
                    self.cool_down(&rated.bid.provider);
                }
            }
        }
        match governor {
            // Every bid left was too dear: say so rather than "no provider accepts".
            Some(governor) if priced_out && tried == 0 => {
                Err(ChatSessionError::Stake(governor.price_refusal(None)))
            }
            _ => Err(ChatSessionError::ModelUnavailable),
        }
    }

    fn cooling_down(&self, provider: &str) -> bool {
        let mut cooling = self
            .inner
            .cooling
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        let now = Instant::now();
        cooling.retain(|_, until| *until > now);
        cooling.contains_key(&provider.to_ascii_lowercase())
    }

    fn cool_down(&self, provider: &str) {
        let until = Instant::now() + self.inner.settings.provider_cooldown;
        self.inner
            .cooling
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .insert(provider.to_ascii_lowercase(), until);
    }

    fn remember_provider(&self, bid: &BidId, provider: &str) {
        let mut providers = self
            .inner
            .providers
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        // Bounded: the bids of a marketplace are few; forget all if it ever grows odd.
        if providers.len() > 10_000 {
            providers.clear();
        }
        providers.insert(bid.clone(), provider.to_ascii_lowercase());
    }

    /// A request found `session` unusable (its provider lost it, or cannot be reached): the
    /// provider is avoided for new sessions during the cooldown.
    pub fn provider_failed(&self, session: &SessionRecord) {
        use std::sync::atomic::Ordering::Relaxed;
        self.inner.counters.failovers.fetch_add(1, Relaxed);
        let provider = session.bid_id.as_ref().and_then(|bid| {
            self.inner
                .providers
                .lock()
                .unwrap_or_else(|poisoned| poisoned.into_inner())
                .get(bid)
                .cloned()
        });
        if let Some(provider) = provider {
            self.cool_down(&provider);
        }
    }

    /// Gives a session to the first request still waiting for one, else keeps it idle.
    /// `busy` says whether it is counted busy already (it comes back from a request).
    fn hand_over(&self, mut session: SessionRecord, mut busy: bool) {
        loop {
            let waiter = {
                let mut models = self.models();
                let pool = models.entry(session.model_id.clone()).or_default();
                match pool.waiters.pop_front() {
                    Some(waiter) => {
                        if !busy {
                            pool.busy.insert(session.id.clone());
                            busy = true;
                        }
                        waiter
                    }
                    None => {
                        if busy {
                            pool.busy.remove(&session.id);
                        }
                        pool.idle.push(IdleSession {
                            session,
                            since: Instant::now(),
                        });
                        return;
                    }
                }
            };
            // Sent outside the lock: a waiter that left hands the lease back here, and
            // dropping it would take the lock again.
            match waiter.send(Ok(self.lease(session))) {
                Ok(()) => return,
                Err(Ok(lease)) => session = lease.disarm(),
                Err(Err(_)) => unreachable!("only a lease was sent"),
            }
        }
    }

    /// A request finished with its session.
    fn give_back(&self, session: SessionRecord, spoiled: bool) {
        let usable = !spoiled && session.is_usable(Utc::now(), self.margin());
        let keep = {
            let mut models = self.models();
            let pool = models.entry(session.model_id.clone()).or_default();
            let lost = pool.lost.remove(&session.id);
            if usable && !lost {
                true
            } else {
                pool.busy.remove(&session.id);
                // Requests still waiting need another session in its place.
                pool.drop_gone_waiters();
                if let Some((terms, owner)) = pool.last_demand {
                    self.start_acquiring(&session.model_id.clone(), pool, terms, owner);
                }
                false
            }
        };
        if keep {
            self.hand_over(session, true);
        } else if spoiled {
            let sessions = self.inner.sessions.clone();
            tokio::spawn(async move {
                if let Err(error) = sessions.retire_session(&session.id).await {
                    tracing::warn!(session = %session.id, %error, "could not retire a gone pooled session");
                }
            });
        }
    }

    /// This replica's view of each model's pool (for metrics).
    pub fn snapshot(&self) -> Vec<PoolSnapshot> {
        let mut models = self.models();
        models
            .iter_mut()
            .map(|(model, pool)| {
                pool.drop_gone_waiters();
                PoolSnapshot {
                    model: model.as_str().to_owned(),
                    idle: pool.idle.len() as u64,
                    busy: pool.busy.len() as u64,
                    acquiring: pool.acquiring as u64,
                    waiting: pool.waiters.len() as u64,
                }
            })
            .collect()
    }

    /// Renews this replica's leases (every quarter of the lease) and forgets sessions whose
    /// lease another replica took over meanwhile (this one stalled past its lease).
    pub async fn renew(&self) -> anyhow::Result<()> {
        let held: HashSet<SessionId> = self
            .inner
            .repo
            .renew_leases(&self.inner.replica, self.lease_until())
            .await?
            .into_iter()
            .collect();
        let mut models = self.models();
        for pool in models.values_mut() {
            pool.idle.retain(|idle| held.contains(&idle.session.id));
            let lost: Vec<SessionId> = pool
                .busy
                .iter()
                .filter(|id| !held.contains(*id))
                .cloned()
                .collect();
            pool.lost.extend(lost);
        }
        Ok(())
    }

    /// Upkeep every second: lets go of the leases of sessions idle for a while, keeping the
    /// warmest of each model, so a replica that gets the traffic can take them; and, with an
    /// idle grace, closes sessions no replica took for that long (never a model's last).
    pub async fn let_go(&self) -> anyhow::Result<()> {
        let to_release: Vec<SessionId> = {
            let mut models = self.models();
            let mut released = Vec::new();
            for pool in models.values_mut() {
                let warm = pool.idle.pop();
                let (old, young): (Vec<_>, Vec<_>) = pool
                    .idle
                    .drain(..)
                    .partition(|idle| idle.since.elapsed() >= self.inner.settings.idle_release);
                released.extend(old.into_iter().map(|idle| idle.session.id));
                pool.idle = young;
                pool.idle.extend(warm);
            }
            released
        };
        if !to_release.is_empty() {
            self.inner
                .repo
                .release_leases(&self.inner.replica, to_release, Utc::now())
                .await?;
        }
        if let Some(grace) = self.inner.settings.idle_grace {
            let now = Utc::now();
            let released_before = now - chrono::Duration::from_std(grace).unwrap_or_default();
            let stale = self
                .inner
                .repo
                .take_idle_for_closing(
                    &self.inner.replica,
                    now,
                    released_before,
                    self.lease_until(),
                )
                .await?;
            for session in stale {
                self.close_idle(session).await;
            }
        }
        Ok(())
    }

    async fn close_idle(&self, session: SessionRecord) {
        use std::sync::atomic::Ordering::Relaxed;
        match self.inner.market.close_session(&session.id).await {
            Ok(_) | Err(MarketplaceError::SessionGone(_)) => {
                if let Err(error) = self
                    .inner
                    .sessions
                    .mark_session_closed(&session.id, Utc::now())
                    .await
                {
                    tracing::warn!(session = %session.id, %error, "could not record an idle session's close");
                }
                self.inner.counters.closed_idle.fetch_add(1, Relaxed);
            }
            Err(error) => {
                // Kept, leased to this replica: the next round of another replica (or this
                // one, once its lease is let go) tries again.
                tracing::warn!(session = %session.id, %error, "closing an idle pooled session failed");
                self.hand_over(session, false);
            }
        }
    }

    /// Every replica's pooled sessions and opens in progress, by model (for metrics).
    pub async fn census(&self) -> anyhow::Result<Vec<PoolCensus>> {
        self.inner.repo.pool_census(Utc::now()).await
    }

    /// Moves a key's session into the pool (the key gave it up; it is paid for).
    pub async fn join(&self, id: &SessionId) -> anyhow::Result<bool> {
        self.inner.repo.join_pool(id).await
    }

    /// Lets go of every lease (shutdown): another replica can take the sessions at once.
    pub async fn release_all(&self) -> anyhow::Result<()> {
        let ids: Vec<SessionId> = {
            let mut models = self.models();
            models
                .values_mut()
                .flat_map(|pool| pool.idle.drain(..).map(|idle| idle.session.id))
                .collect()
        };
        if ids.is_empty() {
            return Ok(());
        }
        self.inner
            .repo
            .release_leases(&self.inner.replica, ids, Utc::now())
            .await
    }
}

#[cfg(test)]
mod tests;

/// Whether an open failed because of the provider (its handshake, or the node finding none
/// that accepts), so another provider's bid may well succeed.
fn provider_refused(error: &MarketplaceError) -> bool {
    match error {
        MarketplaceError::SessionGone(SessionGone::Unusable) => true,
        MarketplaceError::Rejected { message, .. } => {
            let message = message.to_ascii_lowercase();
            message.contains("failed to initiate session")
                || message.contains("no provider accepting")
        }
        _ => false,
    }
}
