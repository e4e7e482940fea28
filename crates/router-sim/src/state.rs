//! Everything one simulator shares between its connections.

use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use tokio::sync::watch;

use crate::auth::BasicAuth;
use crate::catalog::Catalog;
use crate::config::{ProviderLatency, SimConfig};
use crate::counters::CounterCells;
use crate::faults::FaultTable;
use crate::ids::{fnv1a, hex_from_seed};
use crate::sessions::SessionBook;

/// What the simulated wallet holds until a test says otherwise: 1 ETH and 1,000,000 MOR.
const DEFAULT_ETH_BALANCE: u128 = 1_000_000_000_000_000_000;
const DEFAULT_MOR_BALANCE: u128 = 1_000_000 * DEFAULT_ETH_BALANCE;

pub(crate) struct Shared {
    pub catalog: Catalog,
    pub auth: BasicAuth,
    pub wallet: String,
    /// `{"address":"0x…"}`, rendered once.
    pub wallet_json: Bytes,
    pub done_marker: bool,
    pub store_chat_context: bool,
    /// The node behaviours a test can turn back (see `SimConfig`).
    pub session_concurrency: Option<u32>,
    pub min_session_seconds: u64,
    pub open_latency: Duration,
    pub provider_latency: ProviderLatency,
    pub usage_without_include_usage: bool,
    pub node_usage_fields: bool,
    pub rewrite_requests: bool,
    pub honour_failover: bool,
    /// Providers (lower-case addresses) whose endpoint refuses connections.
    down_providers: Mutex<std::collections::HashSet<String>>,
    /// The wallet's (ETH, MOR) in wei, for `GET /blockchain/balance`.
    balance: Mutex<(u128, u128)>,
    /// `Some(reason)`: `/healthcheck` answers 503 `degraded` with `reason` for its store.
    degraded: Mutex<Option<String>>,
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
            auth: BasicAuth::new(&config),
            catalog: Catalog::new(config.models),
            wallet: config.wallet,
            wallet_json,
            done_marker: config.done_marker,
            store_chat_context: config.store_chat_context,
            session_concurrency: config.session_concurrency,
            min_session_seconds: config.min_session_seconds,
            open_latency: config.open_latency,
            provider_latency: config.provider_latency,
            usage_without_include_usage: config.usage_without_include_usage,
            node_usage_fields: config.node_usage_fields,
            rewrite_requests: config.rewrite_requests,
            honour_failover: config.honour_failover,
            down_providers: Mutex::default(),
            balance: Mutex::new((DEFAULT_ETH_BALANCE, DEFAULT_MOR_BALANCE)),
            degraded: Mutex::new(None),
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

    /// A request id as the node generates one: 8 hex (`lib/context.go:10-14`).
    pub fn fresh_request_id(&self) -> String {
        let n = self.id_seq.fetch_add(1, Relaxed);
        hex_from_seed(self.id_seed ^ n.wrapping_mul(0x9E37_79B9_7F4A_7C15), 8)[2..].to_owned()
    }

    pub fn provider_down(&self, provider: &str) -> bool {
        self.down_providers
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .contains(&provider.to_ascii_lowercase())
    }

    pub fn set_provider_down(&self, provider: &str, down: bool) {
        let mut set = self
            .down_providers
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if down {
            set.insert(provider.to_ascii_lowercase());
        } else {
            set.remove(&provider.to_ascii_lowercase());
        }
    }

    /// The wallet's (ETH, MOR), wei.
    pub fn balance(&self) -> (u128, u128) {
        *self
            .balance
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    pub fn set_mor_balance(&self, mor: u128) {
        self.balance
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .1 = mor;
    }

    pub fn degraded(&self) -> Option<String> {
        self.degraded
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone()
    }

    pub fn set_degraded(&self, reason: Option<String>) {
        *self
            .degraded
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = reason;
    }

    pub fn sessions(&self) -> std::sync::MutexGuard<'_, SessionBook> {
        // A panic while holding the lock cannot leave the book half-updated in a way that
        // matters to a test double, so poisoning is ignored.
        self.sessions.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// Waits `d`; a zero wait returns at once (tokio would still round it up to its next timer
/// tick, a millisecond, which the benchmark would count as the simulator's).
pub(crate) async fn pause(d: Duration) {
    if !d.is_zero() {
        tokio::time::sleep(d).await;
    }
}

fn duration_ns(d: Duration) -> u64 {
    u64::try_from(d.as_nanos()).unwrap_or(u64::MAX)
}
