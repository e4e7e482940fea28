//! The realistic lane: a provider that takes a few hundred milliseconds, opens that take a
//! second or more, the node's one request per session, and the gateway's session pool at an
//! explicit cap, saturated by more clients than the cap. What it shows is how close the pool
//! gets to the ideal `cap ÷ provider latency`, and what the requests beyond the cap wait.

use std::net::SocketAddr;
use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::{Context as _, Result, bail};
use hdrhistogram::Histogram;
use hyper::Method;
use serde_json::{Value, json};

use crate::lanes::{self, Saturation};
use crate::{Plan, progress};
use morpheus_bench::http::{Target, call};
use morpheus_bench::setup;
use morpheus_bench::stack::{self, Bins, chat_body};
use morpheus_bench::stats::{histogram, percentile_us, record};

/// The gateway's histogram of pool queue waits, when it exports one (either name).
pub const QUEUE_WAIT_METRICS: [&str; 2] = [
    "morpheus_session_pool_queue_wait_seconds",
    "morpheus_pool_queue_wait_seconds",
];

/// What the simulator counted of sessions.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SimSessions {
    pub opened: u64,
    pub max_concurrency: u64,
    pub waits: u64,
}

impl SimSessions {
    fn of(v: &Value) -> Self {
        let n = |k: &str| v[k].as_u64().unwrap_or(0);
        Self {
            opened: n("sessions_opened"),
            max_concurrency: n("max_session_concurrency"),
            waits: n("session_waits"),
        }
    }
}

