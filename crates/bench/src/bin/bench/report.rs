//! The figures, their targets, the table on stdout and the JSON document.

use serde_json::{Value, json};

use crate::Plan;
use crate::lanes::{Latency, Many, Throughput, Ttft};
use crate::realistic::Realistic;
use morpheus_bench::procs::{self, Machine};
use morpheus_bench::stats::{Spread, differences, percentile_us, ratios};

/// Whether the processes were pinned to cores, and where the kernel says they may run.
pub struct Pinning {
    pub enabled: bool,
    pub note: String,
    pub loadgen_cpus: String,
    pub sim_cpus: String,
    pub gateway_cpus: String,
    /// The plain-provider lane's `morpheus-openai-mock` and gateway.
    pub mock_cpus: String,
    pub provider_gateway_cpus: String,
}

impl Pinning {
    pub fn on() -> Self {
        Self {
            enabled: true,
            note: "sched_setaffinity: load generator and simulator on core 0, gateway on core 1"
                .to_owned(),
            loadgen_cpus: String::new(),
            sim_cpus: String::new(),
            gateway_cpus: String::new(),
            mock_cpus: String::new(),
            provider_gateway_cpus: String::new(),
        }
    }

    pub fn off(why: &str) -> Self {
        Self {
            enabled: false,
            note: format!("not pinned: {why}"),
            ..Self::on()
        }
    }

    /// Reads back each process's allowed cores from the kernel.
    pub fn observed(mut self, loadgen: u32, sim: u32, gateway: u32) -> Self {
        self.loadgen_cpus = procs::allowed_cpus(loadgen);
        self.sim_cpus = procs::allowed_cpus(sim);
        self.gateway_cpus = procs::allowed_cpus(gateway);
        if self.enabled
            && (self.loadgen_cpus != "0" || self.sim_cpus != "0" || self.gateway_cpus != "1")
        {
            self.note = format!("pinning asked for but not in effect ({})", self.note);
            self.enabled = false;
        }
        self
    }

    /// Reads back the plain-provider lane's processes' allowed cores: the mock belongs with
    /// the simulator (core 0), its gateway with the main gateway (core 1).
    pub fn observed_provider(mut self, mock: u32, gateway: u32) -> Self {
        self.mock_cpus = procs::allowed_cpus(mock);
        self.provider_gateway_cpus = procs::allowed_cpus(gateway);
        if self.enabled && (self.mock_cpus != "0" || self.provider_gateway_cpus != "1") {
            self.note = format!("pinning asked for but not in effect ({})", self.note);
            self.enabled = false;
        }
        self
    }

    pub fn describe(&self) -> String {
        let mut out = format!(
            "{}; allowed cores: load generator {}, simulator {}, gateway {}",
            self.note, self.loadgen_cpus, self.sim_cpus, self.gateway_cpus
        );
        if !self.mock_cpus.is_empty() {
            out.push_str(&format!(
                ", openai-mock {}, its gateway {}",
                self.mock_cpus, self.provider_gateway_cpus
            ));
        }
        out
    }
}

/// Percentiles of one latency run, in microseconds.
#[derive(Default, Clone)]
pub struct LatencySummary {
    pub requests: u64,
    pub errors: u64,
    pub p50_us: f64,
    pub p90_us: f64,
    pub p99_us: f64,
    pub p999_us: f64,
    pub max_us: f64,
}

impl From<Latency> for LatencySummary {
    fn from(l: Latency) -> Self {
        Self {
            requests: l.hist.len(),
            errors: l.errors,
            p50_us: percentile_us(&l.hist, 50.0),
            p90_us: percentile_us(&l.hist, 90.0),
            p99_us: percentile_us(&l.hist, 99.0),
            p999_us: percentile_us(&l.hist, 99.9),
            max_us: percentile_us(&l.hist, 100.0),
        }
    }
}

