//! Session records, automation settings and the proxy-router, in memory: what the session
//! service, the chat service and the janitor need, with the node's answers scripted by the test.

use std::collections::{BTreeMap, VecDeque};
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};

use async_trait::async_trait;
use bytes::Bytes;
use chrono::{DateTime, Utc};

use super::lock;
use crate::model::*;
use crate::ports::*;

/// Session records, the pool's leases and reservations, and automation settings.
#[derive(Default)]
pub struct MemorySessions {
    pub records: Mutex<Vec<SessionRecord>>,
    pub automation: Mutex<BTreeMap<UserId, AutomationSettings>>,
    /// Who holds each pooled session's lease, and until when.
    pub leases: Mutex<BTreeMap<SessionId, (String, DateTime<Utc>)>>,
    /// Opens in progress: (ticket, model, started).
    pub opens: Mutex<Vec<(i64, ModelId, DateTime<Utc>)>>,
    next_ticket: AtomicU64,
}

impl MemorySessions {
    pub fn record(&self, id: &SessionId) -> Option<SessionRecord> {
        lock(&self.records).iter().find(|r| &r.id == id).cloned()
    }

    fn update(&self, id: &SessionId, change: impl FnOnce(&mut SessionRecord)) {
        if let Some(r) = lock(&self.records).iter_mut().find(|r| &r.id == id) {
            change(r);
        }
    }
}

#[async_trait]
impl SessionRepository for MemorySessions {
    async fn insert_session(&self, session: SessionRecord) -> Result<(), InsertSessionError> {
        let mut records = lock(&self.records);
        if records.iter().any(|r| r.id == session.id) {
            return Err(InsertSessionError::Duplicate);
        }
        let active = |r: &&SessionRecord| {
            r.state == SessionState::Active
                && !r.pooled
                && !session.pooled
                && r.api_key_id == session.api_key_id
                && r.model_id == session.model_id
        };
        if session.state == SessionState::Active && records.iter().any(|r| active(&r)) {
            return Err(InsertSessionError::ActiveExists);
        }
        records.push(session);
        Ok(())
    }

    async fn count_explicit_sessions(
        &self,
        user: UserId,
        now: DateTime<Utc>,
    ) -> anyhow::Result<u64> {
        Ok(lock(&self.records)
            .iter()
            .filter(|r| {
                r.state == SessionState::Active && !r.pooled && r.user_id == user && r.ends_at > now
            })
            .count() as u64)
    }

    async fn find_active_session(
        &self,
        key: ApiKeyId,
        model: &ModelId,
    ) -> anyhow::Result<Option<SessionRecord>> {
        Ok(lock(&self.records)
            .iter()
            .find(|r| {
                r.state == SessionState::Active
                    && !r.pooled
                    && r.api_key_id == key
                    && &r.model_id == model
            })
            .cloned())
    }

    async fn find_key_session(
        &self,
        key: ApiKeyId,
        id: &SessionId,
    ) -> anyhow::Result<Option<SessionRecord>> {
        Ok(self.record(id).filter(|r| r.api_key_id == key && !r.pooled))
    }

    async fn list_active_sessions(&self, key: ApiKeyId) -> anyhow::Result<Vec<SessionRecord>> {
        Ok(lock(&self.records)
            .iter()
            .rev()
            .filter(|r| r.state == SessionState::Active && !r.pooled && r.api_key_id == key)
            .cloned()
            .collect())
    }

    async fn count_active_sessions(&self) -> anyhow::Result<u64> {
        let records = lock(&self.records);
        Ok(records
            .iter()
            .filter(|r| r.state == SessionState::Active)
            .count() as u64)
    }

    async fn retire_session(&self, id: &SessionId) -> anyhow::Result<bool> {
        let mut retired = false;
        self.update(id, |r| {
            if r.state == SessionState::Active {
                r.state = SessionState::Retired;
                retired = true;
            }
        });
        Ok(retired)
    }

    async fn mark_session_closed(&self, id: &SessionId, at: DateTime<Utc>) -> anyhow::Result<()> {
        self.update(id, |r| {
            r.state = SessionState::Closed;
            r.closed_at = Some(at);
        });
        Ok(())
    }

