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