impl LatencySummary {
    fn json(&self) -> Value {
        json!({"requests": self.requests, "errors": self.errors, "p50_us": self.p50_us,
               "p90_us": self.p90_us, "p99_us": self.p99_us, "p999_us": self.p999_us,
               "max_us": self.max_us})
    }
}

#[derive(Default, Clone)]
pub struct ThroughputSummary {
    pub completed: u64,
    pub errors: u64,
    pub per_second: f64,
    pub p50_us: f64,
    pub p99_us: f64,
}

impl From<Throughput> for ThroughputSummary {
    fn from(t: Throughput) -> Self {
        Self {
            completed: t.completed,
            errors: t.errors,
            per_second: t.per_second,
            p50_us: percentile_us(&t.hist, 50.0),
            p99_us: percentile_us(&t.hist, 99.0),
        }
    }
}

impl ThroughputSummary {
    fn json(&self) -> Value {
        json!({"completed": self.completed, "errors": self.errors,
               "requests_per_second": self.per_second, "p50_us": self.p50_us,
               "p99_us": self.p99_us})
    }
}

#[derive(Default, Clone)]
pub struct TtftSummary {
    pub streams: u64,
    pub errors: u64,
    pub incomplete: u64,
    pub p50_us: f64,
    pub p99_us: f64,
}

impl From<Ttft> for TtftSummary {
    fn from(t: Ttft) -> Self {
        Self {
            streams: t.hist.len(),
            errors: t.errors,
            incomplete: t.incomplete,
            p50_us: percentile_us(&t.hist, 50.0),
            p99_us: percentile_us(&t.hist, 99.0),
        }
    }
}

impl TtftSummary {
    fn json(&self) -> Value {
        json!({"streams": self.streams, "errors": self.errors, "incomplete": self.incomplete,
               "p50_us": self.p50_us, "p99_us": self.p99_us})
    }
}

/// One round of the interleaved lane comparisons.
#[derive(Default, Clone)]
pub struct Round {
    pub c1_direct: LatencySummary,
    pub c1_gateway: LatencySummary,
    pub c64_direct: ThroughputSummary,
    pub c64_gateway: ThroughputSummary,
    pub ttft_direct: TtftSummary,
    pub ttft_gateway: TtftSummary,
    /// c=1 on each governed lane, in the order of [`Results::governed_lanes`].
    pub c1_governed: Vec<LatencySummary>,
    /// One Redis round trip's p50 (µs), when the Redis lanes ran.
    pub redis_round_trip_us: Option<f64>,
    /// The gateway's own time per request (mean, µs, from its overhead histogram) over the c=1
    /// gateway lane, and over each governed lane.
    pub c1_gateway_own_us: f64,
    pub c1_governed_own_us: Vec<f64>,
    /// The plain-provider lane: c=1 and c=64 on `morpheus-openai-mock` directly and through
    /// its gateway, and that gateway's own time per request (mean, µs) over its c=1 run.
    pub provider_c1_direct: LatencySummary,
    pub provider_c1_gateway: LatencySummary,
    pub provider_own_us: f64,
    pub provider_c64_direct: ThroughputSummary,
    pub provider_c64_gateway: ThroughputSummary,
}

/// What a governed lane has on.
#[derive(Clone)]
pub struct GovernedLaneInfo {
    pub name: &'static str,
    pub credit: bool,
    pub redis: bool,
}

pub struct Results {
    pub machine: Machine,
    pub pinning: Pinning,
    pub plan: Plan,
    pub startup_ms: Vec<f64>,
    pub rounds: Vec<Round>,
    pub many: Many,
    pub rss_fresh_kib: u64,
    pub rss_idle_kib: u64,
    pub rss_after_rounds_kib: u64,
    pub rss_peak_kib: u64,
    pub rss_settled_kib: u64,
    pub realistic: Realistic,
    pub governed_lanes: Vec<GovernedLaneInfo>,
    pub redis_reachable: bool,
    pub model: String,
    pub wall_seconds: f64,
}

/// A stream is stalled when a gap between its events reaches this many chunk delays (and at
/// least one second).
const STALL_FACTOR: u64 = 20;

