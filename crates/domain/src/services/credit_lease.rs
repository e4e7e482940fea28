//! Credit leases: one database hold serves many requests of a user, from memory.
//!
//! A replica that holds credit for a user with ample credit takes a **lease**: one pending
//! `usage_hold` entry of `min(available / 4, 256 × the request's quote)`, placed with the same
//! conditional update as an exact hold (so it never exceeds the available credit). The
//! user's next requests reserve their quote from the lease in memory (a map under a mutex
//! held for a few instructions), and their charges are written behind: every
//! [`FLUSH_INTERVAL`] or at [`FLUSH_BATCH`] pending charges, one transaction per lease inserts
//! the posted `usage_charge` entries and takes their sum off the lease's hold and the balance.
//!
//! # Invariants
//! - **Never more than the credit.** In memory, for every lease,
//!   `held = free + Σ in-flight reservations + Σ pending charges`, and `held` is what the
//!   lease's entry holds in the database (less what a flush in progress is writing). The
//!   database's holds (leases and exact holds) never exceed `posted`, by the conditional
//!   update; a request is served only from a reservation inside one of them, and a charge
//!   above its reservation takes the difference from the lease's `free`, never more (past
//!   that it is capped, as an exact hold's charge is: never a negative balance).
//! - **Exact near zero.** A lease is taken only when the available credit is at least
//!   [`MIN_AVAILABLE_MULTIPLE`] × the request's quote; below that every request places an
//!   exact hold, as without leases.
//! - **Only for a run of requests.** A user's first request on this replica after [`IDLE`]
//!   without one places an exact hold; a lease is taken by the next one within [`IDLE`].
//!   A lease costs a write to take, one per flush and one to return, so a user who asks
//!   now and then is better served by exact holds (a write to place, one to settle).
//! - **A refusal comes after this replica's remainder is back.** A request the current lease
//!   cannot cover first returns the lease's free remainder to the database (awaited, in the
//!   user's turn), then tries the database: a lease or an exact hold. So on one replica a
//!   request is refused only when the credit is truly set aside, by in-flight requests or
//!   charges not yet written. Across replicas, another replica's lease may still hold an
//!   idle remainder: it is returned after [`IDLE`] without use, which bounds how long such a
//!   refusal can happen; it cannot happen at all below the lease threshold, where no replica
//!   leases (the tests' "credit for 50" cases).
//!
//! # Lifetime and crashes
//! A lease idle for [`IDLE`], or older than half the reconciliation bound
//! (`hold_max_pending_seconds`), is retired: no new reservations, its free remainder given
//! back at once, and its entry voided once its last request is settled and its charges are
//! written. The next request takes a fresh lease, so the reconciliation never voids a live
//! one. At shutdown every lease is returned. A crash leaves the lease's entry pending: the
//! reconciliation voids it after the bound, as any hold; the charges not yet written (at most
//! one flush interval's) are lost. A flush that finds the lease voided still posts its
//! charges, each capped at the credit free.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use super::keyed_locks::KeyedLocks;
use crate::model::*;
use crate::ports::*;

/// How often charges are written behind (the supervisor's period).
pub const FLUSH_INTERVAL: Duration = Duration::from_millis(250);
/// A lease with this many charges pending is written at once.
pub const FLUSH_BATCH: usize = 100;
/// A lease unused this long is returned (the default of [`LeaseSettings::idle`]).
pub const IDLE: Duration = Duration::from_secs(2);
/// A lease is taken only when the available credit is at least this many quotes.
pub const MIN_AVAILABLE_MULTIPLE: i64 = 64;
/// A lease holds at most this many quotes (and at most a quarter of the available credit).
pub const MAX_CHUNK_MULTIPLE: i64 = 256;

#[derive(Debug, Clone, Copy)]
pub struct LeaseSettings {
    pub enabled: bool,
    /// Retired past this age (half the reconciliation bound).
    pub max_age: Duration,
    /// Returned after this long unused.
    pub idle: Duration,
}

impl Default for LeaseSettings {
    fn default() -> Self {
        Self {
            enabled: false,
            max_age: Duration::from_secs(1800),
            idle: IDLE,
        }
    }
}

struct Lease {
    user: UserId,
    /// What its database entry holds (in 10^-8 USD).
    held: i64,
    /// Neither reserved nor charged.
    free: i64,
    in_flight: u32,
    pending: Vec<LeaseCharge>,
    placed: Instant,
    last_used: Instant,
    /// No new reservations; returned once its last request is settled.
    retiring: bool,
    /// A flush is spawned for it already (at the batch size or once closable).
    flush_spawned: bool,
}

#[derive(Default)]
struct Book {
    current: HashMap<UserId, LedgerEntryId>,
    leases: HashMap<LedgerEntryId, Lease>,
    /// When this replica last asked the database for a user's credit (pruned after idle).
    asked: HashMap<UserId, Instant>,
}

/// Figures for tests and metrics.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct LeaseFigures {
    pub leases: usize,
    pub held: i64,
    pub free: i64,
    pub pending_charges: usize,
}

