//! Allowances in front of a shared store: a replica takes a small share of a **large** limit
//! ahead of use, so most of its requests are counted in memory instead of costing a Redis
//! round trip each.
//!
//! A take whose every counter is covered by this replica's allowance in the current window is
//! answered from memory. Otherwise what the allowances do not cover goes to the store, and
//! each counter whose share (`limit / SHARE_DIVISOR`) covers the take's amount asks for a
//! share more, which becomes this replica's allowance for the window (if the store refuses
//! that, the take is tried again with the exact amounts, so a share never causes a refusal
//! the exact take would not have; and what an allowance holds is spent toward a take before
//! the store is asked, so one replica alone is exact).
//!
//! # Why the limits stay exact
//! - **Never over.** An allowance is counted in the store when it is taken, by the same
//!   atomic script as any take: the store never counts more than the limit, and a replica
//!   spends only what it was given, in the window it was given for.
//! - **Under by at most a share per replica**: an allowance not yet spent is counted but not
//!   used, so another replica can be refused up to `replicas × limit / SHARE_DIVISOR` early
//!   (0.3 % with three replicas). An allowance unused for [`IDLE`] is given back, and so is
//!   every allowance at shutdown. A limit whose thousandth is below a take (a 600 RPM key, a
//!   budget of a few requests) never takes a share: every one of its takes goes to the store.
//! - **Windows by the store's clock**: the allowance is kept with the store's window; the
//!   replica's clock is corrected by the offset the store's last answer showed, so a replica
//!   whose clock runs late does not spend an old window's allowance in a new window.
//!
//! Corrections (an [`adjust`](Counters::adjust) of a window that holds an allowance) are made
//! in the allowance when they can be: a give-back raises it, up to two shares (beyond, the
//! rest goes back to the store), and a charge beyond the reservation spends it. Reads
//! (amount `0`) always ask the store, less this replica's unspent allowance.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use async_trait::async_trait;
use morpheus_domain::ports::{
    CounterFailure, CounterState, Counters, Take, Taken, window_seconds, window_start,
};
use tokio::time::Instant;

use crate::memory::{Clock, system_clock};

/// A share is `limit / SHARE_DIVISOR`; limits below it take none.
pub const SHARE_DIVISOR: u64 = 1000;
/// An allowance unused this long is given back to the store.
pub const IDLE: Duration = Duration::from_secs(2);

/// One counter's window as this replica holds it.
#[derive(Debug, Clone, Copy)]
struct Allowance {
    /// The window (by the store's clock) the allowance was counted in.
    window_start: i64,
    /// The share its refills take (`limit / SHARE_DIVISOR`).
    share: u64,
    /// Counted in the store for this replica, not spent yet.
    left: u64,
    /// The store's count at the last refill, this allowance included.
    used_at_refill: u64,
    last_used: Instant,
}

/// Counters with per-replica allowances in front of a shared `store`.
pub struct AllowanceCounters {
    store: Arc<dyn Counters>,
    clock: Clock,
    book: Mutex<Book>,
}

#[derive(Default)]
struct Book {
    allowances: HashMap<(String, i64), Allowance>,
    /// The store's clock minus this replica's, at its last answer.
    offset: i64,
}

fn share(limit: u64) -> u64 {
    limit / SHARE_DIVISOR
}

impl AllowanceCounters {
    pub fn new(store: Arc<dyn Counters>) -> Self {
        Self::with_clock(store, Arc::new(system_clock))
    }

    /// With this replica's clock given (tests).
    pub fn with_clock(store: Arc<dyn Counters>, clock: Clock) -> Self {
        Self {
            store,
            clock,
            book: Mutex::default(),
        }
    }