struct Figure {
    key: &'static str,
    label: String,
    result: String,
    target: String,
    met: Option<bool>,
    json: Value,
}

fn spread(values: &[f64]) -> Spread {
    Spread::of(values).unwrap_or(Spread {
        median: f64::NAN,
        min: f64::NAN,
        max: f64::NAN,
    })
}

fn us(s: Spread) -> String {
    format!("{:.1} µs ({:.1} – {:.1})", s.median, s.min, s.max)
}

fn mib(kib: u64) -> f64 {
    kib as f64 / 1024.0
}

/// The human table and the JSON document.
pub fn render(r: &Results) -> (String, Value) {
    let col = |f: fn(&Round) -> f64| r.rounds.iter().map(f).collect::<Vec<f64>>();
    let mut figures = Vec::new();

    // 1. Added latency at concurrency 1.
    let d50 = col(|x| x.c1_direct.p50_us);
    let g50 = col(|x| x.c1_gateway.p50_us);
    let d99 = col(|x| x.c1_direct.p99_us);
    let g99 = col(|x| x.c1_gateway.p99_us);
    for (key, label, d, g, limit) in [
        (
            "added_latency_p50",
            "added latency p50, c=1",
            &d50,
            &g50,
            50.0,
        ),
        (
            "added_latency_p99",
            "added latency p99, c=1",
            &d99,
            &g99,
            250.0,
        ),
    ] {
        let added = spread(&differences(d, g));
        figures.push(Figure {
            key,
            label: label.to_owned(),
            result: format!(
                "{}  [direct {:.1}, gateway {:.1}]",
                us(added),
                spread(d).median,
                spread(g).median
            ),
            target: format!("≤ {limit} µs"),
            met: Some(added.median <= limit),
            json: json!({"added_us": added.json(), "direct_us": spread(d).json(),
                         "gateway_us": spread(g).json(), "target_max_us": limit}),
        });
    }

    // 1b. What governance adds at concurrency 1: each governed lane against the plain gateway
    // lane of the same round. The targets are the full lanes' (limits, budgets and the credit
    // hold and settlement); the limits-only lanes show where the time goes.
    for (i, lane) in r.governed_lanes.iter().enumerate() {
        let governed: Vec<f64> = r
            .rounds
            .iter()
            .map(|x| x.c1_governed.get(i).map_or(f64::NAN, |l| l.p50_us))
            .collect();
        let added = spread(&differences(&g50, &governed));
        let limit = match (lane.credit, lane.redis) {
            (true, false) => Some(10.0),
            (true, true) => Some(60.0),
            _ => None,
        };
        figures.push(Figure {
            key: match i {
                0 => "governance_added_p50_limits_memory",
                1 => "governance_added_p50_full_memory",
                2 => "governance_added_p50_limits_redis",
                _ => "governance_added_p50_full_redis",
            },
            label: format!("governance added p50, c=1: {}", lane.name),
            result: format!(
                "{}  [gateway {:.1}, governed {:.1}]",
                us(added),
                spread(&g50).median,
                spread(&governed).median
            ),
            target: limit.map_or_else(|| "—".to_owned(), |l| format!("≤ {l} µs")),
            met: limit.map(|l| added.median <= l),
            json: json!({"added_us": added.json(), "gateway_us": spread(&g50).json(),
                         "governed_us": spread(&governed).json(), "credit": lane.credit,
                         "redis": lane.redis, "target_max_us": limit}),
        });
    }
    // 1c. The same, measured inside the gateways: the mean of each request's time in the
    // gateway less its wait for the provider, read from their /metrics around each lane. The
    // client-side p50 above carries the loopback's and the scheduler's noise (tens of µs from
    // round to round on these machines); this does not, so it resolves a few µs.
    let own = col(|x| x.c1_gateway_own_us);
    for (i, lane) in r.governed_lanes.iter().enumerate() {
        let governed: Vec<f64> = r
            .rounds
            .iter()
            .map(|x| x.c1_governed_own_us.get(i).copied().unwrap_or(f64::NAN))
            .collect();
        let added = spread(&differences(&own, &governed));
        let limit = match (lane.credit, lane.redis) {
            (true, false) => Some(10.0),
            (true, true) => Some(60.0),
            _ => None,
        };
        figures.push(Figure {
            key: match i {
                0 => "governance_added_own_limits_memory",
                1 => "governance_added_own_full_memory",
                2 => "governance_added_own_limits_redis",
                _ => "governance_added_own_full_redis",
            },
            label: format!("  …in the gateway's own time (mean): {}", lane.name),
            result: format!(
                "{}  [gateway {:.1}, governed {:.1}]",
                us(added),
                spread(&own).median,
                spread(&governed).median
            ),
            target: limit.map_or_else(|| "—".to_owned(), |l| format!("≤ {l} µs")),
            met: limit.map(|l| added.median <= l),
            json: json!({"added_us": added.json(), "gateway_us": spread(&own).json(),
                         "governed_us": spread(&governed).json(), "credit": lane.credit,
                         "redis": lane.redis, "target_max_us": limit}),
        });
    }
    let round_trips: Vec<f64> = r
        .rounds
        .iter()
        .filter_map(|x| x.redis_round_trip_us)
        .collect();
    if !round_trips.is_empty() {
        let rtt = spread(&round_trips);
        figures.push(Figure {
            key: "redis_round_trip_p50",
            label: "one Redis round trip (PING), p50: the floor of a Redis lane".to_owned(),
            result: us(rtt),
            target: "—".to_owned(),
            met: None,
            json: json!({"round_trip_us": rtt.json()}),
        });
    }
    if !r.redis_reachable {
        figures.push(Figure {
            key: "governance_added_p50_full_redis",
            label: "governance added p50, c=1: limits + credit, Redis".to_owned(),
            result: "not measured: no Redis reachable (MORPHEUS_BENCH_REDIS_URL)".to_owned(),
            target: "≤ 60 µs".to_owned(),
            met: None,
            json: json!({"measured": false}),
        });
    }

    // 2. Throughput at concurrency 64.
    let dr = col(|x| x.c64_direct.per_second);
    let gr = col(|x| x.c64_gateway.per_second);
    let ratio = spread(&ratios(&dr, &gr));
    figures.push(Figure {
        key: "throughput_ratio",
        label: format!("throughput ratio gateway/direct, c={}", r.plan.c64_conns),
        result: format!(
            "{:.2} ({:.2} – {:.2})  [direct {:.0}/s, gateway {:.0}/s]",
            ratio.median,
            ratio.min,
            ratio.max,
            spread(&dr).median,
            spread(&gr).median
        ),
        target: "≥ 0.5".to_owned(),
        met: Some(ratio.median >= 0.5),
        json: json!({"ratio": ratio.json(), "direct_rps": spread(&dr).json(),
                     "gateway_rps": spread(&gr).json(), "target_min_ratio": 0.5}),
    });

    // 3. Added time to first token.
    let dt50 = col(|x| x.ttft_direct.p50_us);
    let gt50 = col(|x| x.ttft_gateway.p50_us);
    let dt99 = col(|x| x.ttft_direct.p99_us);
    let gt99 = col(|x| x.ttft_gateway.p99_us);
    let added50 = spread(&differences(&dt50, &gt50));
    let added99 = spread(&differences(&dt99, &gt99));
    let chunks = r.plan.ttft_chunks;
    figures.push(Figure {
        key: "added_ttft_p50",
        label: format!("added TTFT p50, {chunks}-chunk stream"),
        result: format!(
            "{}  [direct {:.1}, gateway {:.1}]",
            us(added50),
            spread(&dt50).median,
            spread(&gt50).median
        ),
        target: "—".to_owned(),
        met: None,
        json: json!({"added_us": added50.json(), "direct_us": spread(&dt50).json(),
                     "gateway_us": spread(&gt50).json()}),
    });
    figures.push(Figure {
        key: "added_ttft_p99",
        label: format!("added TTFT p99, {chunks}-chunk stream"),
        result: format!(
            "{}  [direct {:.1}, gateway {:.1}]",
            us(added99),
            spread(&dt99).median,
            spread(&gt99).median
        ),
        target: "≤ 300 µs".to_owned(),
        met: Some(added99.median <= 300.0),
        json: json!({"added_us": added99.json(), "direct_us": spread(&dt99).json(),
                     "gateway_us": spread(&gt99).json(), "target_max_us": 300.0}),
    });

    // 8. The plain-provider lane, measured in the same rounds.
    figures.extend(provider_figures(r));

    // 4. Many concurrent streams.
    let m = &r.many;
    let stall_ms = (r.plan.many_chunk_delay_ms * STALL_FACTOR).max(1000) as f64;
    let worst_ms = m.worst_gap.as_secs_f64() * 1000.0;
    let no_stall = m.completed == m.streams && worst_ms < stall_ms;
    figures.push(Figure {
        key: "streams",
        label: format!("{} concurrent streams, no stall", m.streams),
        result: format!(
            "{}/{} completed, worst gap {:.1} ms (gap p99 {:.1} ms; peak open {})",
            m.completed,
            m.streams,
            worst_ms,
            percentile_us(&m.gaps, 99.0) / 1000.0,
            m.peak_open
        ),
        target: format!("all, gap < {stall_ms:.0} ms"),
        met: Some(no_stall),
        json: json!({
            "streams": m.streams, "completed": m.completed, "failed": m.failed,
            "first_errors": m.first_errors,
            "content_chunks": r.plan.many_chunks, "chunk_delay_ms": r.plan.many_chunk_delay_ms,
            "worst_gap_ms": worst_ms,
            "gap_p50_ms": percentile_us(&m.gaps, 50.0) / 1000.0,
            "gap_p99_ms": percentile_us(&m.gaps, 99.0) / 1000.0,
            "first_event_p50_ms": percentile_us(&m.first_event, 50.0) / 1000.0,
            "first_event_p99_ms": percentile_us(&m.first_event, 99.0) / 1000.0,
            "first_event_max_ms": percentile_us(&m.first_event, 100.0) / 1000.0,
            "peak_open": m.peak_open, "wall_seconds": m.wall.as_secs_f64(),
            "stall_threshold_ms": stall_ms,
        }),
    });
    figures.push(Figure {
        key: "streams_first_event",
        label: "  …their first event (from request)".to_owned(),
        result: format!(
            "p50 {:.1} ms, p99 {:.1} ms, max {:.1} ms; all done in {:.2} s",
            percentile_us(&m.first_event, 50.0) / 1000.0,
            percentile_us(&m.first_event, 99.0) / 1000.0,
            percentile_us(&m.first_event, 100.0) / 1000.0,
            m.wall.as_secs_f64()
        ),
        target: "—".to_owned(),
        met: None,
        json: Value::Null,
    });

    // 5. Memory.
    let settle = r.plan.settle.as_secs();
    for (key, label, kib, limit) in [
        (
            "rss_fresh",
            "gateway RSS fresh (before set-up)",
            r.rss_fresh_kib,
            None,
        ),
        (
            "rss_idle",
            "gateway RSS idle (after set-up)",
            r.rss_idle_kib,
            Some(32.0),
        ),
        (
            "rss_after_rounds",
            "gateway RSS after the lane rounds",
            r.rss_after_rounds_kib,
            None,
        ),
        (
            "rss_peak_streams",
            "gateway RSS peak, during the streams",
            r.rss_peak_kib,
            Some(96.0),
        ),
    ] {
        figures.push(Figure {
            key,
            label: label.to_owned(),
            result: format!("{:.1} MiB", mib(kib)),
            target: limit.map_or_else(|| "—".to_owned(), |l| format!("≤ {l} MiB")),
            met: limit.map(|l| mib(kib) <= l),
            json: json!({"kib": kib, "mib": mib(kib), "target_max_mib": limit}),
        });
    }
    figures.push(Figure {
        key: "rss_settled",
        label: format!("gateway RSS {settle} s after the streams"),
        result: format!("{:.1} MiB", mib(r.rss_settled_kib)),
        target: "—".to_owned(),
        met: None,
        json: json!({"kib": r.rss_settled_kib, "mib": mib(r.rss_settled_kib),
                     "after_seconds": settle}),
    });

    // 6. Start-up.
    let st = spread(&r.startup_ms);
    figures.push(Figure {
        key: "startup",
        label: "start-up to first healthy /health".to_owned(),
        result: format!(
            "{:.1} ms ({:.1} – {:.1}; {} runs)",
            st.median,
            st.min,
            st.max,
            r.startup_ms.len()
        ),
        target: "≤ 100 ms".to_owned(),
        met: Some(st.median <= 100.0),
        json: json!({"ms": st.json(), "runs_ms": r.startup_ms, "target_max_ms": 100.0}),
    });

    // 7. The realistic lane.
    let mut realistic_rows = realistic_figures(&r.realistic);
    if let Some(first) = realistic_rows.first_mut() {
        first.json = r.realistic.json();
    }
    figures.extend(realistic_rows);

    let errors: u64 = r
        .rounds
        .iter()
        .map(|x| {
            x.c1_direct.errors
                + x.c1_gateway.errors
                + x.c64_direct.errors
                + x.c64_gateway.errors
                + x.ttft_direct.errors
                + x.ttft_gateway.errors
                + x.ttft_direct.incomplete
                + x.ttft_gateway.incomplete
                + x.c1_governed.iter().map(|l| l.errors).sum::<u64>()
                + x.provider_c1_direct.errors
                + x.provider_c1_gateway.errors
                + x.provider_c64_direct.errors
                + x.provider_c64_gateway.errors
        })
        .sum();

    let table = table(r, &figures, errors);
    let mut figs = serde_json::Map::new();
    for f in &figures {
        if f.json.is_null() {
            continue;
        }
        let mut v = f.json.clone();
        v["label"] = json!(f.label);
        v["target"] = json!(f.target);
        v["met"] = json!(f.met);
        figs.insert(f.key.to_owned(), v);
    }
    let doc = json!({
        "machine": {
            "cpu_model": r.machine.cpu_model,
            "cores": r.machine.cores,
            "kernel": r.machine.kernel,
            "memory_mib": r.machine.memory_mib,
            "load_average_at_start": r.machine.load_at_start,
            "idle_policy": r.machine.idle_policy,
            "load_average_at_end": procs::load_average(),
        },
        "pinning": {
            "enabled": r.pinning.enabled,
            "note": r.pinning.note,
            "load_generator_cpus": r.pinning.loadgen_cpus,
            "simulator_cpus": r.pinning.sim_cpus,
            "gateway_cpus": r.pinning.gateway_cpus,
            "openai_mock_cpus": r.pinning.mock_cpus,
            "provider_gateway_cpus": r.pinning.provider_gateway_cpus,
        },
        "model": r.model,
        "plan": r.plan.json(),
        "wall_seconds": r.wall_seconds,
        "request_errors": errors,
        "figures": figs,
        "rounds": r.rounds.iter().map(|x| json!({
            "c1": {"direct": x.c1_direct.json(), "gateway": x.c1_gateway.json(),
                   "governed": r.governed_lanes.iter().zip(&x.c1_governed)
                       .map(|(lane, l)| json!({"lane": lane.name, "latency": l.json()}))
                       .collect::<Vec<_>>()},
            "c64": {"direct": x.c64_direct.json(), "gateway": x.c64_gateway.json()},
            "ttft": {"direct": x.ttft_direct.json(), "gateway": x.ttft_gateway.json()},
            "gateway_own_us": x.c1_gateway_own_us,
            "provider": {
                "c1": {"direct": x.provider_c1_direct.json(),
                       "gateway": x.provider_c1_gateway.json()},
                "gateway_own_us": x.provider_own_us,
                "c64": {"direct": x.provider_c64_direct.json(),
                        "gateway": x.provider_c64_gateway.json()},
            },
        })).collect::<Vec<_>>(),
    });
    (table, doc)
}

