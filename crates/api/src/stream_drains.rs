//! Streams a client left, read on to their final usage.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::time::Duration;

use tokio::sync::{OwnedSemaphorePermit, Semaphore};

/// Streams a client left are read on to their final usage, so they are charged on the
/// provider's count: at most `permits` at once (beyond, the stream is closed at once and
/// charged on the text delivered, marked estimated), each for at most `limit`.
#[derive(Clone)]
pub struct StreamDrains {
    permits: Arc<Semaphore>,
    limit: Duration,
    /// Streams read on after their client left, and those closed at once for want of a drain.
    pub started: Arc<AtomicU64>,
    pub skipped: Arc<AtomicU64>,
}

impl StreamDrains {
    pub fn new(at_once: usize, limit: Duration) -> Self {
        Self {
            permits: Arc::new(Semaphore::new(at_once)),
            limit,
            started: Arc::default(),
            skipped: Arc::default(),
        }
    }
}

impl StreamDrains {
    /// A drain's place, when one is free.
    pub fn try_take(&self) -> Option<OwnedSemaphorePermit> {
        let permit = self.permits.clone().try_acquire_owned().ok();
        let counter = if permit.is_some() {
            &self.started
        } else {
            &self.skipped
        };
        counter.fetch_add(1, Relaxed);
        permit
    }

    /// How long a drain reads at most.
    pub fn limit(&self) -> Duration {
        self.limit
    }
}