    fn book(&self) -> MutexGuard<'_, Book> {
        self.book.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Spends what the allowances hold toward each take (in the current window): the whole
    /// amount when they cover it, else what they have left. Returns what each take got.
    fn spend(&self, takes: &[Take]) -> (Vec<u64>, i64) {
        let mut book = self.book();
        let now = (self.clock)() + book.offset;
        let at = Instant::now();
        let spent = takes
            .iter()
            .map(|t| {
                let slot = (t.key.clone(), window_seconds(t.window));
                match book.allowances.get_mut(&slot) {
                    Some(a) if t.amount > 0 && a.window_start == window_start(now, t.window) => {
                        let part = a.left.min(t.amount);
                        a.left -= part;
                        a.last_used = at;
                        part
                    }
                    _ => 0,
                }
            })
            .collect();
        (spent, now)
    }

    /// Gives back to the allowances what [`spend`](Self::spend) took for a take that was not
    /// made after all.
    fn unspend(&self, takes: &[Take], spent: &[u64]) {
        let mut book = self.book();
        for (t, &part) in takes.iter().zip(spent).filter(|(_, p)| **p > 0) {
            if let Some(a) = book
                .allowances
                .get_mut(&(t.key.clone(), window_seconds(t.window)))
            {
                a.left += part;
            }
        }
    }

    /// The states of a take the allowances covered whole.
    fn answered_here(&self, takes: &[Take], now: i64) -> Taken {
        let book = self.book();
        let counters = takes
            .iter()
            .map(|t| {
                let w = window_seconds(t.window);
                let a = book.allowances.get(&(t.key.clone(), w));
                let start = a.map_or_else(|| window_start(now, t.window), |a| a.window_start);
                CounterState {
                    used: a.map_or(0, |a| a.used_at_refill.saturating_sub(a.left)),
                    limit: t.limit,
                    window_start: start,
                    resets_at: start + w,
                }
            })
            .collect();
        Taken {
            counters,
            refused_by: None,
            degraded: false,
            now,
        }
    }

    /// Records what a take from the store gave: each share as an allowance, and each
    /// counter's state shown without this replica's unspent allowance (what a covered take
    /// spent is in the store's count already, as part of an earlier share).
    fn record(&self, takes: &[Take], shares: &[u64], taken: &mut Taken) {
        let mut book = self.book();
        book.offset = taken.now - (self.clock)();
        let at = Instant::now();
        for (i, (take, state)) in takes.iter().zip(&mut taken.counters).enumerate() {
            let slot = (take.key.clone(), window_seconds(take.window));
            if shares[i] > 0 {
                let a = book.allowances.entry(slot.clone()).or_insert(Allowance {
                    window_start: state.window_start,
                    share: shares[i],
                    left: 0,
                    used_at_refill: 0,
                    last_used: at,
                });
                if a.window_start != state.window_start {
                    // The old window's remainder is over with it.
                    a.window_start = state.window_start;
                    a.left = 0;
                }
                a.share = shares[i];
                a.left += shares[i];
                a.used_at_refill = state.used;
                a.last_used = at;
            }
            if let Some(a) = book.allowances.get(&slot)
                && a.window_start == state.window_start
            {
                state.used = state.used.saturating_sub(a.left);
            }
        }
    }

    /// Gives back every allowance unused for [`IDLE`] (all of them with `everything`, at
    /// shutdown) and forgets those of windows that are over. Returns how many were given back.
    ///
    /// # Errors
    /// The first give-back the store refused (the others are still tried; an allowance that
    /// could not be given back is forgotten: it only stands until its window ends).
    pub async fn give_back_idle(&self, everything: bool) -> Result<usize, CounterFailure> {
        let due: Vec<((String, i64), Allowance)> = {
            let mut book = self.book();
            let now = (self.clock)() + book.offset;
            let at = Instant::now();
            let mut due = Vec::new();
            book.allowances.retain(|slot, a| {
                let over = a.window_start + slot.1 <= now;
                let idle = at.duration_since(a.last_used) >= IDLE;
                if over {
                    return false;
                }
                if everything || idle {
                    due.push((slot.clone(), *a));
                    return false;
                }
                true
            });
            due
        };
        let mut given = 0;
        let mut failed = None;
        for ((key, window), a) in due {
            if a.left == 0 {
                continue;
            }
            let delta = -i64::try_from(a.left).unwrap_or(i64::MAX);
            let window = Duration::from_secs(window.unsigned_abs());
            match self.store.adjust(&key, window, a.window_start, delta).await {
                Ok(()) => given += 1,
                Err(error) => failed = Some(error),
            }
        }
        failed.map_or(Ok(given), Err)
    }