/// Figure 8, the plain-provider lane: what the gateway adds in front of a plain
/// OpenAI-compatible provider (`morpheus-openai-mock`), computed like figures 1 and 2 (round
/// by round, then the median across rounds), and the gateway's own time per request. No
/// targets: the figures are for comparison (with the simulator lanes, with other gateways).
fn provider_figures(r: &Results) -> Vec<Figure> {
    let col = |f: fn(&Round) -> f64| r.rounds.iter().map(f).collect::<Vec<f64>>();
    let mut figures = Vec::new();
    for (key, label, d, g) in [
        (
            "provider_added_latency_p50",
            "plain provider: added latency p50, c=1",
            col(|x| x.provider_c1_direct.p50_us),
            col(|x| x.provider_c1_gateway.p50_us),
        ),
        (
            "provider_added_latency_p99",
            "plain provider: added latency p99, c=1",
            col(|x| x.provider_c1_direct.p99_us),
            col(|x| x.provider_c1_gateway.p99_us),
        ),
    ] {
        let added = spread(&differences(&d, &g));
        figures.push(Figure {
            key,
            label: label.to_owned(),
            result: format!(
                "{}  [direct {:.1}, gateway {:.1}]",
                us(added),
                spread(&d).median,
                spread(&g).median
            ),
            target: "—".to_owned(),
            met: None,
            json: json!({"added_us": added.json(), "direct_us": spread(&d).json(),
                         "gateway_us": spread(&g).json()}),
        });
    }
    let own = spread(&col(|x| x.provider_own_us));
    let marketplace_own = spread(&col(|x| x.c1_gateway_own_us));
    figures.push(Figure {
        key: "provider_gateway_own_time",
        label: "  …in the gateway's own time (mean)".to_owned(),
        result: format!(
            "{}  [simulator lane's gateway {:.1}]",
            us(own),
            marketplace_own.median
        ),
        target: "—".to_owned(),
        met: None,
        json: json!({"own_us": own.json(), "simulator_lane_own_us": marketplace_own.json()}),
    });
    let dr = col(|x| x.provider_c64_direct.per_second);
    let gr = col(|x| x.provider_c64_gateway.per_second);
    let ratio = spread(&ratios(&dr, &gr));
    figures.push(Figure {
        key: "provider_throughput_ratio",
        label: format!(
            "plain provider: throughput ratio gateway/direct, c={}",
            r.plan.c64_conns
        ),
        result: format!(
            "{:.2} ({:.2} – {:.2})  [direct {:.0}/s, gateway {:.0}/s]",
            ratio.median,
            ratio.min,
            ratio.max,
            spread(&dr).median,
            spread(&gr).median
        ),
        target: "—".to_owned(),
        met: None,
        json: json!({"ratio": ratio.json(), "direct_rps": spread(&dr).json(),
                     "gateway_rps": spread(&gr).json()}),
    });
    figures
}

