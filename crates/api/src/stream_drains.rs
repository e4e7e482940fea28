//! Streams a client left, read on to their final usage.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{OwnedSemaphorePermit, Semaphore};

/// Streams a client left are read on to their final usage, so they are charged on the
/// provider's count: at most `permits` at once (beyond, the stream is closed at once and
/// charged on the text delivered, marked estimated), each for at most `limit`.
#[derive(Clone)]
pub struct StreamDrains {
    permits: Arc<Semaphore>,
    limit: Duration,
}

impl StreamDrains {
    pub fn new(at_once: usize, limit: Duration) -> Self {
        Self {
            permits: Arc::new(Semaphore::new(at_once)),
            limit,
        }
    }
}

impl StreamDrains {
    /// A drain's place, when one is free.
    pub fn try_take(&self) -> Option<OwnedSemaphorePermit> {
        self.permits.clone().try_acquire_owned().ok()
    }

    /// How long a drain reads at most.
    pub fn limit(&self) -> Duration {
        self.limit
    }
}
