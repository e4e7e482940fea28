//! The failure policy in front of a shared store: a circuit breaker, so a dead Redis costs
//! one timeout per cooldown instead of one per request, and what a take answers when the
//! store cannot: allowed and marked degraded (fail-open, the default), or refused with the
//! time until the store is tried again (fail-closed).

use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use async_trait::async_trait;
use morpheus_domain::ports::{
    CounterFailure, CounterState, Counters, Take, Taken, window_seconds, window_start,
};
use tokio::time::Instant;

use crate::memory::system_clock;

/// The first cooldown after a failure; each failed probe doubles it, up to [`MAX_COOLDOWN`].
pub const FIRST_COOLDOWN: Duration = Duration::from_millis(500);
pub const MAX_COOLDOWN: Duration = Duration::from_secs(10);

/// What a take answers when the store fails or the breaker is open.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum FailurePolicy {
    /// Allowed, nothing counted, [`Taken::degraded`].
    #[default]
    Open,
    /// Refused: [`CounterFailure`] with the time until the store is tried again.
    Closed,
}

/// Where the breaker stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BreakerState {
    /// Calls go to the store.
    Closed,
    /// Calls skip the store until its cooldown is over.
    Open,
    /// The cooldown is over and one call (the probe) is trying the store; the others still
    /// skip it. The probe's success closes the breaker, its failure opens it for twice as long.
    Probing,
}

/// What the guard reports, for metrics (implemented outside: the domain knows no Prometheus).
pub trait CounterEvents: Send + Sync {
    /// A call to the store failed (error or timeout).
    fn store_failed(&self) {}
    /// A take was decided by the policy without the store: `allowed` under fail-open.
    fn decided_without_store(&self, _allowed: bool) {}
    /// The breaker opened (`true`) or closed again (`false`).
    fn breaker_changed(&self, _open: bool) {}
}

/// No metrics.
struct Silent;
impl CounterEvents for Silent {}

#[derive(Debug)]
struct Breaker {
    /// `None`: closed.
    open_until: Option<Instant>,
    cooldown: Duration,
    probing: bool,
}

/// A call the breaker let through.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Pass {
    Closed,
    Probe,
}

/// Counters in a shared store, behind a circuit breaker and a failure policy. Never fails
/// a take under fail-open; never panics.
pub struct GuardedCounters {
    store: Arc<dyn Counters>,
    policy: FailurePolicy,
    breaker: Mutex<Breaker>,
    events: Arc<dyn CounterEvents>,
}

/// Gives the probe back when its call ends without a verdict (its future was dropped), so
/// the breaker is never stuck waiting for a probe that will not report.
struct ProbeGuard<'a> {
    counters: &'a GuardedCounters,
    pass: Pass,
    settled: bool,
}

impl ProbeGuard<'_> {
    fn settle<T>(mut self, result: &Result<T, CounterFailure>) {
        self.settled = true;
        match result {
            Ok(_) => self.counters.succeeded(),
            Err(e) => self.counters.failed(self.pass, e),
        }
    }
}

impl Drop for ProbeGuard<'_> {
    fn drop(&mut self) {
        if !self.settled && self.pass == Pass::Probe {
            self.counters.breaker().probing = false;
        }
    }
}

impl GuardedCounters {
    pub fn new(store: Arc<dyn Counters>, policy: FailurePolicy) -> Self {
        Self {
            store,
            policy,
            breaker: Mutex::new(Breaker {
                open_until: None,
                cooldown: Duration::ZERO,
                probing: false,
            }),
            events: Arc::new(Silent),
        }
    }

    /// Reports failures, fallbacks and the breaker's changes to `events`.
    #[must_use]
    pub fn with_events(mut self, events: Arc<dyn CounterEvents>) -> Self {
        self.events = events;
        self
    }

    pub fn policy(&self) -> FailurePolicy {
        self.policy
    }

    pub fn breaker_state(&self) -> BreakerState {
        let breaker = self.breaker();
        match breaker.open_until {
            None => BreakerState::Closed,
            Some(_) if breaker.probing => BreakerState::Probing,
            Some(_) => BreakerState::Open,
        }
    }

    /// How long the breaker stays open after its latest failure.
    pub fn cooldown(&self) -> Duration {
        self.breaker().cooldown
    }