/// One progress line of the plain-provider lane's figures (medians across rounds).
pub fn provider_line(rounds: &[Round]) -> String {
    let col = |f: fn(&Round) -> f64| rounds.iter().map(f).collect::<Vec<f64>>();
    let d50 = col(|x| x.provider_c1_direct.p50_us);
    let d99 = col(|x| x.provider_c1_direct.p99_us);
    let added50 = spread(&differences(&d50, &col(|x| x.provider_c1_gateway.p50_us)));
    let added99 = spread(&differences(&d99, &col(|x| x.provider_c1_gateway.p99_us)));
    let ratio = spread(&ratios(
        &col(|x| x.provider_c64_direct.per_second),
        &col(|x| x.provider_c64_gateway.per_second),
    ));
    format!(
        "plain provider: added p50 {:.1} µs, p99 {:.1} µs, gateway own time {:.1} µs, c=1 \
         direct p50 {:.1} µs; c=64 ratio {:.2}",
        added50.median,
        added99.median,
        spread(&col(|x| x.provider_own_us)).median,
        spread(&d50).median,
        ratio.median
    )
}

fn realistic_figures(lane: &Realistic) -> Vec<Figure> {
    lane.rows()
        .into_iter()
        .map(|(key, label, result, target, met)| Figure {
            key,
            label,
            result,
            target,
            met,
            json: Value::Null,
        })
        .collect()
}

