//! What the simulator saw, for assertions and the benchmark.

use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::time::{SystemTime, UNIX_EPOCH};

/// A snapshot of the simulator's counters (`SimHandle::counters`, `GET /__sim/counters`).
#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Counters {
    /// Requests on the proxy-router routes (the `/__sim/*` control surface is not counted).
    pub requests: u64,
    pub sessions_opened: u64,
    /// `GET /blockchain/balance` answers.
    #[serde(default)]
    pub balance_reads: u64,
    pub sessions_closed: u64,
    pub approvals: u64,
    /// Authenticated requests to `POST /v1/chat/completions`, failed ones included.
    pub chat_requests: u64,
    /// Chat streams currently being produced.
    pub streams_active: u64,
    /// Chat streams whose body was produced to the end (or cut cleanly by a fault).
    pub streams_completed: u64,
    /// Chat streams dropped before they finished: the client went away.
    pub streams_cancelled: u64,
    /// Wall-clock unix milliseconds of the latest cancellation.
    pub last_cancel_unix_ms: Option<u64>,
    /// TCP connections currently open.
    pub connections_open: u64,
    /// Requests a fault was applied to.
    pub faults_applied: u64,
    /// The `X-Request-Id` header of the latest chat request, if it had one.
    #[serde(default)]
    pub last_chat_request_id: Option<String>,
    /// Chat requests that found their session busy and had to wait for it.
    #[serde(default)]
    pub session_waits: u64,
    /// The most chat requests one session ever had at once, served or waiting: above 1, a
    /// client sent a request to a session that was still serving another.
    #[serde(default)]
    pub max_session_concurrency: u64,
    /// Opens whose caller went away before the answer (they completed all the same).
    #[serde(default)]
    pub opens_caller_gone: u64,
    /// Values the go-openai rewrite dropped from chat bodies (see `SimHandle::last_forwarded`).
    #[serde(default)]
    pub forwarded_fields_dropped: u64,
    /// Sessions the node replaced after a provider failure (`honour_failover` only).
    #[serde(default)]
    pub failovers: u64,
}

/// The live counters: plain relaxed atomics, cheap enough for the benchmark baseline.
#[derive(Default)]
pub(crate) struct CounterCells {
    pub requests: AtomicU64,
    pub sessions_opened: AtomicU64,
    pub balance_reads: AtomicU64,
    pub sessions_closed: AtomicU64,
    pub approvals: AtomicU64,
    pub chat_requests: AtomicU64,
    pub streams_active: AtomicU64,
    pub streams_completed: AtomicU64,
    pub streams_cancelled: AtomicU64,
    /// 0 = never.
    pub last_cancel_unix_ms: AtomicU64,
    pub connections_open: AtomicU64,
    pub faults_applied: AtomicU64,
    pub last_chat_request_id: std::sync::Mutex<Option<String>>,
    pub session_waits: AtomicU64,
    pub max_session_concurrency: AtomicU64,
    pub opens_caller_gone: AtomicU64,
    pub forwarded_fields_dropped: AtomicU64,
    pub failovers: AtomicU64,
}

pub(crate) fn bump(cell: &AtomicU64) {
    cell.fetch_add(1, Relaxed);
}

pub(crate) fn drop_one(cell: &AtomicU64) {
    cell.fetch_sub(1, Relaxed);
}

impl CounterCells {
    pub fn record_cancel(&self) {
        bump(&self.streams_cancelled);
        let ms = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(1, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX));
        self.last_cancel_unix_ms.store(ms, Relaxed);
    }

    pub fn snapshot(&self) -> Counters {
        let last = self.last_cancel_unix_ms.load(Relaxed);
        Counters {
            requests: self.requests.load(Relaxed),
            sessions_opened: self.sessions_opened.load(Relaxed),
            balance_reads: self.balance_reads.load(Relaxed),
            sessions_closed: self.sessions_closed.load(Relaxed),
            approvals: self.approvals.load(Relaxed),
            chat_requests: self.chat_requests.load(Relaxed),
            streams_active: self.streams_active.load(Relaxed),
            streams_completed: self.streams_completed.load(Relaxed),
            streams_cancelled: self.streams_cancelled.load(Relaxed),
            last_cancel_unix_ms: (last != 0).then_some(last),
            connections_open: self.connections_open.load(Relaxed),
            faults_applied: self.faults_applied.load(Relaxed),
            last_chat_request_id: self
                .last_chat_request_id
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner)
                .clone(),
            session_waits: self.session_waits.load(Relaxed),
            max_session_concurrency: self.max_session_concurrency.load(Relaxed),
            opens_caller_gone: self.opens_caller_gone.load(Relaxed),
            forwarded_fields_dropped: self.forwarded_fields_dropped.load(Relaxed),
            failovers: self.failovers.load(Relaxed),
        }
    }
}