    async fn sessions_due_for_close(
        &self,
        now: DateTime<Utc>,
        limit: u32,
    ) -> anyhow::Result<Vec<SessionRecord>> {
        let mut due: Vec<SessionRecord> = lock(&self.records)
            .iter()
            .filter(|r| r.state != SessionState::Closed && r.ends_at <= now)
            .cloned()
            .collect();
        due.sort_by_key(|r| r.ends_at);
        due.truncate(limit as usize);
        Ok(due)
    }

    async fn list_open_sessions(
        &self,
        after: Option<&SessionId>,
        limit: u32,
    ) -> anyhow::Result<Vec<SessionRecord>> {
        let mut open: Vec<SessionRecord> = lock(&self.records)
            .iter()
            .filter(|r| r.state != SessionState::Closed && after.is_none_or(|a| &r.id > a))
            .cloned()
            .collect();
        open.sort_by(|a, b| a.id.cmp(&b.id));
        open.truncate(limit as usize);
        Ok(open)
    }

    async fn update_session_end(
        &self,
        id: &SessionId,
        ends_at: DateTime<Utc>,
    ) -> anyhow::Result<()> {
        self.update(id, |r| r.ends_at = ends_at);
        Ok(())
    }

    async fn find_session(&self, id: &SessionId) -> anyhow::Result<Option<SessionRecord>> {
        Ok(self.record(id))
    }

    async fn list_sessions(
        &self,
        user: Option<UserId>,
        include_closed: bool,
        limit: u32,
    ) -> anyhow::Result<Vec<SessionRecord>> {
        Ok(lock(&self.records)
            .iter()
            .rev()
            .filter(|r| user.is_none_or(|u| r.user_id == u))
            .filter(|r| include_closed || r.state != SessionState::Closed)
            .take(limit as usize)
            .cloned()
            .collect())
    }
}

#[async_trait]
impl SessionPoolRepository for MemorySessions {
    async fn take_or_reserve(&self, r: PoolTakeRequest) -> anyhow::Result<PoolTake> {
        // One lock order (records, leases, opens) for the whole decision: the database's
        // per-model lock.
        let records = lock(&self.records);
        let mut leases = lock(&self.leases);
        let mut opens = lock(&self.opens);
        opens.retain(|(_, _, started)| *started >= r.opens_stale_before);
        let usable: Vec<&SessionRecord> = records
            .iter()
            .filter(|s| {
                s.pooled
                    && s.state == SessionState::Active
                    && s.model_id == r.model
                    && s.ends_at > r.usable_after
            })
            .collect();
        let free = usable
            .iter()
            .filter(|s| {
                leases
                    .get(&s.id)
                    .is_none_or(|(holder, until)| holder.is_empty() || *until < r.now)
            })
            .max_by_key(|s| s.ends_at);
        if let Some(session) = free {
            leases.insert(session.id.clone(), (r.replica.clone(), r.lease_until));
            return Ok(PoolTake::Leased((*session).clone()));
        }
        let opening = opens.iter().filter(|(_, m, _)| *m == r.model).count();
        if usable.len() + opening >= r.cap as usize {
            return Ok(PoolTake::Full);
        }
        let ticket = self.next_ticket.fetch_add(1, Ordering::Relaxed) as i64;
        opens.push((ticket, r.model.clone(), r.now));
        Ok(PoolTake::Reserved(OpenTicket(ticket)))
    }

    async fn finish_open(
        &self,
        ticket: OpenTicket,
        opened: Option<SessionRecord>,
        replica: &str,
        lease_until: DateTime<Utc>,
    ) -> Result<(), InsertSessionError> {
        let mut records = lock(&self.records);
        lock(&self.opens).retain(|(t, _, _)| *t != ticket.0);
        if let Some(session) = opened {
            if records.iter().any(|r| r.id == session.id) {
                return Err(InsertSessionError::Duplicate);
            }
            lock(&self.leases).insert(session.id.clone(), (replica.to_owned(), lease_until));
            records.push(session);
        }
        Ok(())
    }

