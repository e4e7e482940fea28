//! The lease logic against an in-memory ledger that counts its transactions.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, Utc};

use super::LeaseSettings;
use crate::model::*;
use crate::ports::*;
use crate::services::{BillingService, BillingSettings, CreditHold, HoldError, Quote};
use crate::services::{ResolvedModel, SessionOwner};

/// 1 USD per million output tokens: 100 units (10^-8 USD) a token.
const PER_TOKEN: i64 = 100;

#[derive(Default)]
struct Books {
    posted: i64,
    held: i64,
    /// Pending entries: what each holds, and whether it is a lease.
    pending: HashMap<LedgerEntryId, (i64, bool)>,
    charges: Vec<i64>,
    transactions: usize,
    leases: usize,
    exact_holds: usize,
}

#[derive(Default)]
struct Ledger(Mutex<Books>);

impl Ledger {
    fn with(posted: i64) -> Arc<Self> {
        let ledger = Self::default();
        ledger.0.lock().unwrap().posted = posted;
        Arc::new(ledger)
    }

    fn books<T>(&self, f: impl FnOnce(&Books) -> T) -> T {
        f(&self.0.lock().unwrap())
    }
}

use std::sync::Arc;

#[async_trait]
impl CreditsRepository for Ledger {
    async fn place_hold(&self, hold: NewHold) -> anyhow::Result<HoldOutcome> {
        let mut b = self.0.lock().unwrap();
        b.transactions += 1;
        let amount = hold.amount.units();
        if b.posted - b.held < amount {
            return Ok(HoldOutcome::Insufficient {
                available: Usd::from_units(b.posted - b.held),
            });
        }
        b.held += amount;
        b.exact_holds += 1;
        b.pending.insert(hold.id, (amount, false));
        Ok(HoldOutcome::Held)
    }

    async fn settle_hold(
        &self,
        id: LedgerEntryId,
        s: Settlement,
    ) -> anyhow::Result<Option<Charged>> {
        let mut b = self.0.lock().unwrap();
        b.transactions += 1;
        let Some((held, _)) = b.pending.remove(&id) else {
            return Ok(None);
        };
        b.held -= held;
        let charged = s.cost.units().min((b.posted - b.held).max(0));
        b.posted -= charged;
        b.charges.push(charged);
        Ok(Some(Charged {
            charged: Usd::from_units(charged),
            capped: charged < s.cost.units(),
        }))
    }

    async fn void_hold(&self, id: LedgerEntryId, _reason: &str) -> anyhow::Result<bool> {
        let mut b = self.0.lock().unwrap();
        b.transactions += 1;
        let Some((held, _)) = b.pending.remove(&id) else {
            return Ok(false);
        };
        b.held -= held;
        Ok(true)
    }

    async fn lease_or_hold(
        &self,
        hold: NewHold,
        terms: LeaseTerms,
    ) -> anyhow::Result<LeaseOutcome> {
        let available = self.books(|b| b.posted - b.held);
        if available >= terms.min_available.units() {
            let mut b = self.0.lock().unwrap();
            b.transactions += 1;
            let chunk = (available / 4).min(terms.max_chunk.units());
            b.held += chunk;
            b.leases += 1;
            b.pending.insert(hold.id, (chunk, true));
            return Ok(LeaseOutcome::Leased {
                amount: Usd::from_units(chunk),
            });
        }
        Ok(match self.place_hold(hold).await? {
            HoldOutcome::Held => LeaseOutcome::Held,
            HoldOutcome::Insufficient { available } => LeaseOutcome::Insufficient { available },
        })
    }

    async fn flush_lease(&self, f: LeaseFlush) -> anyhow::Result<bool> {
        let mut b = self.0.lock().unwrap();
        b.transactions += 1;
        let sum: i64 = f.charges.iter().map(|c| c.charged.units()).sum();
        let taken = sum + f.release.units();
        let entry = b.pending.get_mut(&f.lease).expect("the lease is pending");
        assert!(entry.0 >= taken, "a flush takes more than its lease holds");
        entry.0 -= taken;
        let left = entry.0;
        b.held -= taken;
        b.posted -= sum;
        b.charges
            .extend(f.charges.iter().map(|c| c.charged.units()));
        if f.close {
            assert_eq!(left, 0, "a returned lease holds nothing more");
            b.pending.remove(&f.lease);
        }
        Ok(true)
    }