pub(super) struct Leases {
    repo: Arc<dyn CreditsRepository>,
    users: Arc<KeyedLocks<UserId>>,
    pub(super) settings: LeaseSettings,
    book: Mutex<Book>,
}

/// A request's reservation in a lease.
pub(super) struct Reservation {
    pub(super) leases: Arc<Leases>,
    pub(super) lease: LedgerEntryId,
    pub(super) user: UserId,
    pub(super) reserved: Usd,
}

impl Leases {
    pub(super) fn new(
        repo: Arc<dyn CreditsRepository>,
        users: Arc<KeyedLocks<UserId>>,
        settings: LeaseSettings,
    ) -> Self {
        Self {
            repo,
            users,
            settings,
            book: Mutex::default(),
        }
    }

    fn book(&self) -> MutexGuard<'_, Book> {
        self.book
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    pub(super) fn terms(amount: Usd) -> LeaseTerms {
        LeaseTerms {
            min_available: Usd::from_units(amount.units().saturating_mul(MIN_AVAILABLE_MULTIPLE)),
            max_chunk: Usd::from_units(amount.units().saturating_mul(MAX_CHUNK_MULTIPLE)),
        }
    }

    /// The fast path: `amount` reserved from the user's current lease, if it covers it.
    pub(super) fn reserve(self: &Arc<Self>, user: UserId, amount: Usd) -> Option<Reservation> {
        let mut book = self.book();
        let id = *book.current.get(&user)?;
        let lease = book.leases.get_mut(&id)?;
        let now = Instant::now();
        if lease.retiring
            || lease.free < amount.units()
            || now.duration_since(lease.placed) >= self.settings.max_age
        {
            return None;
        }
        lease.free -= amount.units();
        lease.in_flight += 1;
        lease.last_used = now;
        Some(Reservation {
            leases: self.clone(),
            lease: id,
            user,
            reserved: amount,
        })
    }

    /// Whether a request that no lease covers should take a lease (else an exact hold): when
    /// this replica asked the database for the user's credit less than [`IDLE`] ago. Notes
    /// the ask.
    pub(super) fn in_a_run(&self, user: UserId) -> bool {
        let now = Instant::now();
        let previous = self.book().asked.insert(user, now);
        previous.is_some_and(|at| now.duration_since(at) < IDLE)
    }

    /// A new lease of `amount`, with the first request's `reserved` taken from it.
    pub(super) fn install(
        self: &Arc<Self>,
        user: UserId,
        id: LedgerEntryId,
        amount: Usd,
        reserved: Usd,
    ) -> Reservation {
        let now = Instant::now();
        let mut book = self.book();
        book.leases.insert(
            id,
            Lease {
                user,
                held: amount.units(),
                free: amount.units() - reserved.units(),
                in_flight: 1,
                pending: Vec::new(),
                placed: now,
                last_used: now,
                retiring: false,
                flush_spawned: false,
            },
        );
        book.current.insert(user, id);
        Reservation {
            leases: self.clone(),
            lease: id,
            user,
            reserved,
        }
    }

    /// Retires the user's current lease (if any) and gives its free remainder back, in the
    /// caller's turn of the user. Called before this replica asks the database for credit.
    pub(super) async fn retire_current_locked(&self, user: UserId) {
        let id = {
            let mut book = self.book();
            let Some(id) = book.current.remove(&user) else {
                return;
            };
            if let Some(lease) = book.leases.get_mut(&id) {
                lease.retiring = true;
            }
            id
        };
        if let Err(error) = self.flush_locked(id).await {
            tracing::error!(lease = %id, error = format!("{error:#}"), "returning a credit lease's remainder failed");
        }
    }

    /// A reservation's end: `charge` (its cost and what is recorded) or nothing (voided).
    /// Returns what was charged (capped at the reservation and the lease's free credit).
    pub(super) fn finish(
        self: &Arc<Self>,
        reservation: &Reservation,
        charge: Option<LeaseCharge>,
    ) -> Option<Usd> {
        let mut book = self.book();
        let Some(lease) = book.leases.get_mut(&reservation.lease) else {
            // The lease is gone: the reconciliation voided it while this request ran (longer
            // than half the bound). The charge is written alone, capped at the credit free.
            if let Some(charge) = charge
                && let Ok(runtime) = tokio::runtime::Handle::try_current()
            {
                let flush = LeaseFlush {
                    lease: reservation.lease,
                    user: reservation.user,
                    charges: vec![charge.clone()],
                    release: Usd::ZERO,
                    close: false,
                };
                let repo = self.repo.clone();
                runtime.spawn(async move {
                    if let Err(error) = repo.flush_lease(flush).await {
                        tracing::error!(
                            error = format!("{error:#}"),
                            "writing a charge of a voided credit lease failed"
                        );
                    }
                });
                return Some(charge.settlement.cost);
            }
            return None;
        };
        lease.in_flight = lease.in_flight.saturating_sub(1);
        let reserved = reservation.reserved.units();
        let charged = charge.map(|mut charge| {
            let cost = charge.settlement.cost.units();
            let extra = (cost - reserved).max(0).min(lease.free);
            lease.free -= extra;
            let paid = cost.min(reserved + extra);
            lease.free += reserved - paid.min(reserved);
            charge.charged = Usd::from_units(paid);
            lease.pending.push(charge);
            Usd::from_units(paid)
        });
        if charged.is_none() {
            lease.free += reserved;
        }
        let flush_now = lease.pending.len() >= FLUSH_BATCH
            || (lease.retiring && lease.in_flight == 0 && !lease.pending.is_empty());
        let flush_now = flush_now && !lease.flush_spawned;
        if flush_now {
            lease.flush_spawned = true;
            let (leases, id) = (self.clone(), reservation.lease);
            if let Ok(runtime) = tokio::runtime::Handle::try_current() {
                runtime.spawn(async move {
                    if let Err(error) = leases.flush(id).await {
                        tracing::error!(lease = %id, error = format!("{error:#}"), "writing a credit lease's charges failed; retried at the next flush");
                    }
                });
            }
        }
        charged
    }