    async fn renew_leases(
        &self,
        replica: &str,
        until: DateTime<Utc>,
    ) -> anyhow::Result<Vec<SessionId>> {
        let records = lock(&self.records);
        let mut leases = lock(&self.leases);
        let mut held = Vec::new();
        for (id, lease) in leases.iter_mut() {
            let active = records
                .iter()
                .any(|r| &r.id == id && r.state == SessionState::Active);
            if lease.0 == replica && active {
                lease.1 = until;
                held.push(id.clone());
            }
        }
        Ok(held)
    }

    async fn release_leases(
        &self,
        replica: &str,
        ids: Vec<SessionId>,
        at: DateTime<Utc>,
    ) -> anyhow::Result<()> {
        for (id, lease) in lock(&self.leases).iter_mut() {
            if lease.0 == replica && ids.contains(id) {
                // No holder; the time says since when.
                *lease = (String::new(), at);
            }
        }
        Ok(())
    }

    async fn take_idle_for_closing(
        &self,
        replica: &str,
        now: DateTime<Utc>,
        released_before: DateTime<Utc>,
        lease_until: DateTime<Utc>,
    ) -> anyhow::Result<Vec<SessionRecord>> {
        let records = lock(&self.records);
        let mut leases = lock(&self.leases);
        let live =
            |r: &&SessionRecord| r.pooled && r.state == SessionState::Active && r.ends_at > now;
        let mut taken: Vec<SessionRecord> = Vec::new();
        for r in records.iter().filter(live) {
            let idle = leases
                .get(&r.id)
                .is_none_or(|(holder, at)| holder.is_empty() && *at < released_before);
            let active = records
                .iter()
                .filter(live)
                .filter(|o| o.model_id == r.model_id)
                .count();
            let closing = taken.iter().filter(|o| o.model_id == r.model_id).count();
            if idle && active - closing > 1 {
                leases.insert(r.id.clone(), (replica.to_owned(), lease_until));
                taken.push(r.clone());
            }
        }
        Ok(taken)
    }

    async fn join_pool(&self, id: &SessionId) -> anyhow::Result<bool> {
        let mut joined = false;
        self.update(id, |r| {
            if r.state == SessionState::Active {
                r.pooled = true;
                joined = true;
            }
        });
        lock(&self.leases).insert(id.clone(), (String::new(), Utc::now()));
        Ok(joined)
    }

    async fn pool_census(&self, now: DateTime<Utc>) -> anyhow::Result<Vec<PoolCensus>> {
        let records = lock(&self.records);
        let leases = lock(&self.leases);
        let mut census: BTreeMap<ModelId, PoolCensus> = BTreeMap::new();
        for r in records
            .iter()
            .filter(|r| r.pooled && r.state == SessionState::Active && r.ends_at > now)
        {
            let c = census.entry(r.model_id.clone()).or_insert(PoolCensus {
                model: r.model_id.clone(),
                active: 0,
                leased: 0,
                opening: 0,
            });
            c.active += 1;
            if leases.get(&r.id).is_some_and(|(_, until)| *until > now) {
                c.leased += 1;
            }
        }
        for (_, model, _) in lock(&self.opens).iter() {
            census
                .entry(model.clone())
                .or_insert(PoolCensus {
                    model: model.clone(),
                    active: 0,
                    leased: 0,
                    opening: 0,
                })
                .opening += 1;
        }
        Ok(census.into_values().collect())
    }
}

#[async_trait]
impl AutomationRepository for MemorySessions {
    async fn get_or_create_automation(
        &self,
        defaults: AutomationSettings,
    ) -> anyhow::Result<AutomationSettings> {
        Ok(lock(&self.automation)
            .entry(defaults.user_id)
            .or_insert(defaults)
            .clone())
    }

    async fn update_automation(
        &self,
        defaults: AutomationSettings,
        update: AutomationUpdate,
        at: DateTime<Utc>,
    ) -> anyhow::Result<AutomationSettings> {
        let mut all = lock(&self.automation);
        let settings = all.entry(defaults.user_id).or_insert(defaults);
        if let Some(enabled) = update.is_enabled {
            settings.is_enabled = enabled;
        }
        if let Some(duration) = update.session_duration {
            settings.session_duration = duration;
        }
        settings.updated_at = at;
        Ok(settings.clone())
    }
}