    fn breaker(&self) -> MutexGuard<'_, Breaker> {
        self.breaker.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Lets a call through to the store, or says how long until it may try again.
    fn pass(&self) -> Result<ProbeGuard<'_>, Duration> {
        let now = Instant::now();
        let mut breaker = self.breaker();
        let pass = match breaker.open_until {
            None => Pass::Closed,
            Some(until) if now < until => return Err(until - now),
            Some(_) if breaker.probing => return Err(FIRST_COOLDOWN),
            Some(_) => {
                breaker.probing = true;
                Pass::Probe
            }
        };
        Ok(ProbeGuard {
            counters: self,
            pass,
            settled: false,
        })
    }

    fn succeeded(&self) {
        let mut breaker = self.breaker();
        if breaker.open_until.take().is_some() {
            breaker.cooldown = Duration::ZERO;
            breaker.probing = false;
            drop(breaker);
            tracing::info!("the shared counters answer again: limits are global again");
            self.events.breaker_changed(false);
        }
    }

    fn failed(&self, pass: Pass, error: &CounterFailure) {
        self.events.store_failed();
        let now = Instant::now();
        let mut breaker = self.breaker();
        let cooldown = match (pass, breaker.open_until) {
            (Pass::Probe, _) => (breaker.cooldown * 2).clamp(FIRST_COOLDOWN, MAX_COOLDOWN),
            (Pass::Closed, None) => FIRST_COOLDOWN,
            // Calls that were under way when the breaker opened: it is open already.
            (Pass::Closed, Some(_)) => return,
        };
        let was_closed = breaker.open_until.is_none();
        breaker.cooldown = cooldown;
        breaker.open_until = Some(now + cooldown);
        breaker.probing = false;
        drop(breaker);
        tracing::warn!(
            error = %error.reason,
            cooldown_ms = cooldown.as_millis() as u64,
            policy = ?self.policy,
            "the shared counters failed: limits are decided by the failure policy until they answer"
        );
        if was_closed {
            self.events.breaker_changed(true);
        }
    }

    /// A take the store could not decide, as the policy decides it.
    fn fallback(&self, takes: &[Take], reason: String) -> Result<Taken, CounterFailure> {
        let retry_after = match self.breaker().open_until {
            Some(until) => until.saturating_duration_since(Instant::now()),
            None => FIRST_COOLDOWN,
        };
        match self.policy {
            FailurePolicy::Open => {
                self.events.decided_without_store(true);
                let now = system_clock();
                Ok(Taken {
                    counters: takes
                        .iter()
                        .map(|take| {
                            let start = window_start(now, take.window);
                            CounterState {
                                used: 0,
                                limit: take.limit,
                                window_start: start,
                                resets_at: start + window_seconds(take.window),
                            }
                        })
                        .collect(),
                    refused_by: None,
                    degraded: true,
                    now,
                })
            }
            FailurePolicy::Closed => {
                self.events.decided_without_store(false);
                Err(CounterFailure {
                    retry_after: retry_after.max(Duration::from_millis(1)),
                    reason,
                })
            }
        }
    }
}

fn skipped(retry_after: Duration) -> CounterFailure {
    CounterFailure {
        retry_after,
        reason: "the shared counters are unavailable (circuit breaker open)".to_owned(),
    }
}

#[async_trait]
impl Counters for GuardedCounters {
    async fn take(&self, takes: &[Take]) -> Result<Taken, CounterFailure> {
        let guard = match self.pass() {
            Ok(guard) => guard,
            Err(wait) => return self.fallback(takes, skipped(wait).reason),
        };
        let result = self.store.take(takes).await;
        guard.settle(&result);
        match result {
            Ok(taken) => Ok(taken),
            Err(e) => self.fallback(takes, e.reason),
        }
    }

    async fn adjust(
        &self,
        key: &str,
        window: Duration,
        window_start: i64,
        delta: i64,
    ) -> Result<(), CounterFailure> {
        let guard = self.pass().map_err(skipped)?;
        let result = self.store.adjust(key, window, window_start, delta).await;
        guard.settle(&result);
        result
    }

    async fn read(&self, key: &str, window: Duration) -> Result<CounterState, CounterFailure> {
        let guard = self.pass().map_err(skipped)?;
        let result = self.store.read(key, window).await;
        guard.settle(&result);
        result
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};

    use super::*;
    use crate::memory::MemoryCounters;

    /// A store that fails while `down` is set, counting the calls that reached it.
    struct Flaky {
        inner: MemoryCounters,
        down: AtomicBool,
        calls: AtomicU32,
    }

    impl Flaky {
        fn new() -> Arc<Self> {
            Arc::new(Self {
                inner: MemoryCounters::new(),
                down: AtomicBool::new(false),
                calls: AtomicU32::new(0),
            })
        }

        fn check(&self) -> Result<(), CounterFailure> {
            self.calls.fetch_add(1, Ordering::SeqCst);
            if self.down.load(Ordering::SeqCst) {
                Err(CounterFailure {
                    retry_after: Duration::from_secs(1),
                    reason: "down".to_owned(),
                })
            } else {
                Ok(())
            }
        }
    }

    #[async_trait]
    impl Counters for Flaky {
        async fn take(&self, takes: &[Take]) -> Result<Taken, CounterFailure> {
            self.check()?;
            self.inner.take(takes).await
        }

        async fn adjust(
            &self,
            key: &str,
            window: Duration,
            start: i64,
            delta: i64,
        ) -> Result<(), CounterFailure> {
            self.check()?;
            self.inner.adjust(key, window, start, delta).await
        }
    }

    fn one() -> [Take; 1] {
        [Take::new("k", Duration::from_secs(60), 1, 1)]
    }

