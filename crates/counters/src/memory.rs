//! Counters in this process's memory: exact for one instance, and each replica counts alone.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use async_trait::async_trait;
use morpheus_domain::ports::{
    CounterFailure, CounterState, Counters, Take, Taken, window_seconds, window_start,
};

/// The current time, UTC seconds since the epoch.
pub type Clock = Arc<dyn Fn() -> i64 + Send + Sync>;

/// The system clock.
pub fn system_clock() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
}

/// A counter: a key and a window length.
type Slot = (String, i64);

/// A counter's current window.
#[derive(Debug, Clone, Copy)]
struct Window {
    start: i64,
    used: u64,
}

/// Every this many takes, windows that are over are dropped.
const PRUNE_EVERY: u64 = 4096;

/// Counters in a map behind one lock: a take holds it for a few map look-ups, so it stays
/// in the microseconds.
pub struct MemoryCounters {
    windows: Mutex<HashMap<Slot, Window>>,
    clock: Clock,
    takes: AtomicU64,
}

impl Default for MemoryCounters {
    fn default() -> Self {
        Self::new()
    }
}

impl MemoryCounters {
    pub fn new() -> Self {
        Self::with_clock(Arc::new(system_clock))
    }

    /// Counters that read the time from `clock` (tests move it by hand).
    pub fn with_clock(clock: Clock) -> Self {
        Self {
            windows: Mutex::new(HashMap::new()),
            clock,
            takes: AtomicU64::new(0),
        }
    }

    fn windows(&self) -> MutexGuard<'_, HashMap<Slot, Window>> {
        self.windows.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// How many counters are held (for tests of the pruning).
    pub fn len(&self) -> usize {
        self.windows().len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Drops the windows that are over.
    pub fn prune(&self) {
        let now = (self.clock)();
        self.windows()
            .retain(|(_, length), window| window.start + length > now);
    }
}

#[async_trait]
impl Counters for MemoryCounters {
    async fn take(&self, takes: &[Take]) -> Result<Taken, CounterFailure> {
        if self.takes.fetch_add(1, Ordering::Relaxed) % PRUNE_EVERY == PRUNE_EVERY - 1 {
            self.prune();
        }
        let now = (self.clock)();
        let mut windows = self.windows();
        let mut counters = Vec::with_capacity(takes.len());
        let mut refused_by = None;
        // What earlier takes of this call add to a counter named twice.
        let mut pending: HashMap<Slot, u64> = HashMap::new();
        for (i, take) in takes.iter().enumerate() {
            let length = window_seconds(take.window);
            let start = window_start(now, take.window);
            let slot = (take.key.clone(), length);
            let stored = windows
                .get(&slot)
                .filter(|w| w.start == start)
                .map_or(0, |w| w.used);
            let earlier = pending.get(&slot).copied().unwrap_or(0);
            let used = stored.saturating_add(earlier);
            if refused_by.is_none()
                && used
                    .checked_add(take.amount)
                    .is_none_or(|after| after > take.limit)
            {
                refused_by = Some(i);
            }
            *pending.entry(slot).or_default() += take.amount;
            counters.push(CounterState {
                used,
                limit: take.limit,
                window_start: start,
                resets_at: start + length,
            });
        }
        if refused_by.is_none() {
            for (take, state) in takes.iter().zip(&mut counters) {
                state.used = state.used.saturating_add(take.amount);
                if take.amount == 0 {
                    continue;
                }
                let window = windows
                    .entry((take.key.clone(), window_seconds(take.window)))
                    .or_insert(Window {
                        start: state.window_start,
                        used: 0,
                    });
                if window.start != state.window_start {
                    *window = Window {
                        start: state.window_start,
                        used: 0,
                    };
                }
                window.used = window.used.saturating_add(take.amount);
            }
        }
        Ok(Taken {
            counters,
            refused_by,
            degraded: false,
            now,
        })
    }

