//! Credits: a hold before a request is sent, settled with what it used or voided when nothing
//! was served; the balance, the ledger and monthly spending; the operator's grants; and the
//! reconciliation of holds a crashed process left pending.

use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, RwLock};
use std::time::Duration;

use chrono::{Datelike, Utc};

use super::credit_lease::{LeaseFigures, LeaseSettings, Leases, Reservation};
use super::keyed_locks::KeyedLocks;
use super::{ResolvedModel, SessionOwner};
use crate::model::*;
use crate::ports::*;

#[derive(Debug, Clone, Copy)]
pub struct BillingSettings {
    /// Off: no holds, no charges; the billing routes still answer (a private gateway).
    pub enabled: bool,
    /// Credit a user gets with their balance (at their first billed request or balance read).
    pub signup_credit: Usd,
    /// Credit leases (see `credit_lease`): off, every request places its own hold.
    pub lease: LeaseSettings,
}

/// A request refused for want of credit.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("insufficient credits: {available} USD available, {estimated_cost} USD estimated")]
pub struct InsufficientCredit {
    pub available: Usd,
    pub estimated_cost: Usd,
}

#[derive(Debug, thiserror::Error)]
pub enum HoldError {
    #[error(transparent)]
    Insufficient(#[from] InsufficientCredit),
    #[error(transparent)]
    Unknown(#[from] anyhow::Error),
}

#[derive(Debug, thiserror::Error)]
pub enum GrantError {
    #[error("no such user")]
    NoUser,
    #[error(transparent)]
    Unknown(#[from] anyhow::Error),
}

/// Running totals of what billing did on this replica, for the metrics.
#[derive(Debug, Default)]
pub struct BillingCounters {
    pub holds_placed: AtomicU64,
    pub holds_refused: AtomicU64,
    /// Holds settled on the provider's count…
    pub charged: AtomicU64,
    /// …on the text delivered (the count never came)…
    pub charged_estimated: AtomicU64,
    /// …released because nothing was served…
    pub voided: AtomicU64,
    /// …or voided by the reconciliation, left pending by a process that died.
    pub reconciled: AtomicU64,
    /// Of `holds_placed`, those served from a credit lease in memory.
    pub holds_leased: AtomicU64,
}

#[derive(Clone)]
pub struct BillingService {
    repo: Arc<dyn CreditsRepository>,
    pricing: Arc<RwLock<Arc<Pricing>>>,
    settings: BillingSettings,
    counters: Arc<BillingCounters>,
    /// One ledger write per user at a time on this replica. A user's writes all change their
    /// balance row, which the database lets one transaction change at a time: the others
    /// wait here, in memory, instead of each holding one of the few pooled connections while
    /// they wait for the row (two hundred concurrent chats of one user would take them all).
    users: Arc<KeyedLocks<UserId>>,
    leases: Arc<Leases>,
}

impl BillingService {
    pub fn new(
        repo: Arc<dyn CreditsRepository>,
        pricing: Pricing,
        settings: BillingSettings,
    ) -> Self {
        let users: Arc<KeyedLocks<UserId>> = Arc::default();
        Self {
            leases: Arc::new(Leases::new(repo.clone(), users.clone(), settings.lease)),
            repo,
            pricing: Arc::new(RwLock::new(Arc::new(pricing))),
            settings,
            counters: Arc::default(),
            users,
        }
    }

    /// Whether credit leases are on (then [`flush_leases`](Self::flush_leases) must run every
    /// [`LEASE_FLUSH_INTERVAL`](super::credit_lease::FLUSH_INTERVAL), and
    /// [`return_leases`](Self::return_leases) at shutdown).
    pub fn leasing(&self) -> bool {
        self.settings.enabled && self.settings.lease.enabled
    }

    /// Writes the leases' pending charges; returns the idle and old ones.
    pub async fn flush_leases(&self) -> anyhow::Result<()> {
        self.leases.tick(false).await
    }

    /// Returns every lease (their charges written, their remainders given back): at shutdown,
    /// once no request is in flight.
    pub async fn return_leases(&self) -> anyhow::Result<()> {
        self.leases.tick(true).await
    }

    pub fn lease_figures(&self) -> LeaseFigures {
        self.leases.figures()
    }

    pub fn counters(&self) -> &BillingCounters {
        &self.counters
    }

    pub fn enabled(&self) -> bool {
        self.settings.enabled
    }

    /// The prices in force.
    pub fn pricing(&self) -> Arc<Pricing> {
        self.pricing
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone()
    }

    /// New prices, for every request admitted from now on (a hold keeps the prices it was
    /// placed at).
    pub fn reprice(&self, pricing: Pricing) {
        *self
            .pricing
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = Arc::new(pricing);
    }

    /// What a request may use and cost at most: its estimated input and its output cap (the
    /// request's `max_tokens`, else the model's configured cap) at the model's price.
    pub fn quote(&self, model: &ResolvedModel, estimate: TokenEstimate) -> super::Quote {
        let pricing = self.pricing();
        let entry = pricing.of(&model.name, model.id.as_str(), model.model_type);
        let usage = TokenUsage {
            prompt_tokens: estimate.input_tokens,
            completion_tokens: estimate
                .max_output_tokens
                .unwrap_or_else(|| pricing.max_output_tokens(entry)),
        };
        super::Quote {
            price: entry.price,
            usage,
            cost: entry.price.cost(usage),
        }
    }

    /// Sets aside what the request may cost at most (its [`quote`](Self::quote)). `None`
    /// when billing is off.
    ///
    /// # Errors
    /// [`HoldError::Insufficient`] when the user's available credit does not cover it.
    pub async fn hold(
        &self,
        owner: SessionOwner,
        model: &ResolvedModel,
        quote: &super::Quote,
        request_id: Option<String>,
    ) -> Result<Option<CreditHold>, HoldError> {
        if !self.settings.enabled {
            return Ok(None);
        }
        let amount = quote.cost;
        if self.leasing() && amount > Usd::ZERO {
            return self.hold_leased(owner, model, quote, request_id).await;
        }
        let id = LedgerEntryId::random();
        let user = self.users.of(owner.user);
        let turn = user.lock().await;
        let outcome = self
            .repo
            .place_hold(NewHold {
                id,
                user: owner.user,
                api_key: owner.key,
                amount,
                model: model.name.clone(),
                request_id,
                signup_credit: self.settings.signup_credit,
            })
            .await?;
        drop(turn);
        match outcome {
            HoldOutcome::Held => {
                self.counters.holds_placed.fetch_add(1, Relaxed);
                Ok(Some(self.exact_hold(id, owner, quote)))
            }
            HoldOutcome::Insufficient { available } => {
                self.counters.holds_refused.fetch_add(1, Relaxed);
                Err(InsufficientCredit {
                    available,
                    estimated_cost: amount,
                }
                .into())
            }
        }
    }

    fn exact_hold(
        &self,
        id: LedgerEntryId,
        owner: SessionOwner,
        quote: &super::Quote,
    ) -> CreditHold {
        CreditHold {
            id,
            user: owner.user,
            price: quote.price,
            input_estimate: quote.usage.prompt_tokens,
            repo: Some(self.repo.clone()),
            counters: self.counters.clone(),
            users: self.users.clone(),
            lease: None,
        }
    }

    fn leased_hold(
        &self,
        owner: SessionOwner,
        model: &ResolvedModel,
        quote: &super::Quote,
        request_id: Option<String>,
        reservation: Reservation,
    ) -> CreditHold {
        self.counters.holds_placed.fetch_add(1, Relaxed);
        self.counters.holds_leased.fetch_add(1, Relaxed);
        let mut hold = self.exact_hold(LedgerEntryId::random(), owner, quote);
        hold.lease = Some(LeasedHold {
            reservation,
            api_key: owner.key,
            model: model.name.clone(),
            request_id,
        });
        hold
    }

    /// A hold with leases on: from the user's lease in memory when it covers the quote; else,
    /// in the user's turn, the lease's remainder given back and the database asked for a new
    /// lease or (near zero) the exact hold.
    async fn hold_leased(
        &self,
        owner: SessionOwner,
        model: &ResolvedModel,
        quote: &super::Quote,
        request_id: Option<String>,
    ) -> Result<Option<CreditHold>, HoldError> {
        let amount = quote.cost;
        if let Some(reservation) = self.leases.reserve(owner.user, amount) {
            return Ok(Some(self.leased_hold(
                owner,
                model,
                quote,
                request_id,
                reservation,
            )));
        }
        let user = self.users.of(owner.user);
        let turn = user.lock().await;
        // Somebody may have leased while this request waited for the turn.
        if let Some(reservation) = self.leases.reserve(owner.user, amount) {
            drop(turn);
            return Ok(Some(self.leased_hold(
                owner,
                model,
                quote,
                request_id,
                reservation,
            )));
        }
        self.leases.retire_current_locked(owner.user).await;
        let id = LedgerEntryId::random();
        let hold = NewHold {
            id,
            user: owner.user,
            api_key: owner.key,
            amount,
            model: model.name.clone(),
            request_id: request_id.clone(),
            signup_credit: self.settings.signup_credit,
        };
        let outcome = if self.leases.in_a_run(owner.user) {
            self.repo.lease_or_hold(hold, Leases::terms(amount)).await?
        } else {
            match self.repo.place_hold(hold).await? {
                HoldOutcome::Held => LeaseOutcome::Held,
                HoldOutcome::Insufficient { available } => LeaseOutcome::Insufficient { available },
            }
        };
        match outcome {
            LeaseOutcome::Leased { amount: leased } => {
                let reservation = self.leases.install(owner.user, id, leased, amount);
                drop(turn);
                Ok(Some(self.leased_hold(
                    owner,
                    model,
                    quote,
                    request_id,
                    reservation,
                )))
            }
            LeaseOutcome::Held => {
                drop(turn);
                self.counters.holds_placed.fetch_add(1, Relaxed);
                Ok(Some(self.exact_hold(id, owner, quote)))
            }
            LeaseOutcome::Insufficient { available } => {
                drop(turn);
                self.counters.holds_refused.fetch_add(1, Relaxed);
                Err(InsufficientCredit {
                    available,
                    estimated_cost: amount,
                }
                .into())
            }
        }
    }

    /// `None` when there is no such user.
    pub async fn balance(&self, user: UserId) -> anyhow::Result<Option<Balance>> {
        self.repo.balance(user, self.settings.signup_credit).await
    }

    pub async fn ledger(
        &self,
        user: UserId,
        filter: LedgerFilter,
        limit: u32,
        offset: u64,
    ) -> anyhow::Result<(Vec<LedgerEntry>, u64)> {
        // A first look at the books opens them, sign-up credit included, as a balance read does.
        self.balance(user).await?;
        self.repo.ledger(user, filter, limit, offset).await
    }

    /// The user's spending of `year` (this year when `None`) by month.
    pub async fn spending(
        &self,
        user: UserId,
        year: Option<i32>,
        net: bool,
    ) -> anyhow::Result<(i32, Vec<MonthSpending>)> {
        let year = year.unwrap_or_else(|| Utc::now().year());
        self.balance(user).await?;
        Ok((year, self.repo.spending(user, year, net).await?))
    }

    /// Credit granted (or, negative, taken back) by the operator, or bought.
    ///
    /// # Errors
    /// [`GrantError::NoUser`] when there is no such user.
    pub async fn grant(
        &self,
        user: UserId,
        entry_type: LedgerEntryType,
        amount: Usd,
        description: Option<String>,
        idempotency_key: Option<String>,
    ) -> Result<PostingOutcome, GrantError> {
        let outcome = self
            .repo
            .post(NewPosting {
                user,
                entry_type,
                amount,
                idempotency_key,
                description,
                signup_credit: self.settings.signup_credit,
            })
            .await?;
        match outcome {
            PostingOutcome::NoUser => Err(GrantError::NoUser),
            other => Ok(other),
        }
    }

    /// Voids the holds left pending longer than `max_pending`: their request's process died
    /// between hold and settlement (a live one settles or voids every hold it places, and no
    /// request lasts that long). Returns how many were voided.
    pub async fn reconcile(&self, max_pending: Duration) -> anyhow::Result<usize> {
        let before =
            Utc::now() - chrono::Duration::from_std(max_pending).unwrap_or(chrono::Duration::MAX);
        let mut voided = 0;
        loop {
            let stale = self.repo.stale_holds(before, 500).await?;
            if stale.is_empty() {
                return Ok(voided);
            }
            for id in &stale {
                if self
                    .repo
                    .void_hold(*id, "pending past the reconciliation bound")
                    .await?
                {
                    voided += 1;
                    self.counters.reconciled.fetch_add(1, Relaxed);
                    tracing::warn!(hold = %id, "voided a hold left pending by a process that did not settle it");
                }
            }
            if stale.len() < 500 {
                return Ok(voided);
            }
        }
    }
}

/// A placed hold. Settle it with what the request used, or void it; dropped unresolved, it is
/// voided (the request ended before anything was served).
pub struct CreditHold {
    id: LedgerEntryId,
    user: UserId,
    price: ModelPrice,
    input_estimate: u32,
    /// `None` once resolved.
    repo: Option<Arc<dyn CreditsRepository>>,
    counters: Arc<BillingCounters>,
    users: Arc<KeyedLocks<UserId>>,
    /// Served from a lease: settled in memory, written behind.
    lease: Option<LeasedHold>,
}

struct LeasedHold {
    reservation: Reservation,
    api_key: ApiKeyId,
    model: String,
    request_id: Option<String>,
}

impl std::fmt::Debug for CreditHold {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CreditHold").field("id", &self.id).finish()
    }
}

impl CreditHold {
    pub fn id(&self) -> LedgerEntryId {
        self.id
    }

    /// Charges the provider's count (an explicit zero is a zero).
    pub fn settle(self, usage: TokenUsage) {
        self.charge(usage, false);
    }

    /// Charges the input estimate and the output delivered, marked estimated: the provider's
    /// count never came.
    pub fn settle_estimated(self, delivered_output_tokens: u32) {
        let usage = TokenUsage {
            prompt_tokens: self.input_estimate,
            completion_tokens: delivered_output_tokens,
        };
        self.charge(usage, true);
    }

    pub fn void(mut self, reason: &'static str) {
        if self.finish_leased(None) {
            return;
        }
        if let Some(repo) = self.repo.take() {
            self.counters.voided.fetch_add(1, Relaxed);
            let id = self.id;
            self.resolve(async move { repo.void_hold(id, reason).await.map(drop) });
        }
    }

    /// Ends a lease-backed hold in memory (`None`: voided); `false` when it is not one.
    fn finish_leased(&mut self, settlement: Option<Settlement>) -> bool {
        let Some(leased) = self.lease.take() else {
            return false;
        };
        self.repo = None;
        let charge = settlement.map(|settlement| LeaseCharge {
            id: self.id,
            api_key: leased.api_key,
            model: leased.model,
            request_id: leased.request_id,
            settlement,
            charged: settlement.cost,
        });
        if charge.is_none() {
            self.counters.voided.fetch_add(1, Relaxed);
        }
        let leases = leased.reservation.leases.clone();
        if let (Some(charged), Some(s)) = (leases.finish(&leased.reservation, charge), settlement)
            && charged < s.cost
        {
            tracing::warn!(hold = %self.id, cost = %s.cost, charged = %charged, "a charge went past its lease's credit and was capped at it");
        }
        true
    }

    fn charge(mut self, usage: TokenUsage, estimated: bool) {
        if self.repo.is_none() {
            return;
        }
        let counter = if estimated {
            &self.counters.charged_estimated
        } else {
            &self.counters.charged
        };
        counter.fetch_add(1, Relaxed);
        let settlement = Settlement {
            usage,
            prices: self.price,
            cost: self.price.cost(usage),
            estimated,
        };
        if self.finish_leased(Some(settlement)) {
            return;
        }
        let Some(repo) = self.repo.take() else {
            return;
        };
        let id = self.id;
        self.resolve(async move {
            if let Some(charged) = repo.settle_hold(id, settlement).await?
                && charged.capped
            {
                tracing::warn!(hold = %id, cost = %settlement.cost, charged = %charged.charged, "a charge went past the user's credit and was capped at it");
            }
            Ok(())
        });
    }
}

impl CreditHold {
    /// Runs the hold's settlement or release in its user's turn.
    fn resolve(&self, work: impl Future<Output = anyhow::Result<()>> + Send + 'static) {
        let user = self.users.of(self.user);
        spawn_resolution(self.id, async move {
            let _turn = user.lock().await;
            work.await
        });
    }
}

impl Drop for CreditHold {
    fn drop(&mut self) {
        if self.finish_leased(None) {
            return;
        }
        if let Some(repo) = self.repo.take() {
            self.counters.voided.fetch_add(1, Relaxed);
            let id = self.id;
            self.resolve(async move {
                repo.void_hold(id, "the request ended before anything was served")
                    .await
                    .map(drop)
            });
        }
    }
}

/// Settles or voids on a task of its own: the response does not wait for the ledger. A
/// failure leaves the hold pending, for the reconciliation to void.
fn spawn_resolution(
    id: LedgerEntryId,
    work: impl Future<Output = anyhow::Result<()>> + Send + 'static,
) {
    let Ok(runtime) = tokio::runtime::Handle::try_current() else {
        tracing::error!(hold = %id, "no runtime to resolve a hold on; it stays pending until reconciled");
        return;
    };
    runtime.spawn(async move {
        if let Err(error) = work.await {
            tracing::error!(hold = %id, error = format!("{error:#}"), "resolving a credit hold failed; it stays pending until reconciled");
        }
    });
}
