//! Everything one simulator shares between its connections.

use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use tokio::sync::watch;

use crate::auth::BasicAuth;
use crate::catalog::Catalog;
use crate::config::SimConfig;
use crate::counters::CounterCells;
use crate::faults::FaultTable;
use crate::ids::{fnv1a, hex_from_seed};
use crate::sessions::SessionBook;

pub(crate) struct Shared {
    pub catalog: Catalog,
    pub auth: BasicAuth,
    pub wallet: String,
    /// `{"address":"0x…"}`, rendered once.
    pub wallet_json: Bytes,
    pub done_marker: bool,
    /// `None`: every method allowed.
    pub permissions: Option<Vec<String>>,
    pub store_chat_context: bool,
    chunk_delay_ns: AtomicU64,
    /// Seconds the chain clock runs ahead of the wall clock.
    clock_offset_s: AtomicU64,
    pub counters: CounterCells,
    pub faults: FaultTable,
    pub sessions: Mutex<SessionBook>,
    /// Makes session and transaction ids unique per simulator and per call.
    id_seed: u64,
    id_seq: AtomicU64,
    pub started: Instant,
    pub shutdown: watch::Sender<bool>,
}

impl Shared {
    pub fn new(config: SimConfig) -> Self {
        let started = Instant::now();
        let wall_ns = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos());
        let wallet_json = Bytes::from(
            serde_json::to_vec(&serde_json::json!({ "address": config.wallet }))
                .unwrap_or_default(),
        );
        Self {
            catalog: Catalog::new(config.models),
            auth: BasicAuth::new(&config.user, &config.password),
            wallet: config.wallet,
            wallet_json,
            done_marker: config.done_marker,
            permissions: config.permissions,
            store_chat_context: config.store_chat_context,
            chunk_delay_ns: AtomicU64::new(duration_ns(config.chunk_delay)),
            clock_offset_s: AtomicU64::new(0),
            counters: CounterCells::default(),
            faults: FaultTable::default(),
            sessions: Mutex::new(SessionBook::default()),
            id_seed: fnv1a(&wall_ns.to_le_bytes()) ^ u64::from(std::process::id()),
            id_seq: AtomicU64::new(0),
            started,
            shutdown: watch::Sender::new(false),
        }
    }

    /// The simulated chain's clock, unix seconds.
    pub fn now_unix(&self) -> u64 {
        let wall = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        wall + self.clock_offset_s.load(Relaxed)
    }

    pub fn advance_clock(&self, by: Duration) {
        // Rounded up so that advancing by any non-zero amount moves the chain clock.
        let secs = by.as_secs() + u64::from(by.subsec_nanos() > 0);
        self.clock_offset_s.fetch_add(secs, Relaxed);
    }

    pub fn chunk_delay(&self) -> Duration {
        Duration::from_nanos(self.chunk_delay_ns.load(Relaxed))
    }

    pub fn set_chunk_delay(&self, d: Duration) {
        self.chunk_delay_ns.store(duration_ns(d), Relaxed);
    }

    /// A never-repeating random-looking `0x` + 64 hex (session ids, transaction hashes).
    pub fn fresh_hash(&self) -> String {
        let n = self.id_seq.fetch_add(1, Relaxed);
        hex_from_seed(self.id_seed ^ n.wrapping_mul(0xA24B_AED4_963E_E407), 64)
    }

    pub fn sessions(&self) -> std::sync::MutexGuard<'_, SessionBook> {
        // A panic while holding the lock cannot leave the book half-updated in a way that
        // matters to a test double, so poisoning is ignored.
        self.sessions.lock().unwrap_or_else(|e| e.into_inner())
    }
}

fn duration_ns(d: Duration) -> u64 {
    u64::try_from(d.as_nanos()).unwrap_or(u64::MAX)
}
