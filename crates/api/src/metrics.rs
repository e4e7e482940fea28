//! What `GET /metrics` reports, in the Prometheus/OpenMetrics text format.
//!
//! One [`Metrics`] per application (not a process-wide registry), so two gateways in one
//! process — the test suite — count separately.

use std::sync::atomic::AtomicU64;
use std::time::Duration;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::{Registry, Unit};

use crate::secret_token::SecretToken;

mod stake;
pub use stake::{LimitLabels, StakeMetrics};

/// A request as counted: the route's pattern (bounded: `unmatched` for every unknown path),
/// the method and the status.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RequestLabels {
    pub operation: String,
    pub method: String,
    pub status: u16,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct OperationLabels {
    pub operation: String,
}

/// One kind of call to the proxy-router (`chat`, `open_model_session`, …).
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct UpstreamLabels {
    pub call: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct UpstreamErrorLabels {
    pub call: &'static str,
    /// `unreachable`, `timeout`, `rejected`, … (the marketplace error's kind).
    pub kind: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct PoolLabels {
    /// `in_use` or `idle`.
    pub state: &'static str,
}

/// One model's shared session pool, by state: on this replica `idle`, `busy`, `acquiring`
/// (taking or opening one more) and `waiting` (requests queued); across replicas `active`,
/// `leased` and `opening`.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct SessionPoolLabels {
    pub model: String,
    pub state: &'static str,
}

/// What happened to a pool claim or open: `immediate`, `queued`, `refused`; `ok`, `failed`,
/// `leased` (an idle session taken over from the shared pool), `closed_idle`.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct OutcomeLabels {
    pub outcome: &'static str,
}