    #[tokio::test(start_paused = true)]
    async fn the_breaker_opens_on_failure_probes_once_per_growing_cooldown_and_closes() {
        let store = Flaky::new();
        let guarded = GuardedCounters::new(store.clone(), FailurePolicy::Open);
        store.down.store(true, Ordering::SeqCst);

        let taken = guarded.take(&one()).await.unwrap();
        assert!(taken.allowed() && taken.degraded);
        assert_eq!(guarded.breaker_state(), BreakerState::Open);
        assert_eq!(guarded.cooldown(), FIRST_COOLDOWN);
        // While open, nothing reaches the store.
        for _ in 0..10 {
            assert!(guarded.take(&one()).await.unwrap().degraded);
        }
        assert_eq!(store.calls.load(Ordering::SeqCst), 1);

        // Each failed probe doubles the cooldown, up to the maximum.
        let mut expected = FIRST_COOLDOWN;
        while expected < MAX_COOLDOWN {
            tokio::time::advance(expected).await;
            assert!(guarded.take(&one()).await.unwrap().degraded);
            expected = (expected * 2).min(MAX_COOLDOWN);
            assert_eq!(guarded.cooldown(), expected);
        }
        tokio::time::advance(MAX_COOLDOWN).await;
        guarded.take(&one()).await.unwrap();
        assert_eq!(guarded.cooldown(), MAX_COOLDOWN);

        // Back: the next probe closes the breaker, and takes count again.
        store.down.store(false, Ordering::SeqCst);
        tokio::time::advance(MAX_COOLDOWN).await;
        let taken = guarded.take(&one()).await.unwrap();
        assert!(taken.allowed() && !taken.degraded);
        assert_eq!(guarded.breaker_state(), BreakerState::Closed);
        assert!(!guarded.take(&one()).await.unwrap().allowed());
    }

    #[tokio::test(start_paused = true)]
    async fn fail_closed_refuses_with_the_time_until_the_next_try() {
        let store = Flaky::new();
        let guarded = GuardedCounters::new(store.clone(), FailurePolicy::Closed);
        store.down.store(true, Ordering::SeqCst);
        let refused = guarded.take(&one()).await.unwrap_err();
        assert_eq!(refused.retry_after, FIRST_COOLDOWN);
        tokio::time::advance(Duration::from_millis(200)).await;
        let refused = guarded.take(&one()).await.unwrap_err();
        assert_eq!(refused.retry_after, Duration::from_millis(300));
        assert_eq!(store.calls.load(Ordering::SeqCst), 1);
        assert!(
            guarded
                .adjust("k", Duration::from_secs(60), 0, 1)
                .await
                .is_err()
        );
        assert!(guarded.read("k", Duration::from_secs(60)).await.is_err());
    }

    #[tokio::test(start_paused = true)]
    async fn one_probe_at_a_time_and_a_dropped_probe_gives_its_turn_back() {
        let store = Flaky::new();
        let guarded = GuardedCounters::new(store.clone(), FailurePolicy::Open);
        store.down.store(true, Ordering::SeqCst);
        guarded.take(&one()).await.unwrap();
        tokio::time::advance(FIRST_COOLDOWN).await;
        let probe = guarded.pass().unwrap();
        assert_eq!(guarded.breaker_state(), BreakerState::Probing);
        assert!(
            guarded.pass().is_err(),
            "a second probe while the first runs"
        );
        drop(probe);
        assert_eq!(guarded.breaker_state(), BreakerState::Open);
        assert!(
            guarded.pass().is_ok(),
            "the dropped probe's turn is free again"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn events_report_failures_fallbacks_and_the_breaker() {
        #[derive(Default)]
        struct Counted {
            failed: AtomicU32,
            allowed: AtomicU32,
            opened: AtomicU32,
            closed: AtomicU32,
        }
        impl CounterEvents for Counted {
            fn store_failed(&self) {
                self.failed.fetch_add(1, Ordering::SeqCst);
            }
            fn decided_without_store(&self, allowed: bool) {
                assert!(allowed);
                self.allowed.fetch_add(1, Ordering::SeqCst);
            }
            fn breaker_changed(&self, open: bool) {
                let c = if open { &self.opened } else { &self.closed };
                c.fetch_add(1, Ordering::SeqCst);
            }
        }
        let events = Arc::new(Counted::default());
        let store = Flaky::new();
        let guarded =
            GuardedCounters::new(store.clone(), FailurePolicy::Open).with_events(events.clone());
        store.down.store(true, Ordering::SeqCst);
        for _ in 0..3 {
            guarded.take(&one()).await.unwrap();
        }
        store.down.store(false, Ordering::SeqCst);
        tokio::time::advance(FIRST_COOLDOWN).await;
        guarded.take(&one()).await.unwrap();
        assert_eq!(events.failed.load(Ordering::SeqCst), 1);
        assert_eq!(events.allowed.load(Ordering::SeqCst), 3);
        assert_eq!(events.opened.load(Ordering::SeqCst), 1);
        assert_eq!(events.closed.load(Ordering::SeqCst), 1);
    }
}
