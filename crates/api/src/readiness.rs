//! The dependency checks behind `GET /ready`, shared between probes.
//!
//! `/ready` needs no credential, and each check is a database query and a request to the
//! proxy-router. Run per probe, a flood of probes would be passed on to both; shared, it costs
//! them at most one check per [`REUSE_FOR`] per replica, and an answer is never older than that.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::Mutex;
use tokio::time::Instant;

use crate::dto::{DatabaseState, MarketplaceState};

/// How long a finished check answers later probes. Orchestrators probe every few seconds,
/// so a second of lag does not delay taking a replica out of rotation in practice.
pub const REUSE_FOR: Duration = Duration::from_secs(1);

/// What the last check found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Dependencies {
    pub database: DatabaseState,
    pub marketplace: MarketplaceState,
}

/// The latest check and when it finished. Cloning shares it.
#[derive(Clone, Default)]
pub struct ReadinessChecks {
    last: Arc<Mutex<Option<(Instant, Dependencies)>>>,
}

impl ReadinessChecks {
    /// The latest check if it finished less than [`REUSE_FOR`] ago, otherwise the result of
    /// `check`. The lock is held while `check` runs, so probes arriving meanwhile wait for its
    /// result instead of starting their own.
    pub async fn current(&self, check: impl Future<Output = Dependencies>) -> Dependencies {
        let mut last = self.last.lock().await;
        if let Some((at, found)) = *last
            && at.elapsed() < REUSE_FOR
        {
            return found;
        }
        let found = check.await;
        *last = Some((Instant::now(), found));
        found
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};

    use super::*;

    const HEALTHY: Dependencies = Dependencies {
        database: DatabaseState::Healthy,
        marketplace: MarketplaceState::Healthy,
    };

    #[tokio::test(start_paused = true)]
    async fn concurrent_and_recent_probes_share_one_check_and_a_later_one_checks_again() {
        let checks = ReadinessChecks::default();
        let runs = AtomicUsize::new(0);
        let check = || async {
            runs.fetch_add(1, Ordering::SeqCst);
            tokio::time::sleep(Duration::from_millis(50)).await;
            HEALTHY
        };

        let found = futures_util::future::join_all((0..20).map(|_| checks.current(check()))).await;
        assert!(found.iter().all(|f| *f == HEALTHY));
        assert_eq!(runs.load(Ordering::SeqCst), 1);

        tokio::time::advance(REUSE_FOR - Duration::from_millis(1)).await;
        checks.current(check()).await;
        assert_eq!(runs.load(Ordering::SeqCst), 1);

        tokio::time::advance(Duration::from_millis(1)).await;
        checks.current(check()).await;
        assert_eq!(runs.load(Ordering::SeqCst), 2);
    }
}