/// The queue wait: the gateway's figure when it exports one, and the client-side one.
#[derive(Debug, Clone, PartialEq)]
pub struct QueueWait {
    /// From the gateway's histogram, over the window: its name, the upper bounds of the
    /// buckets holding p50 and p99, and how many queued claims it observed.
    pub gateway: Option<(&'static str, f64, f64, u64)>,
    /// Client-side: response latency − provider latency, p50 and p99.
    pub client_p50_ms: f64,
    pub client_p99_ms: f64,
}

pub struct Realistic {
    pub cap: u32,
    pub clients: usize,
    pub first_token: Duration,
    pub open_latency: Duration,
    pub warmup: Duration,
    pub window: Duration,
    pub completed: u64,
    pub errors: u64,
    pub first_errors: Vec<String>,
    pub per_second: f64,
    pub ideal_per_second: f64,
    pub latency: Histogram<u64>,
    pub queue_wait: QueueWait,
    /// Counted by the simulator over the whole lane, set-up included (set-up opens the
    /// direct lane's session too, one more than the pool's).
    pub sessions: SimSessions,
    pub pool_sessions_opened: u64,
}

impl Realistic {
    pub fn ratio(&self) -> f64 {
        self.per_second / self.ideal_per_second
    }
}

async fn sim_counters(sim: SocketAddr) -> Result<SimSessions> {
    let (s, b) = call(sim, Method::GET, "/__sim/counters", &[], None).await?;
    if !s.is_success() {
        bail!("GET /__sim/counters: status {s}");
    }
    Ok(SimSessions::of(
        &serde_json::from_slice(&b).context("GET /__sim/counters is not JSON")?,
    ))
}

/// The cumulative buckets (upper bound in seconds, count) of `name` summed over its label
/// sets, `None` when the exposition has no such histogram.
pub fn buckets(exposition: &str, name: &str) -> Option<Vec<(f64, u64)>> {
    let prefix = format!("{name}_bucket");
    let mut by_le: Vec<(f64, u64)> = Vec::new();
    for line in exposition.lines() {
        let Some(rest) = line.strip_prefix(&prefix) else {
            continue;
        };
        let Some((labels, value)) = rest.rsplit_once('}') else {
            continue;
        };
        let Some(le) = labels
            .split("le=\"")
            .nth(1)
            .and_then(|s| s.split('"').next())
        else {
            continue;
        };
        let le = if le == "+Inf" {
            f64::INFINITY
        } else {
            le.parse().ok()?
        };
        let count: f64 = value.split_whitespace().next()?.parse().ok()?;
        match by_le.iter_mut().find(|(b, _)| *b == le) {
            Some((_, c)) => *c += count as u64,
            None => by_le.push((le, count as u64)),
        }
    }
    if by_le.is_empty() {
        return None;
    }
    by_le.sort_by(|a, b| a.0.total_cmp(&b.0));
    Some(by_le)
}

/// The upper bound of the bucket holding percentile `p` of `after − before` (cumulative
/// buckets of the same histogram at two times), and the count in between.
pub fn bucket_percentile(before: &[(f64, u64)], after: &[(f64, u64)], p: f64) -> (f64, u64) {
    let delta: Vec<(f64, u64)> = after
        .iter()
        .map(|(le, c)| {
            let was = before.iter().find(|(b, _)| b == le).map_or(0, |(_, c)| *c);
            (*le, c.saturating_sub(was))
        })
        .collect();
    let total = delta.last().map_or(0, |(_, c)| *c);
    if total == 0 {
        return (f64::NAN, 0);
    }
    let rank = (p / 100.0 * total as f64).ceil() as u64;
    let le = delta
        .iter()
        .find(|(_, c)| *c >= rank.max(1))
        .map_or(f64::INFINITY, |(le, _)| *le);
    (le, total)
}

type Buckets = Option<(&'static str, Vec<(f64, u64)>)>;

async fn queue_wait_buckets(gw: SocketAddr) -> Result<Buckets> {
    let (s, b) = call(gw, Method::GET, "/metrics", &[], None).await?;
    if !s.is_success() {
        // Metrics closed to us: the client-side figure only.
        return Ok(None);
    }
    let text = String::from_utf8_lossy(&b);
    Ok(QUEUE_WAIT_METRICS
        .iter()
        .find_map(|name| buckets(&text, name).map(|b| (*name, b))))
}

pub async fn run(
    plan: &Plan,
    bins: &Bins,
    dir: &Path,
    cores: (Option<usize>, Option<usize>),
) -> Result<Realistic> {
    let first_token = plan.realistic_first_token;
    let open_latency = plan.realistic_open_latency;
    let cap = plan.realistic_cap;
    let clients = plan.realistic_clients;
    let (first_ms, open_ms) = (
        first_token.as_millis().to_string(),
        open_latency.as_millis().to_string(),
    );
    std::fs::create_dir_all(dir)?;
    let (sim, sim_addr) = stack::start_sim(
        bins,
        dir,
        cores.0,
        &[
            "--first-token-ms",
            &first_ms,
            "--per-token-ms",
            "0",
            "--open-latency-ms",
            &open_ms,
        ],
    )?;
    let gw = stack::start_gateway(
        bins,
        &dir.join("gateway"),
        sim_addr,
        cores.1,
        &[
            ("MORPHEUS_POOL_MAX_SESSIONS_PER_MODEL", cap.to_string()),
            ("MORPHEUS_POOL_QUEUE_DEPTH", "256".to_owned()),
            ("MORPHEUS_POOL_QUEUE_MS", "30000".to_owned()),
        ],
    )?;
    let mut gw_child = gw.child;
    let ready = setup::run(gw.addr, sim_addr).await?;
    let after_setup = sim_counters(sim_addr).await?;
    let target = Target::new(
        gw.addr,
        "/api/v1/chat/completions",
        &[("authorization", format!("Bearer {}", ready.api_key))],
    )?;
    let body = chat_body(&ready.model, 4, 16, false);
    progress(format!(
        "realistic lane: cap {cap}, {clients} clients, provider {} ms, opens {} ms…",
        first_token.as_millis(),
        open_latency.as_millis()
    ));

    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let control = async {
        let began = Instant::now();
        // Warm-up: until the pool holds its cap (set-up opened the direct lane's session and
        // the pool's first), then a little longer, bounded.
        let opened_target = after_setup.opened + u64::from(cap) - 1;
        loop {
            let now = sim_counters(sim_addr).await?;
            if now.opened >= opened_target || began.elapsed() >= plan.realistic_warmup_max {
                break;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        tokio::time::sleep(first_token * 2).await;
        let warmup = began.elapsed();
        let before = queue_wait_buckets(gw.addr).await?;
        let from = Instant::now();
        tokio::time::sleep(plan.realistic_window).await;
        let until = Instant::now();
        let after = queue_wait_buckets(gw.addr).await?;
        let _ = stop_tx.send(true);
        Ok::<_, anyhow::Error>((warmup, from, until, before, after))
    };
    let (load, control) = tokio::join!(lanes::saturate(&target, &body, clients, stop_rx), control);
    let Saturation {
        samples,
        errors,
        first_errors,
    } = load?;
    let (warmup, from, until, before, after) = control?;
    gw_child.check_running()?;
    let counted: Vec<_> = samples
        .iter()
        .filter(|s| s.end >= from && s.end <= until)
        .collect();
    let mut latency = histogram();
    let mut client_wait = histogram();
    for s in &counted {
        let took = s.end - s.start;
        record(&mut latency, took);
        record(&mut client_wait, took.saturating_sub(first_token));
    }
    let window = until - from;
    let completed = counted.len() as u64;
    let gateway = after.map(|(name, a)| {
        let b = before.map(|(_, b)| b).unwrap_or_default();
        let (p50, count) = bucket_percentile(&b, &a, 50.0);
        let (p99, _) = bucket_percentile(&b, &a, 99.0);
        (name, p50 * 1000.0, p99 * 1000.0, count)
    });
    let queue_wait = QueueWait {
        gateway,
        client_p50_ms: percentile_us(&client_wait, 50.0) / 1000.0,
        client_p99_ms: percentile_us(&client_wait, 99.0) / 1000.0,
    };
    let sessions = sim_counters(sim_addr).await?;
    drop(gw_child);
    drop(sim);
    let per_second = completed as f64 / window.as_secs_f64();
    Ok(Realistic {
        cap,
        clients,
        first_token,
        open_latency,
        warmup,
        window,
        completed,
        errors,
        first_errors,
        per_second,
        ideal_per_second: f64::from(cap) / first_token.as_secs_f64(),
        latency,
        queue_wait,
        sessions,
        // set-up opened one session on the simulator directly, for the direct lane
        pool_sessions_opened: sessions.opened.saturating_sub(1),
    })
}

impl Realistic {
    pub fn json(&self) -> Value {
        let q = &self.queue_wait;
        json!({
            "pool_max_sessions_per_model": self.cap,
            "clients": self.clients,
            "provider_first_token_ms": self.first_token.as_secs_f64() * 1000.0,
            "open_latency_ms": self.open_latency.as_secs_f64() * 1000.0,
            "warmup_seconds": self.warmup.as_secs_f64(),
            "window_seconds": self.window.as_secs_f64(),
            "completed": self.completed,
            "errors": self.errors,
            "first_errors": self.first_errors,
            "requests_per_second": self.per_second,
            "ideal_requests_per_second": self.ideal_per_second,
            "ratio": self.ratio(),
            "latency_p50_ms": percentile_us(&self.latency, 50.0) / 1000.0,
            "latency_p99_ms": percentile_us(&self.latency, 99.0) / 1000.0,
            "queue_wait_client_p50_ms": q.client_p50_ms,
            "queue_wait_client_p99_ms": q.client_p99_ms,
            "queue_wait_gateway": q.gateway.map(|(name, p50, p99, count)| json!({
                "metric": name, "p50_bucket_ms": p50, "p99_bucket_ms": p99, "queued_claims": count,
            })),
            "sim_sessions_opened": self.sessions.opened,
            "pool_sessions_opened": self.pool_sessions_opened,
            "sim_max_session_concurrency": self.sessions.max_concurrency,
            "sim_session_waits": self.sessions.waits,
        })
    }
}

impl Realistic {
    pub fn one_line(&self) -> String {
        format!(
            "realistic lane: {:.1}/s of {:.1}/s ideal ({:.2}), p50 {:.0} ms, p99 {:.0} ms, \
             {} errors, {} sessions opened, most on one session at once {}",
            self.per_second,
            self.ideal_per_second,
            self.ratio(),
            percentile_us(&self.latency, 50.0) / 1000.0,
            percentile_us(&self.latency, 99.0) / 1000.0,
            self.errors,
            self.sessions.opened,
            self.sessions.max_concurrency
        )
    }

    /// The table's rows: (key, label, result, target, met).
    pub fn rows(&self) -> Vec<(&'static str, String, String, String, Option<bool>)> {
        let ms = |p| percentile_us(&self.latency, p) / 1000.0;
        let provider_ms = self.first_token.as_secs_f64() * 1000.0;
        let q = &self.queue_wait;
        let client = format!(
            "client-side (latency − {provider_ms:.0} ms provider): p99 {:.1} ms, p50 {:.1} ms",
            q.client_p99_ms, q.client_p50_ms
        );
        let wait = match q.gateway {
            Some((name, p50, p99, count)) => format!(
                "gateway {name}: p99 ≤ {p99:.1} ms, p50 ≤ {p50:.1} ms \
                 ({count} queued claims, bucket bounds); {client}"
            ),
            None => format!("{client} — the gateway exports no queue-wait histogram"),
        };
        vec![
            (
                "realistic_throughput",
                format!(
                    "realistic: req/s vs cap {} ÷ {provider_ms:.0} ms, {} clients",
                    self.cap, self.clients
                ),
                format!(
                    "{:.1}/s of {:.1}/s ideal = {:.2}  [{} in {:.1} s after {:.1} s warm-up; {} errors]",
                    self.per_second,
                    self.ideal_per_second,
                    self.ratio(),
                    self.completed,
                    self.window.as_secs_f64(),
                    self.warmup.as_secs_f64(),
                    self.errors
                ),
                "—".to_owned(),
                None,
            ),
            (
                "realistic_latency",
                "  …latency".to_owned(),
                format!("p50 {:.1} ms, p99 {:.1} ms", ms(50.0), ms(99.0)),
                "—".to_owned(),
                None,
            ),
            (
                "realistic_queue_wait",
                "  …queue wait".to_owned(),
                wait,
                "—".to_owned(),
                None,
            ),
            (
                "realistic_sessions",
                "  …sessions at the simulator".to_owned(),
                format!(
                    "{} opened by the pool (+1 direct, set-up), most requests on one session {}, \
                     waits at the node {}",
                    self.pool_sessions_opened, self.sessions.max_concurrency, self.sessions.waits
                ),
                "≤ 1 per session".to_owned(),
                Some(self.sessions.max_concurrency <= 1),
            ),
        ]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const BEFORE: &str = "\
# TYPE morpheus_pool_queue_wait_seconds histogram
morpheus_pool_queue_wait_seconds_bucket{model=\"a\",le=\"0.1\"} 1
morpheus_pool_queue_wait_seconds_bucket{model=\"a\",le=\"0.5\"} 2
morpheus_pool_queue_wait_seconds_bucket{model=\"a\",le=\"+Inf\"} 2
morpheus_pool_queue_wait_seconds_count{model=\"a\"} 2
";
    const AFTER: &str = "\
morpheus_pool_queue_wait_seconds_bucket{model=\"a\",le=\"0.1\"} 51
morpheus_pool_queue_wait_seconds_bucket{model=\"a\",le=\"0.5\"} 150
morpheus_pool_queue_wait_seconds_bucket{model=\"a\",le=\"+Inf\"} 152
morpheus_pool_queue_wait_seconds_bucket{model=\"b\",le=\"0.1\"} 0
morpheus_pool_queue_wait_seconds_bucket{model=\"b\",le=\"0.5\"} 0
morpheus_pool_queue_wait_seconds_bucket{model=\"b\",le=\"+Inf\"} 0
morpheus_pool_queue_wait_seconds_sum{model=\"a\"} 40.5
";

    #[test]
    fn buckets_are_summed_over_label_sets() {
        let b = buckets(AFTER, QUEUE_WAIT_METRICS[1]).unwrap();
        assert_eq!(b, vec![(0.1, 51), (0.5, 150), (f64::INFINITY, 152)]);
        assert!(buckets("morpheus_other_bucket{le=\"1\"} 3\n", QUEUE_WAIT_METRICS[1]).is_none());
    }

    #[test]
    fn percentiles_come_from_the_window_only() {
        let before = buckets(BEFORE, QUEUE_WAIT_METRICS[1]).unwrap();
        let after = buckets(AFTER, QUEUE_WAIT_METRICS[1]).unwrap();
        // In the window: 50 ≤ 0.1 s, 98 in (0.1, 0.5], 2 beyond.
        assert_eq!(bucket_percentile(&before, &after, 50.0), (0.5, 150));
        assert_eq!(bucket_percentile(&before, &after, 30.0), (0.1, 150));
        assert_eq!(
            bucket_percentile(&before, &after, 99.0),
            (f64::INFINITY, 150)
        );
        assert!(bucket_percentile(&after, &after, 99.0).0.is_nan());
    }
}
