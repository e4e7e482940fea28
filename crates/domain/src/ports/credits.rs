//! The credit ledger's store.

use async_trait::async_trait;
use chrono::{DateTime, Utc};

use crate::model::*;

/// Credit set aside for one request before it is sent.
#[derive(Debug, Clone)]
pub struct NewHold {
    pub id: LedgerEntryId,
    pub user: UserId,
    pub api_key: ApiKeyId,
    pub amount: Usd,
    pub model: String,
    pub request_id: Option<String>,
    /// Granted with the balance row if the user has none yet (see [`CreditsRepository`]).
    pub signup_credit: Usd,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HoldOutcome {
    Held,
    /// Nothing was written: the user's available credit is less than the hold.
    Insufficient {
        available: Usd,
    },
}

/// How a hold ends as a charge.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Settlement {
    pub usage: TokenUsage,
    pub prices: ModelPrice,
    pub cost: Usd,
    pub estimated: bool,
}

/// What a settlement charged.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Charged {
    pub charged: Usd,
    /// The cost went past the hold and past what the balance had besides: the charge stops
    /// at zero available rather than taking the balance below it.
    pub capped: bool,
}

/// When a hold may be a lease instead (see `services::credit_lease`): only when the
/// available credit is at least `min_available`, and then of `min(available / 4, max_chunk)`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LeaseTerms {
    pub min_available: Usd,
    pub max_chunk: Usd,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LeaseOutcome {
    /// A pending hold of `amount` was placed for the lease.
    Leased { amount: Usd },
    /// The credit was too low to lease: the exact hold was placed instead.
    Held,
    /// Neither: the available credit is less than the hold.
    Insufficient { available: Usd },
}

/// The charge of one request served from a lease, written behind.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LeaseCharge {
    pub id: LedgerEntryId,
    pub api_key: ApiKeyId,
    pub model: String,
    pub request_id: Option<String>,
    pub settlement: Settlement,
    /// What the lease pays (less than `settlement.cost` when capped).
    pub charged: Usd,
}

/// One write of a lease: its charges posted and taken off its hold, `release` more given
/// back, and with `close` the lease's entry voided (nothing is left held by it).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LeaseFlush {
    pub lease: LedgerEntryId,
    pub user: UserId,
    pub charges: Vec<LeaseCharge>,
    pub release: Usd,
    pub close: bool,
}

/// An entry posted at once: a grant, a purchase, a refund.
#[derive(Debug, Clone)]
pub struct NewPosting {
    pub user: UserId,
    pub entry_type: LedgerEntryType,
    pub amount: Usd,
    /// Posting twice with the same key posts once.
    pub idempotency_key: Option<String>,
    pub description: Option<String>,
    pub signup_credit: Usd,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PostingOutcome {
    Posted(LedgerEntry),
    /// An entry with this idempotency key exists already; it is returned unchanged.
    Duplicate(LedgerEntry),
    /// No such user.
    NoUser,
}

/// Which ledger entries a listing shows.
#[derive(Debug, Clone, Default)]
pub struct LedgerFilter {
    pub entry_type: Option<LedgerEntryType>,
    pub model: Option<String>,
    pub from: Option<DateTime<Utc>>,
    pub to: Option<DateTime<Utc>>,
}

/// The ledger. Every method that touches a user's credit first gives a user without a
/// balance row one, holding `signup_credit` (with its ledger entry, idempotency key
/// `signup_credit:<user id>`), in the same transaction: accounts made before credits existed
/// get it the same way as new ones.
#[async_trait]
pub trait CreditsRepository: Send + Sync {
    /// Writes the pending hold and adds it to the balance's holds, if the available credit
    /// covers it; atomically, so concurrent holds never set aside more than there is.
    async fn place_hold(&self, hold: NewHold) -> anyhow::Result<HoldOutcome>;
    /// Turns a pending hold into a charge. `None` when the hold is not pending (settled or
    /// voided already, or its user was deleted): nothing changes.
    async fn settle_hold(
        &self,
        id: LedgerEntryId,
        settlement: Settlement,
    ) -> anyhow::Result<Option<Charged>>;
    /// Releases a pending hold; `false` when it was not pending.
    async fn void_hold(&self, id: LedgerEntryId, reason: &str) -> anyhow::Result<bool>;
    /// Places a lease of `terms` if the available credit allows one, else the exact hold (as
    /// [`place_hold`](Self::place_hold)); one transaction.
    async fn lease_or_hold(&self, hold: NewHold, terms: LeaseTerms)
    -> anyhow::Result<LeaseOutcome>;
    /// Writes a lease's charges and release in one transaction. `false` when the lease was no
    /// longer pending (the reconciliation voided it): the charges are posted all the same,
    /// capped at the credit free.
    async fn flush_lease(&self, flush: LeaseFlush) -> anyhow::Result<bool>;
    async fn post(&self, posting: NewPosting) -> anyhow::Result<PostingOutcome>;
    /// `None` when there is no such user.
    async fn balance(&self, user: UserId, signup_credit: Usd) -> anyhow::Result<Option<Balance>>;
    /// The user's entries, newest first, and how many match in all.
    async fn ledger(
        &self,
        user: UserId,
        filter: LedgerFilter,
        limit: u32,
        offset: u64,
    ) -> anyhow::Result<(Vec<LedgerEntry>, u64)>;
    /// The user's charges of `year` by month (months without any are left out); with
    /// `net`, less refunds.
    async fn spending(
        &self,
        user: UserId,
        year: i32,
        net: bool,
    ) -> anyhow::Result<Vec<MonthSpending>>;
    /// Holds pending since before `before`, oldest first, at most `limit`.
    async fn stale_holds(
        &self,
        before: DateTime<Utc>,
        limit: u32,
    ) -> anyhow::Result<Vec<LedgerEntryId>>;
}