/// The table and JSON of a run of the realistic lane alone (`--realistic-only`).
pub fn render_realistic_only(
    lane: &Realistic,
    machine: &Machine,
    pinning: &Pinning,
    plan: &Plan,
) -> (String, Value) {
    let figures = realistic_figures(lane);
    let mut out = format!(
        "\nmorpheus-bench — machine: {}\npinning: {}\n",
        machine.one_line(),
        pinning.note
    );
    out.push_str(&format!(
        "realistic lane only: load generator → gateway → simulator; load average at end {}\n\n",
        procs::load_average()
    ));
    out.push_str(&rows(&figures));
    let doc = json!({
        "machine": {
            "cpu_model": machine.cpu_model,
            "cores": machine.cores,
            "load_average_at_start": machine.load_at_start,
            "load_average_at_end": procs::load_average(),
        },
        "pinning": {"enabled": pinning.enabled, "note": pinning.note},
        "plan": plan.json(),
        "figures": {"realistic": lane.json()},
    });
    (out, doc)
}

fn header(machine: &Machine, pinning: &Pinning) -> String {
    format!(
        "\nmorpheus-bench — machine: {}\npinning: {}\n",
        machine.one_line(),
        if pinning.enabled {
            format!("yes — {}", pinning.describe())
        } else {
            format!("no — {}", pinning.describe())
        }
    )
}