    /// How many allowances this replica holds, and their unspent sum (tests, metrics).
    pub fn held(&self) -> (usize, u64) {
        let book = self.book();
        (
            book.allowances.len(),
            book.allowances.values().map(|a| a.left).sum(),
        )
    }
}

#[async_trait]
impl Counters for AllowanceCounters {
    async fn take(&self, takes: &[Take]) -> Result<Taken, CounterFailure> {
        let (spent, now) = self.spend(takes);
        let rest: Vec<u64> = takes
            .iter()
            .zip(&spent)
            .map(|(t, &p)| t.amount - p)
            .collect();
        if !takes.is_empty()
            && takes
                .iter()
                .zip(&rest)
                .all(|(t, &r)| t.amount > 0 && r == 0)
        {
            return Ok(self.answered_here(takes, now));
        }
        // What the allowances did not cover goes to the store, with a share more for each
        // counter whose share would cover this take again.
        let shares: Vec<u64> = takes
            .iter()
            .zip(&rest)
            .map(|(t, &r)| {
                let share = share(t.limit);
                if r > 0 && share >= t.amount { share } else { 0 }
            })
            .collect();
        let exact: Vec<Take> = takes
            .iter()
            .zip(&rest)
            .map(|(t, &r)| Take {
                amount: r,
                ..t.clone()
            })
            .collect();
        let mut granted = shares.clone();
        let mut taken = if shares.iter().any(|&s| s > 0) {
            let with_shares: Vec<Take> = exact
                .iter()
                .zip(&shares)
                .map(|(t, &s)| Take {
                    amount: t.amount + s,
                    ..t.clone()
                })
                .collect();
            self.store.take(&with_shares).await
        } else {
            self.store.take(&exact).await
        };
        if matches!(&taken, Ok(t) if !t.degraded && !t.allowed()) && granted.iter().any(|&s| s > 0)
        {
            // Without the shares the exact take may still fit.
            granted = vec![0; takes.len()];
            taken = self.store.take(&exact).await;
        }
        match taken {
            Ok(mut taken) if taken.allowed() && !taken.degraded => {
                self.record(takes, &granted, &mut taken);
                Ok(taken)
            }
            other => {
                self.unspend(takes, &spent);
                other
            }
        }
    }

    async fn adjust(
        &self,
        key: &str,
        window: Duration,
        window_start: i64,
        delta: i64,
    ) -> Result<(), CounterFailure> {
        let rest = {
            let mut book = self.book();
            let w = window_seconds(window);
            match book.allowances.get_mut(&(key.to_owned(), w)) {
                Some(a) if a.window_start == window_start => {
                    let magnitude = delta.unsigned_abs();
                    if delta < 0 {
                        // Kept up to two shares (of the limit the last refill saw), the rest
                        // given back to the store for every replica.
                        let keep_at_most = a.share * 2;
                        let kept = magnitude.min(keep_at_most.saturating_sub(a.left));
                        a.left += kept;
                        -i64::try_from(magnitude - kept).unwrap_or(i64::MAX)
                    } else if a.left >= magnitude {
                        a.left -= magnitude;
                        0
                    } else {
                        delta
                    }
                }
                _ => delta,
            }
        };
        if rest == 0 {
            return Ok(());
        }
        self.store.adjust(key, window, window_start, rest).await
    }
}
