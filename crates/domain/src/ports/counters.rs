//! Counters over fixed, clock-aligned windows: what rate limits, budget windows and the
//! credential throttles count with.
//!
//! A window of length `w` starts at `floor(now / w) * w` (UTC, whole seconds since the epoch),
//! so every replica counts in the same windows. With a shared store (Redis) the counts are
//! global; in memory they are one process's.
//!
//! Every take is all or nothing across the counters it names: either each counter has room
//! for its amount and all of them are raised, in one atomic step, or none is.

use std::time::Duration;

use async_trait::async_trait;

/// One counter a take draws from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Take {
    /// What is counted (`rpm:key:42`, `budget:key:42:1h`, …), without the store's prefix.
    pub key: String,
    /// The window's length, whole seconds (at least one).
    pub window: Duration,
    /// The most the window may count.
    pub limit: u64,
    /// What this take adds; `0` only reads the counter.
    pub amount: u64,
}

impl Take {
    pub fn new(key: impl Into<String>, window: Duration, limit: u64, amount: u64) -> Self {
        Self {
            key: key.into(),
            window,
            limit,
            amount,
        }
    }
}

/// One counter as a take left it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CounterState {
    /// What the window has counted, this take included when it was allowed.
    pub used: u64,
    pub limit: u64,
    /// The window's start and end (its reset), UTC seconds since the epoch.
    pub window_start: i64,
    pub resets_at: i64,
}

impl CounterState {
    /// What is left in the window.
    pub fn remaining(&self) -> u64 {
        self.limit.saturating_sub(self.used)
    }
}

/// The outcome of a take.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Taken {
    /// The counters in the order of the takes: after the take when it was allowed, untouched
    /// otherwise.
    pub counters: Vec<CounterState>,
    /// The first counter (index into the takes) without room for its amount; `None`: allowed
    /// and counted.
    pub refused_by: Option<usize>,
    /// The store could not be reached and the policy is to let requests through (fail-open):
    /// nothing was counted, `used` is `0`. A degraded take must not be settled with
    /// [`Counters::adjust`] (there is nothing to correct).
    pub degraded: bool,
    /// The store's clock at the take, UTC seconds since the epoch.
    pub now: i64,
}

impl Taken {
    pub fn allowed(&self) -> bool {
        self.refused_by.is_none()
    }

    /// The counter that refused, if any.
    pub fn refusal(&self) -> Option<&CounterState> {
        self.refused_by.and_then(|i| self.counters.get(i))
    }

    /// How long until the refusing counter's window resets (at least a second); `None` when
    /// allowed.
    pub fn retry_after(&self) -> Option<Duration> {
        let refusal = self.refusal()?;
        let seconds = (refusal.resets_at - self.now).max(1);
        Some(Duration::from_secs(seconds.unsigned_abs()))
    }
}

/// The counters could not decide: the store failed and the policy is to refuse (fail-closed),
/// or an adjustment or read could not be made. Never a bug: callers answer it with a refusal
/// carrying `retry_after` (a take), or log it (an adjustment), never with a 500.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("the counters are unavailable: {reason}")]
pub struct CounterFailure {
    /// When the store will be tried again.
    pub retry_after: Duration,
    pub reason: String,
}

/// The first second of the window of length `window` that holds `now` (both in seconds).
pub fn window_start(now: i64, window: Duration) -> i64 {
    let w = window_seconds(window);
    now.div_euclid(w) * w
}

/// A window's length in whole seconds, at least one.
pub fn window_seconds(window: Duration) -> i64 {
    i64::try_from(window.as_secs()).unwrap_or(i64::MAX).max(1)
}

#[async_trait]
pub trait Counters: Send + Sync {
    /// Adds each take's amount to its counter's current window if every counter has room
    /// (`used + amount <= limit`), in one atomic step; otherwise adds nothing and names the
    /// first counter without room. Takes of amount `0` only read.
    async fn take(&self, takes: &[Take]) -> Result<Taken, CounterFailure>;

    /// Adds `delta` (negative: gives back) to the window of length `window` that started at
    /// `window_start` (as [`CounterState::window_start`] reported it), without a limit check
    /// and never below zero: settles a reservation with the real figure. A window that is over
    /// is left alone (it no longer limits anything).
    async fn adjust(
        &self,
        key: &str,
        window: Duration,
        window_start: i64,
        delta: i64,
    ) -> Result<(), CounterFailure>;

    /// What the current window of `key` has counted.
    async fn read(&self, key: &str, window: Duration) -> Result<CounterState, CounterFailure> {
        let taken = self.take(&[Take::new(key, window, u64::MAX, 0)]).await?;
        taken
            .counters
            .first()
            .copied()
            .ok_or_else(|| CounterFailure {
                retry_after: Duration::from_secs(1),
                reason: "no counter in the answer".to_owned(),
            })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn windows_are_aligned_on_the_epoch() {
        assert_eq!(window_start(0, Duration::from_secs(60)), 0);
        assert_eq!(window_start(59, Duration::from_secs(60)), 0);
        assert_eq!(window_start(60, Duration::from_secs(60)), 60);
        assert_eq!(
            window_start(1_700_000_123, Duration::from_secs(3600)),
            1_699_999_200
        );
        assert_eq!(window_start(-1, Duration::from_secs(60)), -60);
        // Below a second counts as a second.
        assert_eq!(window_start(7, Duration::from_millis(10)), 7);
    }

    #[test]
    fn a_refusal_says_when_its_window_resets() {
        let state = CounterState {
            used: 10,
            limit: 10,
            window_start: 60,
            resets_at: 120,
        };
        let refused = Taken {
            counters: vec![state],
            refused_by: Some(0),
            degraded: false,
            now: 100,
        };
        assert!(!refused.allowed());
        assert_eq!(refused.retry_after(), Some(Duration::from_secs(20)));
        assert_eq!(state.remaining(), 0);
        let allowed = Taken {
            refused_by: None,
            ..refused
        };
        assert_eq!(allowed.retry_after(), None);
    }
}