/// A proxy-router whose chain is a map and whose failures are queued by the test: each queue's
/// errors are returned by the next calls of that kind, in order, then the calls succeed.
#[derive(Default)]
pub struct FakeMarket {
    /// The sessions on chain.
    pub chain: Mutex<BTreeMap<SessionId, UpstreamSession>>,
    /// Bids the chain knows.
    pub bids: Mutex<BTreeMap<BidId, Bid>>,
    pub open_failures: Mutex<VecDeque<MarketplaceError>>,
    pub chat_failures: Mutex<VecDeque<MarketplaceError>>,
    pub read_failures: Mutex<VecDeque<MarketplaceError>>,
    pub close_failures: Mutex<VecDeque<MarketplaceError>>,
    /// Sessions opened, chat calls made (on which session) and close calls made.
    pub opened: AtomicU64,
    pub chats: Mutex<Vec<SessionId>>,
    pub closes: Mutex<Vec<SessionId>>,
    /// The node wallet's MOR (wei), and the failures of its next reads.
    pub mor_balance: Mutex<u128>,
    pub balance_failures: Mutex<VecDeque<MarketplaceError>>,
    pub balance_reads: AtomicU64,
}

impl FakeMarket {
    pub fn fail_next(queue: &Mutex<VecDeque<MarketplaceError>>, error: MarketplaceError) {
        lock(queue).push_back(error);
    }

    pub fn opens(&self) -> u64 {
        self.opened.load(Ordering::SeqCst)
    }

    /// Puts a session on chain, open until `ends_at`.
    /// A bid on `model` the chain knows (provider 1's).
    pub fn add_bid(&self, id: &BidId, model: &ModelId) {
        self.add_bid_of(id, model, 1);
    }

    /// A bid of provider number `provider`; the lower the number, the better it is rated.
    pub fn add_bid_of(&self, id: &BidId, model: &ModelId, provider: u32) {
        lock(&self.bids).insert(
            id.clone(),
            Bid {
                id: id.clone(),
                provider: Self::provider(provider),
                model_agent_id: model.as_str().to_owned(),
                price_per_second: 1,
                nonce: u128::from(provider),
                created_at: 1,
                deleted_at: 0,
            },
        );
    }

    /// The address of provider number `n`.
    pub fn provider(n: u32) -> String {
        format!("0x{n:040x}")
    }

    /// Sets the price of a bid the chain knows.
    pub fn set_price(&self, id: &BidId, price_per_second: u128) {
        if let Some(bid) = lock(&self.bids).get_mut(id) {
            bid.price_per_second = price_per_second;
        }
    }

    pub fn add_session(&self, id: &SessionId, model: &ModelId, ends_at: DateTime<Utc>) {
        self.add_staked_session(id, model, ends_at, 0, 0);
    }

    /// A session with its stake and price, as an open leaves it.
    pub fn add_staked_session(
        &self,
        id: &SessionId,
        model: &ModelId,
        ends_at: DateTime<Utc>,
        stake: u128,
        price_per_second: u128,
    ) {
        let now = Utc::now().timestamp().max(0) as u64;
        lock(&self.chain).insert(
            id.clone(),
            UpstreamSession {
                id: id.clone(),
                user: String::new(),
                provider: "0x00000000000000000000000000000000000000aa".to_owned(),
                model_agent_id: model.as_str().to_owned(),
                bid_id: String::new(),
                stake,
                price_per_second,
                opened_at: now,
                ends_at: ends_at.timestamp().max(0) as u64,
                closed_at: 0,
            },
        );
    }

    /// Closes a session on chain, behind the gateway's back.
    pub fn close_on_chain(&self, id: &SessionId) {
        if let Some(s) = lock(&self.chain).get_mut(id) {
            s.closed_at = Utc::now().timestamp().max(1) as u64;
        }
    }