    async fn post(&self, _: NewPosting) -> anyhow::Result<PostingOutcome> {
        unimplemented!()
    }
    async fn balance(&self, _: UserId, _: Usd) -> anyhow::Result<Option<Balance>> {
        unimplemented!()
    }
    async fn ledger(
        &self,
        _: UserId,
        _: LedgerFilter,
        _: u32,
        _: u64,
    ) -> anyhow::Result<(Vec<LedgerEntry>, u64)> {
        unimplemented!()
    }
    async fn spending(&self, _: UserId, _: i32, _: bool) -> anyhow::Result<Vec<MonthSpending>> {
        unimplemented!()
    }
    async fn stale_holds(&self, _: DateTime<Utc>, _: u32) -> anyhow::Result<Vec<LedgerEntryId>> {
        unimplemented!()
    }
}

fn billing(ledger: &Arc<Ledger>, idle: Duration) -> BillingService {
    BillingService::new(
        ledger.clone(),
        Pricing::standard(),
        BillingSettings {
            enabled: true,
            signup_credit: Usd::ZERO,
            lease: LeaseSettings {
                enabled: true,
                idle,
                ..LeaseSettings::default()
            },
        },
    )
}

fn owner() -> SessionOwner {
    SessionOwner {
        key: ApiKeyId(7),
        user: UserId(1),
    }
}

fn model() -> ResolvedModel {
    ResolvedModel {
        id: ModelId::parse(&format!("0x{}", "ab".repeat(32))).unwrap(),
        name: "m".to_owned(),
        model_type: crate::ModelType::Llm,
    }
}

fn price() -> ModelPrice {
    ModelPrice {
        input_per_million: Usd::ZERO,
        output_per_million: Usd::from_units(100_000_000),
    }
}

/// A request that may produce `tokens` output tokens.
fn quote(tokens: u32) -> Quote {
    let usage = TokenUsage {
        prompt_tokens: 0,
        completion_tokens: tokens,
    };
    Quote {
        price: price(),
        usage,
        cost: price().cost(usage),
    }
}

async fn hold(billing: &BillingService, tokens: u32) -> Result<CreditHold, HoldError> {
    billing
        .hold(owner(), &model(), &quote(tokens), None)
        .await
        .map(|h| h.expect("billing is on"))
}

fn used(tokens: u32) -> TokenUsage {
    TokenUsage {
        prompt_tokens: 0,
        completion_tokens: tokens,
    }
}

/// Starts a run of the user's requests: a first hold (exact: a lease is for the requests
/// that follow within 2 s), voided, and the ledger's tallies of it forgotten.
async fn start_run(billing: &BillingService, ledger: &Ledger) {
    hold(billing, 10)
        .await
        .unwrap()
        .void("the run's first request");
    settle_down().await;
    let mut b = ledger.0.lock().unwrap();
    assert_eq!(
        (b.exact_holds, b.leases, b.held),
        (1, 0, 0),
        "the first hold is exact"
    );
    b.transactions = 0;
    b.exact_holds = 0;
}

/// Lets the spawned flushes run.
async fn settle_down() {
    for _ in 0..20 {
        tokio::task::yield_now().await;
    }
}

#[tokio::test]
async fn with_ample_credit_one_lease_serves_many_holds_and_their_charges_go_in_one_write() {
    let ledger = Ledger::with(1_000_000 * PER_TOKEN);
    let billing = billing(&ledger, Duration::from_secs(60));
    start_run(&billing, &ledger).await;
    for _ in 0..50 {
        hold(&billing, 10).await.unwrap().settle(used(10));
    }
    assert_eq!(ledger.books(|b| (b.transactions, b.leases)), (1, 1));
    assert_eq!(billing.lease_figures().pending_charges, 50);
    billing.flush_leases().await.unwrap();
    let (transactions, posted, held, charges) =
        ledger.books(|b| (b.transactions, b.posted, b.held, b.charges.len()));
    assert_eq!((transactions, charges), (2, 50));
    assert_eq!(posted, (1_000_000 - 500) * PER_TOKEN);
    // The lease: min(available / 4, 256 quotes), less what was charged.
    assert_eq!(held, (256 * 10 - 500) * PER_TOKEN);
    billing.return_leases().await.unwrap();
    assert_eq!(ledger.books(|b| (b.held, b.pending.len())), (0, 0));
    assert_eq!(billing.lease_figures().leases, 0);
    let counters = billing.counters();
    assert_eq!(
        counters
            .holds_leased
            .load(std::sync::atomic::Ordering::Relaxed),
        50
    );
}

