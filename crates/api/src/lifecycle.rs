//! Where the process is in its life, for the handlers that care: `/ready` answers 503 once
//! shutdown has begun, and relayed streams end with an error event when the grace period is
//! about to run out (rather than being cut without a word).

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use tokio::sync::watch;

#[derive(Clone)]
pub struct Lifecycle {
    draining: Arc<AtomicBool>,
    streams_end: watch::Sender<bool>,
}

impl Default for Lifecycle {
    fn default() -> Self {
        Self::new()
    }
}

impl Lifecycle {
    pub fn new() -> Self {
        Self {
            draining: Arc::new(AtomicBool::new(false)),
            streams_end: watch::Sender::new(false),
        }
    }

    /// Shutdown has begun: stop advertising readiness.
    pub fn begin_draining(&self) {
        self.draining.store(true, Ordering::SeqCst);
    }

    pub fn is_draining(&self) -> bool {
        self.draining.load(Ordering::SeqCst)
    }

    /// The grace period is nearly over: every relayed stream sends its terminal error event
    /// and ends.
    pub fn end_streams(&self) {
        self.begin_draining();
        self.streams_end.send_replace(true);
    }

    /// Resolves once [`Self::end_streams`] has been called (at once if it already was).
    pub fn streams_ending(&self) -> impl Future<Output = ()> + Send + 'static {
        let mut rx = self.streams_end.subscribe();
        async move {
            // An error means the sender is gone, i.e. the application: end too.
            let _ = rx.wait_for(|ending| *ending).await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn streams_see_the_end_whether_they_wait_before_or_after_it() {
        let lifecycle = Lifecycle::new();
        let early = tokio::spawn(lifecycle.streams_ending());
        assert!(!lifecycle.is_draining());
        lifecycle.end_streams();
        assert!(lifecycle.is_draining());
        early.await.unwrap();
        // A stream that starts waiting afterwards does not hang.
        tokio::time::timeout(
            std::time::Duration::from_secs(1),
            lifecycle.streams_ending(),
        )
        .await
        .unwrap();
    }
}
