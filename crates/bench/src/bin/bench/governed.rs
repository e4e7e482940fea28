//! The governed lanes: the gateway lane again, on gateways with governance on — a key with
//! `rpm`, `tpm` and two budget windows, operator limits from a pricing file, and (in the full
//! lanes) the credit hold and its settlement — so the table can show what governance adds to a
//! request. Each lane is a gateway of its own (same simulator, same pinning), measured in the
//! same interleaved rounds as the plain gateway lane.
//!
//! With Redis reachable (`MORPHEUS_BENCH_REDIS_URL`, default `redis://127.0.0.1:6379`) the
//! counters are shared through it in two more lanes; without it those lanes are skipped, said
//! so in the table.

use std::net::{SocketAddr, TcpStream};
use std::path::Path;
use std::time::Duration;

use anyhow::Result;
use morpheus_bench::http::Target;
use morpheus_bench::setup;
use morpheus_bench::stack::{self, Bins, Gateway};
use serde_json::json;

/// Every limit far above what a run sends: counted on every request, never refusing one.
const OPERATOR_LIMITS: &str = "[limits]\nrpm = 1000000000\ntpm = 1000000000000\n";

/// A governed gateway and the target of its key.
pub struct GovernedLane {
    pub name: &'static str,
    /// Credit holds and settlements on (else limits and budgets only).
    pub credit: bool,
    pub redis: bool,
    pub target: Target,
    gateway: Gateway,
}

/// The Redis the Redis lanes use, when something listens there.
pub fn redis_url() -> Option<String> {
    let url = std::env::var("MORPHEUS_BENCH_REDIS_URL")
        .unwrap_or_else(|_| "redis://127.0.0.1:6379".to_owned());
    let host = url.trim_start_matches("redis://").split('/').next()?;
    let addr: SocketAddr = host.parse().ok()?;
    TcpStream::connect_timeout(&addr, Duration::from_millis(200)).ok()?;
    Some(url)
}

/// Starts the lanes' gateways and sets each up through its API (a user, a key with limits and
/// budgets, automation on, the first chat).
pub async fn start(
    bins: &Bins,
    dir: &Path,
    sim: SocketAddr,
    core: Option<usize>,
    redis: Option<&str>,
) -> Result<Vec<GovernedLane>> {
    std::fs::create_dir_all(dir)?;
    let prices = dir.join("limits.toml");
    std::fs::write(&prices, OPERATOR_LIMITS)?;
    let mut specs = vec![
        ("limits, in memory", false, None),
        ("limits + credit, in memory", true, None),
    ];
    if let Some(url) = redis {
        specs.push(("limits, Redis", false, Some(url)));
        specs.push(("limits + credit, Redis", true, Some(url)));
    }
    let mut lanes = Vec::new();
    for (i, (name, credit, redis)) in specs.into_iter().enumerate() {
        let mut env: Vec<(&'static str, String)> = vec![
            ("MORPHEUS_PRICING_FILE", prices.display().to_string()),
            ("MORPHEUS_BILLING", credit.to_string()),
            ("MORPHEUS_SIGNUP_CREDIT_USD", "1000000".to_owned()),
        ];
        if let Some(url) = redis {
            env.push(("MORPHEUS_REDIS_URL", url.to_owned()));
            env.push((
                "MORPHEUS_REDIS_KEY_PREFIX",
                format!("morpheus-bench:{}:{i}:", std::process::id()),
            ));
        }
        let gateway = stack::start_gateway(bins, &dir.join(format!("lane-{i}")), sim, core, &env)?;
        let key = json!({
            "name": "bench",
            "rpm": 1_000_000,
            "tpm": 10_000_000_000u64,
            "budgets": [
                {"window": "1h", "limit_usd": "1000000"},
                {"window": "30d", "limit_usd": "1000000"},
            ],
        });
        let ready = setup::run_with_key(gateway.addr, sim, &key).await?;
        let target = Target::new(
            gateway.addr,
            "/api/v1/chat/completions",
            &[("authorization", format!("Bearer {}", ready.api_key))],
        )?;
        lanes.push(GovernedLane {
            name,
            credit,
            redis: redis.is_some(),
            target,
            gateway,
        });
    }
    Ok(lanes)
}

impl GovernedLane {
    pub fn check_running(&mut self) -> Result<()> {
        self.gateway.child.check_running()
    }

    pub fn addr(&self) -> SocketAddr {
        self.gateway.addr
    }
}

/// The p50 of `n` Redis round trips (`PING`, one at a time, on one connection), in µs: the
/// floor under what a lane whose every request consults Redis can add, measured in the same
/// round as the lanes.
pub async fn redis_round_trip_p50(url: &str, n: usize) -> Result<f64> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let host = url
        .trim_start_matches("redis://")
        .split('/')
        .next()
        .unwrap_or_default();
    let mut stream = tokio::net::TcpStream::connect(host).await?;
    stream.set_nodelay(true)?;
    let mut reply = [0u8; 7];
    let mut samples = Vec::with_capacity(n);
    for _ in 0..n {
        let started = std::time::Instant::now();
        stream.write_all(b"PING\r\n").await?;
        stream.read_exact(&mut reply).await?;
        samples.push(started.elapsed().as_secs_f64() * 1e6);
        anyhow::ensure!(&reply == b"+PONG\r\n", "Redis answered {reply:?} to PING");
    }
    samples.sort_by(f64::total_cmp);
    Ok(samples[samples.len() / 2])
}

/// The gateway's own time on chat requests so far (`morpheus_gateway_overhead_seconds`: each
/// request's time in the gateway less its wait for the provider), as (sum in seconds, count),
/// read from its `/metrics`. Two reads around a lane give that lane's mean, free of the
/// loopback and scheduling noise the client-side latency carries.
pub fn own_time(addr: SocketAddr) -> Result<(f64, u64)> {
    use std::io::{Read, Write};
    let mut stream = TcpStream::connect_timeout(&addr, Duration::from_secs(2))?;
    stream.set_read_timeout(Some(Duration::from_secs(5)))?;
    write!(
        stream,
        "GET /metrics HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n"
    )?;
    let mut text = String::new();
    stream.read_to_string(&mut text)?;
    let sample = |name: &str| {
        text.lines()
            .find_map(|line| line.strip_prefix(name)?.trim().parse::<f64>().ok())
    };
    let sum = sample("morpheus_gateway_overhead_seconds_sum ").unwrap_or(0.0);
    let count = sample("morpheus_gateway_overhead_seconds_count ").unwrap_or(0.0);
    // A count is a whole number of requests.
    Ok((sum, count as u64))
}

/// The mean (µs) of the gateway's own time between two [`own_time`] reads.
pub fn own_time_mean_us(before: (f64, u64), after: (f64, u64)) -> f64 {
    let requests = after.1.saturating_sub(before.1);
    if requests == 0 {
        return f64::NAN;
    }
    (after.0 - before.0) / requests as f64 * 1e6
}