    /// Writes a lease's pending charges (and its release) in its user's turn.
    pub(super) async fn flush(&self, id: LedgerEntryId) -> anyhow::Result<()> {
        let Some(user) = self.book().leases.get(&id).map(|l| l.user) else {
            return Ok(());
        };
        let turn = self.users.of(user);
        let _turn = turn.lock().await;
        self.flush_locked(id).await
    }

    async fn flush_locked(&self, id: LedgerEntryId) -> anyhow::Result<()> {
        let flush = {
            let mut book = self.book();
            let Some(lease) = book.leases.get_mut(&id) else {
                return Ok(());
            };
            lease.flush_spawned = false;
            let release = if lease.retiring { lease.free } else { 0 };
            let close = lease.retiring && lease.in_flight == 0;
            if lease.pending.is_empty() && release == 0 && !close {
                return Ok(());
            }
            lease.free -= release;
            LeaseFlush {
                lease: id,
                user: lease.user,
                charges: std::mem::take(&mut lease.pending),
                release: Usd::from_units(release),
                close,
            }
        };
        let sum: i64 = flush.charges.iter().map(|c| c.charged.units()).sum();
        let result = self.repo.flush_lease(flush.clone()).await;
        let mut book = self.book();
        match result {
            Ok(still_pending) => {
                if !still_pending {
                    tracing::warn!(lease = %id, "a credit lease was voided by the reconciliation before its charges were written; they were charged capped at the credit free");
                }
                if flush.close || !still_pending {
                    book.leases.remove(&id);
                    if book.current.get(&flush.user) == Some(&id) {
                        book.current.remove(&flush.user);
                    }
                } else if let Some(lease) = book.leases.get_mut(&id) {
                    lease.held -= sum + flush.release.units();
                }
                Ok(())
            }
            Err(error) => {
                if let Some(lease) = book.leases.get_mut(&id) {
                    let mut charges = flush.charges;
                    charges.append(&mut lease.pending);
                    lease.pending = charges;
                    lease.free += flush.release.units();
                }
                Err(error)
            }
        }
    }

    /// The periodic write-behind: pending charges written, idle and old leases retired,
    /// retired ones returned. With `everything`, every lease is returned (shutdown).
    pub(super) async fn tick(&self, everything: bool) -> anyhow::Result<()> {
        let now = Instant::now();
        let due: Vec<LedgerEntryId> = {
            let mut book = self.book();
            let Book {
                current,
                leases,
                asked,
            } = &mut *book;
            asked.retain(|_, at| now.duration_since(*at) < IDLE);
            for (id, lease) in leases.iter_mut() {
                let idle = lease.in_flight == 0
                    && now.duration_since(lease.last_used) >= self.settings.idle;
                let old = now.duration_since(lease.placed) >= self.settings.max_age;
                if !lease.retiring && (everything || idle || old) {
                    lease.retiring = true;
                    if current.get(&lease.user) == Some(id) {
                        current.remove(&lease.user);
                    }
                }
            }
            leases
                .iter()
                .filter(|(_, l)| !l.pending.is_empty() || l.retiring)
                .map(|(id, _)| *id)
                .collect()
        };
        let mut failed = None;
        for id in due {
            if let Err(error) = self.flush(id).await {
                failed = Some(error);
            }
        }
        failed.map_or(Ok(()), Err)
    }

    pub(super) fn figures(&self) -> LeaseFigures {
        let book = self.book();
        LeaseFigures {
            leases: book.leases.len(),
            held: book.leases.values().map(|l| l.held).sum(),
            free: book.leases.values().map(|l| l.free).sum(),
            pending_charges: book.leases.values().map(|l| l.pending.len()).sum(),
        }
    }
}

#[cfg(test)]
#[path = "credit_lease_tests.rs"]
mod tests;