/// One of the supervised background tasks (`session_sweep`, `revocation_log`, …).
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct TaskLabels {
    pub task: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RefusalLabels {
    /// `overall` or `client`: the connection cap that refused.
    pub cap: &'static str,
}

/// What the failure policy decided for a take the shared counters could not count: `allowed`
/// (fail-open, degraded) or `refused` (fail-closed).
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct FallbackLabels {
    pub decision: &'static str,
}

type HistogramFamily<L> = Family<L, Histogram, fn() -> Histogram>;

/// The gateway's instruments. Cloning shares them.
#[derive(Clone)]
pub struct Metrics {
    registry: std::sync::Arc<Registry>,
    pub requests: Family<RequestLabels, Counter>,
    pub request_duration: HistogramFamily<OperationLabels>,
    pub upstream_duration: HistogramFamily<UpstreamLabels>,
    pub upstream_errors: Family<UpstreamErrorLabels, Counter>,
    /// Time spent in the gateway on a chat request, without the wait for the provider.
    pub overhead: Histogram,
    pub active_streams: Gauge,
    pub open_sessions: Gauge,
    pub db_connections: Family<PoolLabels, Gauge>,
    pub db_pool_max: Gauge,
    /// When each background task last succeeded (Unix seconds).
    pub task_last_success: Family<TaskLabels, Gauge<f64, AtomicU64>>,
    pub task_failures: Family<TaskLabels, Counter>,
    pub task_duration: HistogramFamily<TaskLabels>,
    /// Runs of a singleton task skipped because another replica held it.
    pub task_skipped: Family<TaskLabels, Counter>,
    /// Client connections open (set when the exposition is rendered).
    pub open_connections: Gauge,
    /// Connections (and proxied requests) answered 503 by a connection cap.
    pub refused_connections: Family<RefusalLabels, Counter>,
    pub session_pool: Family<SessionPoolLabels, Gauge>,
    pub pool_claims: Family<OutcomeLabels, Counter>,
    pub pool_opens: Family<OutcomeLabels, Counter>,
    pub pool_queue_wait: Histogram,
    pub pool_bid_walk_steps: Counter,
    pub pool_failovers: Counter,
    /// Credit holds, by outcome (placed, insufficient).
    pub credit_holds: Family<OutcomeLabels, Counter>,
    /// How holds ended (charged, estimated, voided, reconciled).
    pub credit_settlements: Family<OutcomeLabels, Counter>,
    /// Streams a client left: read on to their count (drained) or closed at once (skipped).
    pub stream_drains: Family<OutcomeLabels, Counter>,
    /// Chats the rate limits and budgets decided on, by outcome.
    pub rate_limit_decisions: Family<OutcomeLabels, Counter>,
    pub stake_locked: Gauge<f64, AtomicU64>,
    /// Calls to the shared counters (Redis) that failed or timed out.
    pub counter_store_failures: Counter,
    /// Takes the failure policy decided without the shared counters.
    pub counter_fallbacks: Family<FallbackLabels, Counter>,
    /// 1 while the shared counters' circuit breaker is open.
    pub counter_breaker_open: Gauge,
    /// The operator's stake caps.
    pub stake: StakeMetrics,
}

/// 0.5 ms … ~60 s, for whole requests and upstream calls.
fn latency_histogram() -> Histogram {
    Histogram::new(exponential_buckets(0.000_5, 2.0, 18))
}

/// 1 ms … ~9 min, for background tasks (a revocation-log read to a long session sweep).
fn task_histogram() -> Histogram {
    Histogram::new(exponential_buckets(0.001, 2.0, 20))
}

/// 10 µs … ~80 ms: the gateway's own share is meant to be tens of microseconds.
fn overhead_histogram() -> Histogram {
    Histogram::new(exponential_buckets(0.000_01, 2.0, 14))
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    pub fn new() -> Self {
        let requests = Family::<RequestLabels, Counter>::default();
        let request_duration =
            HistogramFamily::<OperationLabels>::new_with_constructor(latency_histogram);
        let upstream_duration =
            HistogramFamily::<UpstreamLabels>::new_with_constructor(latency_histogram);
        let upstream_errors = Family::<UpstreamErrorLabels, Counter>::default();
        let overhead = overhead_histogram();
        let active_streams = Gauge::default();
        let open_sessions = Gauge::default();
        let db_connections = Family::<PoolLabels, Gauge>::default();
        let db_pool_max = Gauge::default();
        let task_last_success = Family::<TaskLabels, Gauge<f64, AtomicU64>>::default();
        let task_failures = Family::<TaskLabels, Counter>::default();
        let task_duration = HistogramFamily::<TaskLabels>::new_with_constructor(task_histogram);
        let task_skipped = Family::<TaskLabels, Counter>::default();
        let open_connections = Gauge::default();
        let refused_connections = Family::<RefusalLabels, Counter>::default();
        let session_pool = Family::<SessionPoolLabels, Gauge>::default();
        let pool_claims = Family::<OutcomeLabels, Counter>::default();
        let pool_opens = Family::<OutcomeLabels, Counter>::default();
        let pool_queue_wait = latency_histogram();
        let pool_bid_walk_steps = Counter::default();
        let pool_failovers = Counter::default();
        let credit_holds = Family::<OutcomeLabels, Counter>::default();
        let rate_limit_decisions = Family::<OutcomeLabels, Counter>::default();
        let credit_settlements = Family::<OutcomeLabels, Counter>::default();
        let stream_drains = Family::<OutcomeLabels, Counter>::default();
        let stake_locked = Gauge::<f64, AtomicU64>::default();
        let counter_store_failures = Counter::default();
        let counter_fallbacks = Family::<FallbackLabels, Counter>::default();
        let counter_breaker_open = Gauge::default();

        let mut registry = Registry::with_prefix("morpheus");
        registry.register(
            "http_requests",
            "HTTP requests answered, by operation, method and status",
            requests.clone(),
        );
        registry.register_with_unit(
            "http_request_duration",
            "Time to the response head, by operation",
            Unit::Seconds,
            request_duration.clone(),
        );
        registry.register_with_unit(
            "upstream_request_duration",
            "Time to the proxy-router's response head, by call",
            Unit::Seconds,
            upstream_duration.clone(),
        );
        registry.register(
            "upstream_errors",
            "Failed proxy-router calls, by call and kind",
            upstream_errors.clone(),
        );
        registry.register_with_unit(
            "gateway_overhead",
            "Time a chat request spends in the gateway, excluding the wait for the provider",
            Unit::Seconds,
            overhead.clone(),
        );
        registry.register(
            "active_streams",
            "Chat streams being relayed",
            active_streams.clone(),
        );
        registry.register(
            "open_sessions",
            "Marketplace sessions recorded as active (all replicas)",
            open_sessions.clone(),
        );
        registry.register(
            "db_pool_connections",
            "Database connections of this replica's pool, by state",
            db_connections.clone(),
        );
        registry.register(
            "db_pool_max_connections",
            "Size limit of this replica's database pool",
            db_pool_max.clone(),
        );
        registry.register_with_unit(
            "task_last_success_timestamp",
            "When each background task last succeeded on this replica (Unix time)",
            Unit::Seconds,
            task_last_success.clone(),
        );
        registry.register(
            "task_failures",
            "Failed runs of each background task on this replica",
            task_failures.clone(),
        );
        registry.register_with_unit(
            "task_duration",
            "How long each run of a background task took",
            Unit::Seconds,
            task_duration.clone(),
        );
        registry.register(
            "task_skipped",
            "Runs of a singleton background task left to another replica that held it",
            task_skipped.clone(),
        );
        registry.register(
            "open_connections",
            "Client connections open on the main listener",
            open_connections.clone(),
        );
        registry.register(
            "refused_connections",
            "Connections (behind a trusted proxy: requests) answered 503 by a connection cap, by cap",
            refused_connections.clone(),
        );
        registry.register(
            "session_pool",
            "Pooled marketplace sessions by model and state: idle, busy, acquiring and waiting \
             requests on this replica; active, leased and opening across replicas",
            session_pool.clone(),
        );
        registry.register(
            "session_pool_claims",
            "Requests that asked the session pool, by outcome (immediate, queued, refused)",
            pool_claims.clone(),
        );
        registry.register(
            "session_pool_acquisitions",
            "Sessions the pool opened (ok, failed), took over idle from other replicas \
             (leased) or closed after the idle grace (closed_idle)",
            pool_opens.clone(),
        );
        registry.register_with_unit(
            "session_pool_queue_wait",
            "How long queued requests waited for a pooled session",
            Unit::Seconds,
            pool_queue_wait.clone(),
        );
        registry.register(
            "session_pool_bid_walk_steps",
            "Bids pooled opens tried (more than one per open when providers refuse)",
            pool_bid_walk_steps.clone(),
        );
        registry.register(
            "session_pool_failovers",
            "Requests moved before their first byte off a session whose provider could not serve it",
            pool_failovers.clone(),
        );
        registry.register(
            "credit_holds",
            "Credit holds placed before chats, by outcome (placed, insufficient: answered 402)",
            credit_holds.clone(),
        );
        registry.register(
            "credit_settlements",
            "How credit holds ended: charged on the provider's count, estimated on the text \
             delivered, voided (nothing served), reconciled (voided, left by a dead process)",
            credit_settlements.clone(),
        );
        registry.register(
            "rate_limit_decisions",
            "Chats the rate limits and key budgets decided on: admitted (counted), \
             refused_requests, refused_tokens, refused_budget, unchecked (let through \
             uncounted: the counters were unreachable), unavailable (refused for that)",
            rate_limit_decisions.clone(),
        );
        registry.register(
            "stream_drains",
            "Streams a client left: read on to their final usage (drained) or closed at once \
             for want of a drain (skipped)",
            stream_drains.clone(),
        );
        registry.register(
            "stake_locked_mor",
            "MOR staked in the sessions the chain reported open at the last session sweep \
             (set by the replica that ran it)",
            stake_locked.clone(),
        );
        registry.register(
            "counter_store_failures",
            "Calls to the shared counters (Redis) that failed or timed out on this replica",
            counter_store_failures.clone(),
        );
        registry.register(
            "counter_fallbacks",
            "Limit checks decided without the shared counters, by the failure policy's decision \
             (allowed: fail-open, not counted; refused: fail-closed)",
            counter_fallbacks.clone(),
        );
        registry.register(
            "counter_breaker_open",
            "1 while this replica's circuit breaker keeps it off the shared counters (Redis)",
            counter_breaker_open.clone(),
        );
        let stake = StakeMetrics::register(&mut registry);
        Self {
            registry: std::sync::Arc::new(registry),
            requests,
            request_duration,
            upstream_duration,
            upstream_errors,
            overhead,
            active_streams,
            open_sessions,
            db_connections,
            db_pool_max,
            task_last_success,
            task_failures,
            task_duration,
            task_skipped,
            open_connections,
            refused_connections,
            session_pool,
            pool_claims,
            pool_opens,
            pool_queue_wait,
            pool_bid_walk_steps,
            pool_failovers,
            credit_holds,
            credit_settlements,
            stream_drains,
            rate_limit_decisions,
            stake_locked,
            counter_store_failures,
            counter_fallbacks,
            counter_breaker_open,
            stake,
        }
    }

    /// The text exposition (OpenMetrics 1.0, which Prometheus reads).
    pub fn encode(&self) -> String {
        let mut out = String::with_capacity(8 * 1024);
        // Writing into a String cannot fail.
        let _ = prometheus_client::encoding::text::encode(&mut out, &self.registry);
        out
    }

    pub fn observe_request(&self, operation: &str, method: &str, status: u16, took: Duration) {
        self.requests
            .get_or_create(&RequestLabels {
                operation: operation.to_owned(),
                method: method.to_owned(),
                status,
            })
            .inc();
        self.request_duration
            .get_or_create(&OperationLabels {
                operation: operation.to_owned(),
            })
            .observe(took.as_secs_f64());
    }

    /// Keeps [`Self::active_streams`] up while the guard lives.
    pub fn stream_started(&self) -> ActiveStream {
        self.active_streams.inc();
        ActiveStream(self.active_streams.clone())
    }
}

/// One relayed stream; dropping it (stream finished or client gone) counts it out.
pub struct ActiveStream(Gauge);

impl Drop for ActiveStream {
    fn drop(&mut self) {
        self.0.dec();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_exposition_names_every_instrument() {
        let metrics = Metrics::new();
        metrics.observe_request(
            "/api/v1/chat/completions",
            "POST",
            200,
            Duration::from_millis(3),
        );
        metrics.overhead.observe(0.000_04);
        metrics
            .upstream_duration
            .get_or_create(&UpstreamLabels { call: "chat" })
            .observe(0.002);
        let stream = metrics.stream_started();
        metrics
            .refused_connections
            .get_or_create(&RefusalLabels { cap: "client" })
            .inc();
        let text = metrics.encode();
        for name in [
            "morpheus_http_requests_total{operation=\"/api/v1/chat/completions\",method=\"POST\",status=\"200\"} 1",
            "morpheus_http_request_duration_seconds_count{operation=\"/api/v1/chat/completions\"} 1",
            "morpheus_gateway_overhead_seconds_count 1",
            "morpheus_active_streams 1",
            "morpheus_upstream_request_duration_seconds_count{call=\"chat\"} 1",
            "# TYPE morpheus_open_sessions gauge",
            "# TYPE morpheus_open_connections gauge",
            "morpheus_refused_connections_total{cap=\"client\"} 1",
            "# EOF",
        ] {
            assert!(text.contains(name), "{name} missing from:\n{text}");
        }
        drop(stream);
        assert!(metrics.encode().contains("morpheus_active_streams 0"));
    }
}

/// Who may read `GET /metrics` on the main listener.
#[derive(Clone)]
pub enum MetricsAccess {
    /// Anyone (the development default).
    Open,
    /// Requests presenting this bearer token.
    Token(Box<SecretToken>),
    /// Nobody here: metrics have their own listener.
    Elsewhere,
}