#[tokio::test]
async fn near_zero_every_request_places_an_exact_hold() {
    // Credit for 50 quotes: below the 64 a lease needs.
    let ledger = Ledger::with(50 * 10 * PER_TOKEN);
    let billing = billing(&ledger, Duration::from_secs(60));
    let mut holds = Vec::new();
    let refused = loop {
        match hold(&billing, 10).await {
            Ok(h) => holds.push(h),
            Err(HoldError::Insufficient(refused)) => break refused,
            Err(other) => panic!("{other}"),
        }
    };
    assert_eq!(holds.len(), 50);
    assert_eq!(refused.available, Usd::ZERO);
    assert_eq!(ledger.books(|b| (b.leases, b.exact_holds)), (0, 50));
}

#[tokio::test]
async fn a_replica_gives_its_lease_back_before_refusing_so_every_quote_the_credit_pays_is_served() {
    // Credit for 100 quotes: a lease of 25, then one of 18 (a quarter of 75), then exact holds
    // once the lease's remainder (less than a quote) is back.
    let ledger = Ledger::with(100 * 10 * PER_TOKEN + 5 * PER_TOKEN);
    let billing = billing(&ledger, Duration::from_secs(60));
    start_run(&billing, &ledger).await;
    let mut holds = Vec::new();
    while let Ok(h) = hold(&billing, 10).await {
        holds.push(h);
    }
    let (leases, exact, held, posted) =
        ledger.books(|b| (b.leases, b.exact_holds, b.held, b.posted));
    println!(
        "credit for 100.5 quotes, none settled: {} served ({leases} leases, {exact} exact holds), held {held} of {posted}",
        holds.len()
    );
    assert_eq!(
        holds.len(),
        100,
        "every quote the credit pays for is served"
    );
    assert!(leases >= 1);
    drop(holds);
    settle_down().await;
    billing.return_leases().await.unwrap();
    settle_down().await;
    assert_eq!(ledger.books(|b| b.held), 0);
}

#[tokio::test]
async fn a_charge_above_its_reservation_takes_the_difference_from_the_lease_and_is_capped_past_it()
{
    let ledger = Ledger::with(1_000_000 * PER_TOKEN);
    let billing = billing(&ledger, Duration::from_secs(60));
    start_run(&billing, &ledger).await;
    // The lease: 256 quotes of 10 tokens.
    hold(&billing, 10).await.unwrap().settle(used(30));
    let figures = billing.lease_figures();
    assert_eq!(figures.free, (2560 - 30) * PER_TOKEN);
    // Far past the lease: capped at what it has free.
    hold(&billing, 10).await.unwrap().settle(used(100_000));
    assert_eq!(billing.lease_figures().free, 0);
    billing.return_leases().await.unwrap();
    let (charges, posted, held) = ledger.books(|b| (b.charges.clone(), b.posted, b.held));
    assert_eq!(charges, vec![30 * PER_TOKEN, (2560 - 30) * PER_TOKEN]);
    assert_eq!(posted, (1_000_000 - 2560) * PER_TOKEN);
    assert_eq!(held, 0);
}

#[tokio::test]
async fn an_idle_lease_is_returned_with_its_charges_and_a_voided_request_costs_nothing() {
    let ledger = Ledger::with(1_000_000 * PER_TOKEN);
    let billing = billing(&ledger, Duration::ZERO);
    start_run(&billing, &ledger).await;
    hold(&billing, 10).await.unwrap().settle_estimated(4);
    hold(&billing, 10).await.unwrap().void("nothing served");
    drop(hold(&billing, 10).await.unwrap());
    billing.flush_leases().await.unwrap();
    let (charges, posted, held, pending) =
        ledger.books(|b| (b.charges.clone(), b.posted, b.held, b.pending.len()));
    assert_eq!(charges, vec![4 * PER_TOKEN]);
    assert_eq!(posted, (1_000_000 - 4) * PER_TOKEN);
    assert_eq!((held, pending), (0, 0));
    assert_eq!(billing.lease_figures().leases, 0);
}
