//! One session's queue: the node serves `session_concurrency` chat requests of a session at a
//! time (one, since 30a2238f), the others wait in arrival order with nothing written to them
//! (`proxyapi/session_semaphore.go:27-30,50`, a `golang.org/x/sync/semaphore.Weighted` of 1,
//! which is FIFO; acquired at `proxy_sender.go:662-668`, after the session was validated).

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};

use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use crate::counters::{CounterCells, bump};

pub(crate) struct Gate {
    /// `None`: no limit (nodes before 30a2238f).
    seats: Option<Arc<Semaphore>>,
    /// Requests at this session right now, served or waiting.
    present: AtomicU64,
}

impl Gate {
    pub fn new(limit: Option<u32>) -> Arc<Self> {
        Arc::new(Self {
            // tokio's semaphore is fair: waiters are served first come, first served.
            seats: limit.map(|n| Arc::new(Semaphore::new(n.max(1) as usize))),
            present: AtomicU64::new(0),
        })
    }

    /// Queues for the session; the returned turn holds it until dropped. Dropping the future
    /// while it waits leaves the queue.
    pub async fn take_turn(self: Arc<Self>, counters: &CounterCells) -> Turn {
        let present = self.present.fetch_add(1, Relaxed) + 1;
        counters.max_session_concurrency.fetch_max(present, Relaxed);
        // Built before waiting so that leaving the queue is counted out too.
        let mut turn = Turn {
            seat: None,
            gate: Arc::clone(&self),
        };
        if let Some(seats) = &self.seats {
            turn.seat = Some(match Arc::clone(seats).try_acquire_owned() {
                Ok(seat) => seat,
                Err(_) => {
                    bump(&counters.session_waits);
                    // The semaphore is never closed.
                    Arc::clone(seats)
                        .acquire_owned()
                        .await
                        .expect("session semaphores are never closed")
                }
            });
        }
        turn
    }
}

/// A request's hold on its session.
pub(crate) struct Turn {
    seat: Option<OwnedSemaphorePermit>,
    gate: Arc<Gate>,
}

impl Drop for Turn {
    fn drop(&mut self) {
        self.seat.take();
        self.gate.present.fetch_sub(1, Relaxed);
    }
}