    /// Opens a session; its stake is `price × duration` (the node's direct-payment stake).
    fn open(
        &self,
        model: &ModelId,
        terms: SessionTerms,
        price_per_second: u128,
    ) -> Result<SessionId, MarketplaceError> {
        if let Some(error) = lock(&self.open_failures).pop_front() {
            return Err(error);
        }
        let n = self.opened.fetch_add(1, Ordering::SeqCst) + 1;
        let id = SessionId::parse(&format!("0x{n:064x}")).expect("a session id");
        let seconds = terms.duration.seconds();
        let ends = Utc::now() + chrono::Duration::seconds(i64::from(seconds));
        let stake = price_per_second * u128::from(seconds);
        self.add_staked_session(&id, model, ends, stake, price_per_second);
        Ok(id)
    }
}

fn hash(n: u64) -> TxHash {
    TxHash::parse(&format!("0x{n:064x}")).expect("a transaction hash")
}

#[async_trait]
impl Marketplace for FakeMarket {
    async fn health(&self) -> Result<(), MarketplaceError> {
        Ok(())
    }

    async fn models(&self) -> Result<Vec<MarketModel>, MarketplaceError> {
        Ok(Vec::new())
    }

    async fn rated_bids(&self, model: &ModelId) -> Result<Vec<RatedBid>, MarketplaceError> {
        Ok(lock(&self.bids)
            .values()
            .filter(|bid| bid.model_agent_id == model.as_str())
            .map(|bid| RatedBid {
                id: bid.id.clone(),
                bid: bid.clone(),
                // Earlier bids rate higher.
                score: 1.0 / (1.0 + bid.nonce as f64),
            })
            .collect())
    }

    async fn bid(&self, id: &BidId) -> Result<Option<Bid>, MarketplaceError> {
        Ok(lock(&self.bids).get(id).cloned())
    }

    async fn approve(&self, _: &EthAddress, _: u128) -> Result<TxHash, MarketplaceError> {
        Ok(hash(1))
    }

    async fn open_model_session(
        &self,
        model: &ModelId,
        terms: SessionTerms,
    ) -> Result<SessionId, MarketplaceError> {
        // The node picks the best-rated bid.
        let price = self
            .rated_bids(model)
            .await?
            .into_iter()
            .max_by(|a, b| a.score.total_cmp(&b.score))
            .map_or(0, |b| b.bid.price_per_second);
        self.open(model, terms, price)
    }

    async fn open_bid_session(
        &self,
        bid: &BidId,
        terms: SessionTerms,
    ) -> Result<SessionId, MarketplaceError> {
        let (model, price) = lock(&self.bids)
            .get(bid)
            .and_then(|b| Some((ModelId::parse(&b.model_agent_id).ok()?, b.price_per_second)))
            .ok_or_else(|| MarketplaceError::Rejected {
                status: 500,
                message: "failed to initiate session".to_owned(),
                retry_after: None,
            })?;
        self.open(&model, terms, price)
    }

    async fn session(&self, id: &SessionId) -> Result<UpstreamSession, MarketplaceError> {
        if let Some(error) = lock(&self.read_failures).pop_front() {
            return Err(error);
        }
        lock(&self.chain)
            .get(id)
            .cloned()
            .ok_or(MarketplaceError::SessionGone(SessionGone::NotFound))
    }

    async fn close_session(&self, id: &SessionId) -> Result<TxHash, MarketplaceError> {
        lock(&self.closes).push(id.clone());
        if let Some(error) = lock(&self.close_failures).pop_front() {
            return Err(error);
        }
        self.close_on_chain(id);
        Ok(hash(2))
    }

    async fn wallet_sessions(&self) -> Result<Vec<UpstreamSession>, MarketplaceError> {
        if let Some(error) = lock(&self.read_failures).pop_front() {
            return Err(error);
        }
        let mut open: Vec<UpstreamSession> = lock(&self.chain)
            .values()
            .filter(|s| !s.is_closed())
            .cloned()
            .collect();
        open.sort_by_key(|s| std::cmp::Reverse((s.opened_at, s.id.clone())));
        Ok(open)
    }