    async fn adjust(
        &self,
        key: &str,
        window: Duration,
        start: i64,
        delta: i64,
    ) -> Result<(), CounterFailure> {
        let now = (self.clock)();
        let length = window_seconds(window);
        let current = window_start(now, window);
        let mut windows = self.windows();
        let slot = (key.to_owned(), length);
        match windows.get_mut(&slot) {
            Some(w) if w.start == start => w.used = apply(w.used, delta),
            // The window is current but nothing was taken in it yet.
            Some(w) if start == current && w.start < start => {
                *w = Window {
                    start,
                    used: apply(0, delta),
                };
            }
            None if start == current => {
                windows.insert(
                    slot,
                    Window {
                        start,
                        used: apply(0, delta),
                    },
                );
            }
            // A window that is over (or one that has not begun) limits nothing.
            _ => {}
        }
        Ok(())
    }
}

/// `used + delta`, never below zero.
fn apply(used: u64, delta: i64) -> u64 {
    if delta >= 0 {
        used.saturating_add(delta.unsigned_abs())
    } else {
        used.saturating_sub(delta.unsigned_abs())
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::AtomicI64;

    use super::*;

    const MINUTE: Duration = Duration::from_secs(60);
    const HOUR: Duration = Duration::from_secs(3600);

    /// Counters on a clock the test moves, starting at `start`.
    fn counters(start: i64) -> (MemoryCounters, Arc<AtomicI64>) {
        let now = Arc::new(AtomicI64::new(start));
        let clock = now.clone();
        (
            MemoryCounters::with_clock(Arc::new(move || clock.load(Ordering::SeqCst))),
            now,
        )
    }

    #[tokio::test]
    async fn a_counter_allows_up_to_its_limit_in_a_window() {
        let (c, _) = counters(1_000_000);
        for i in 1..=3 {
            let taken = c.take(&[Take::new("k", MINUTE, 3, 1)]).await.unwrap();
            assert!(taken.allowed(), "take {i}");
            assert_eq!(taken.counters[0].used, i);
            assert_eq!(taken.counters[0].remaining(), 3 - i);
        }
        let refused = c.take(&[Take::new("k", MINUTE, 3, 1)]).await.unwrap();
        assert_eq!(refused.refused_by, Some(0));
        assert_eq!(refused.counters[0].used, 3);
        // 1_000_000 is 40 s into its minute: the window resets in 20 s.
        assert_eq!(refused.counters[0].window_start, 999_960);
        assert_eq!(refused.counters[0].resets_at, 1_000_020);
        assert_eq!(refused.retry_after(), Some(Duration::from_secs(20)));
        assert!(!refused.degraded);
    }

    #[tokio::test]
    async fn a_take_over_several_counters_is_all_or_nothing() {
        let (c, _) = counters(0);
        let takes = |tokens| {
            [
                Take::new("rpm", MINUTE, 100, 1),
                Take::new("tpm", MINUTE, 1000, tokens),
                Take::new("budget", HOUR, 5000, tokens),
            ]
        };
        assert!(c.take(&takes(600)).await.unwrap().allowed());
        // The second would pass the requests and the budget but not the tokens: nothing moves.
        let refused = c.take(&takes(600)).await.unwrap();
        assert_eq!(refused.refused_by, Some(1));
        assert_eq!(
            refused.counters.iter().map(|s| s.used).collect::<Vec<_>>(),
            [1, 600, 600]
        );
        let read = c.take(&takes(0)).await.unwrap();
        assert_eq!(
            read.counters.iter().map(|s| s.used).collect::<Vec<_>>(),
            [2, 600, 600],
            "a read with amount 0 still counts the request of its rpm take"
        );
        assert_eq!(c.read("tpm", MINUTE).await.unwrap().used, 600);
        assert_eq!(c.read("budget", HOUR).await.unwrap().used, 600);
    }

    /// Whether one more of `k`'s window of `window` (limit 1) can be taken.
    async fn takes_one(c: &MemoryCounters, window: Duration) -> bool {
        c.take(&[Take::new("k", window, 1, 1)])
            .await
            .unwrap()
            .allowed()
    }

    #[tokio::test]
    async fn a_counter_named_twice_counts_both_amounts() {
        let (c, _) = counters(0);
        let twice = [Take::new("k", MINUTE, 10, 6), Take::new("k", MINUTE, 10, 6)];
        let refused = c.take(&twice).await.unwrap();
        assert_eq!(refused.refused_by, Some(1));
        assert_eq!(c.read("k", MINUTE).await.unwrap().used, 0);
    }

    #[tokio::test]
    async fn a_new_window_starts_from_zero_and_old_ones_are_pruned() {
        let (c, now) = counters(120);
        assert!(takes_one(&c, MINUTE).await);
        assert!(!takes_one(&c, MINUTE).await);
        now.store(179, Ordering::SeqCst);
        assert!(!takes_one(&c, MINUTE).await);
        now.store(180, Ordering::SeqCst);
        let taken = c.take(&[Take::new("k", MINUTE, 1, 1)]).await.unwrap();
        assert!(taken.allowed());
        assert_eq!(taken.counters[0].window_start, 180);
        assert_eq!(c.len(), 1);
        now.store(240, Ordering::SeqCst);
        c.prune();
        assert!(c.is_empty());
    }

    #[tokio::test]
    async fn windows_of_different_lengths_are_different_counters() {
        let (c, _) = counters(0);
        assert!(takes_one(&c, MINUTE).await);
        assert!(takes_one(&c, HOUR).await);
    }

    #[tokio::test]
    async fn an_adjustment_settles_a_reservation_never_below_zero() {
        let (c, now) = counters(3600);
        let taken = c
            .take(&[Take::new("tpm", MINUTE, 1000, 800)])
            .await
            .unwrap();
        let start = taken.counters[0].window_start;
        // The answer used 300 tokens, not the 800 reserved.
        c.adjust("tpm", MINUTE, start, -500).await.unwrap();
        assert_eq!(c.read("tpm", MINUTE).await.unwrap().used, 300);
        assert!(
            c.take(&[Take::new("tpm", MINUTE, 1000, 700)])
                .await
                .unwrap()
                .allowed()
        );
        // More than was counted: zero, not negative.
        c.adjust("tpm", MINUTE, start, -5000).await.unwrap();
        assert_eq!(c.read("tpm", MINUTE).await.unwrap().used, 0);
        // Over the limit after the fact is allowed (the real figure); takes then refuse.
        c.adjust("tpm", MINUTE, start, 1200).await.unwrap();
        assert!(
            !c.take(&[Take::new("tpm", MINUTE, 1000, 0)])
                .await
                .unwrap()
                .allowed()
        );
        // Once the window moved on, a correction of the old one changes nothing now.
        now.store(3660, Ordering::SeqCst);
        assert!(
            c.take(&[Take::new("tpm", MINUTE, 1000, 10)])
                .await
                .unwrap()
                .allowed()
        );
        c.adjust("tpm", MINUTE, start, 900).await.unwrap();
        assert_eq!(c.read("tpm", MINUTE).await.unwrap().used, 10);
        // A correction of the current window before any take in it counts.
        c.adjust("fresh", MINUTE, 3660, 5).await.unwrap();
        assert_eq!(c.read("fresh", MINUTE).await.unwrap().used, 5);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn concurrent_takes_from_many_tasks_allow_exactly_the_limit() {
        let (c, _) = counters(0);
        let c = Arc::new(c);
        let tasks: Vec<_> = (0..2000)
            .map(|_| {
                let c = c.clone();
                tokio::spawn(async move {
                    c.take(&[
                        Take::new("k", HOUR, 700, 1),
                        Take::new("b", HOUR, 10_000, 3),
                    ])
                    .await
                    .unwrap()
                    .allowed()
                })
            })
            .collect();
        let mut allowed = 0;
        for task in tasks {
            allowed += u64::from(task.await.unwrap());
        }
        assert_eq!(allowed, 700);
        assert_eq!(c.read("k", HOUR).await.unwrap().used, 700);
        assert_eq!(c.read("b", HOUR).await.unwrap().used, 2100);
    }

    #[test]
    fn corrections_saturate() {
        assert_eq!(apply(5, -7), 0);
        assert_eq!(apply(5, 7), 12);
        assert_eq!(apply(u64::MAX, 1), u64::MAX);
        assert_eq!(apply(0, i64::MIN), 0);
    }
}