fn table(r: &Results, figures: &[Figure], errors: u64) -> String {
    let rounds = r.rounds.len();
    let mut out = header(&r.machine, &r.pinning);
    out.push_str(&format!(
        "lanes: direct = load generator → simulator; gateway = load generator → gateway → \
         simulator; plain provider: direct = load generator → openai-mock, gateway = load \
         generator → gateway (providers file) → openai-mock; {rounds} interleaved rounds, \
         median (min – max) across rounds; model {}; wall time {:.0} s; load average at end \
         {}\n\n",
        r.model,
        r.wall_seconds,
        procs::load_average()
    ));
    out.push_str(&rows(figures));
    out.push_str(&format!(
        "\nfailed or incomplete requests in the lane rounds: {errors}\n"
    ));
    out
}

fn rows(figures: &[Figure]) -> String {
    let mut out = String::new();
    let w_label = figures
        .iter()
        .map(|f| f.label.chars().count())
        .max()
        .unwrap_or(0);
    let w_result = figures
        .iter()
        .map(|f| f.result.chars().count())
        .max()
        .unwrap_or(0);
    let w_target = figures
        .iter()
        .map(|f| f.target.chars().count())
        .max()
        .unwrap_or(0);
    let pad = |s: &str, w: usize| format!("{s}{}", " ".repeat(w.saturating_sub(s.chars().count())));
    out.push_str(&format!(
        "{}  {}  {}  {}\n",
        pad("figure", w_label),
        pad("result", w_result),
        pad("target", w_target),
        "status"
    ));
    out.push_str(&format!(
        "{}\n",
        "─".repeat(w_label + w_result + w_target + 6 + 7)
    ));
    for f in figures {
        let status = match f.met {
            Some(true) => "met",
            Some(false) => "NOT MET",
            None => "",
        };
        out.push_str(&format!(
            "{}  {}  {}  {status}\n",
            pad(&f.label, w_label),
            pad(&f.result, w_result),
            pad(&f.target, w_target)
        ));
    }
    out
}