    async fn chat(&self, call: ChatCall) -> Result<ChatReply, MarketplaceError> {
        lock(&self.chats).push(call.session.clone());
        if let Some(error) = lock(&self.chat_failures).pop_front() {
            return Err(error);
        }
        let open = lock(&self.chain)
            .get(&call.session)
            .is_some_and(|s| !s.is_closed());
        if !open {
            return Err(MarketplaceError::SessionGone(SessionGone::NotFound));
        }
        Ok(ChatReply::Complete {
            body: Bytes::from_static(b"{\"choices\":[]}"),
            usage: None,
        })
    }

    async fn balance(&self) -> Result<WalletBalance, MarketplaceError> {
        self.balance_reads.fetch_add(1, Ordering::SeqCst);
        if let Some(error) = lock(&self.balance_failures).pop_front() {
            return Err(error);
        }
        Ok(WalletBalance {
            eth: 0,
            mor: *lock(&self.mor_balance),
        })
    }
}

/// The session service on the fakes above, with one model listed and one key's owner.
pub struct SessionWorld {
    pub store: std::sync::Arc<MemorySessions>,
    pub market: std::sync::Arc<FakeMarket>,
    pub sessions: crate::services::SessionService,
    /// The automation settings the session service reads (and caches).
    pub automation: crate::services::AutomationService,
    pub owner: crate::services::SessionOwner,
    pub model: ModelId,
}

impl SessionWorld {
    pub const MODEL_NAME: &'static str = "llama";

    /// `automated`: whether the owner's automation is on (it opens sessions for chats).
    pub async fn new(automated: bool) -> Self {
        use crate::services::*;
        let store = std::sync::Arc::new(MemorySessions::default());
        let market = std::sync::Arc::new(FakeMarket::default());
        let model = ModelId::parse(&format!("0x{:064x}", 0xabc)).expect("a model id");
        // Two providers' bids, the first rated higher.
        for n in 0..2u32 {
            let bid = BidId::parse(&format!("0x{:064x}", 0xb1d0 + n)).expect("a bid id");
            market.add_bid_of(&bid, &model, n + 1);
        }
        let catalogue = std::sync::Arc::new(ModelCatalogue::new(CatalogueOptions {
            default_model: None,
            aliases: Vec::new(),
            provided: Vec::new(),
        }));
        let listed = vec![MarketModel {
            id: model.clone(),
            name: Self::MODEL_NAME.to_owned(),
            tags: vec!["Default".to_owned()],
            created_at: 0,
            owner: String::new(),
            is_deleted: false,
            model_type: ModelType::Unknown,
        }];
        catalogue.replace(listed.clone(), listed, Utc::now());
        let automation = AutomationService::new(store.clone());
        let owner = SessionOwner {
            key: ApiKeyId::random(),
            user: UserId::random(),
        };
        automation
            .update(
                owner.user,
                AutomationUpdate {
                    is_enabled: Some(automated),
                    session_duration: None,
                },
            )
            .await
            .expect("automation settings");
        let pool = crate::services::SessionPool::new(
            store.clone(),
            store.clone(),
            market.clone(),
            "replica-a".to_owned(),
            Self::pool_settings(),
        );
        let sessions = SessionService::new(
            store.clone(),
            market.clone(),
            automation.clone(),
            catalogue,
            None,
            pool,
        );
        Self {
            store,
            market,
            sessions,
            automation,
            owner,
            model,
        }
    }

    /// What the tests' sessions are opened with: the default duration.
    pub fn terms() -> SessionTerms {
        SessionTerms {
            duration: SessionDuration::DEFAULT,
            direct_payment: false,
            failover: false,
        }
    }

    /// The pool's bounds in these tests: a cap of 4, a short queue.
    pub fn pool_settings() -> crate::services::PoolSettings {
        crate::services::PoolSettings {
            max_sessions_per_model: 4,
            queue_depth: 16,
            queue_wait: std::time::Duration::from_millis(500),
            lease: std::time::Duration::from_secs(60),
            idle_release: std::time::Duration::from_secs(2),
            idle_grace: None,
            open_stale_after: std::time::Duration::from_secs(600),
            end_margin: std::time::Duration::from_secs(30),
            open_attempts: 3,
            provider_cooldown: std::time::Duration::from_secs(300),
        }
    }

    pub fn resolved(&self) -> crate::services::ResolvedModel {
        self.sessions.catalogue().named(&self.model)
    }
}
