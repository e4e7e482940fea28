//! `morpheus-bench`: what the gateway adds over calling the proxy-router directly, measured
//! against `morpheus-router-sim`. Run it with `bench/run` (it builds the binaries first).
//! See crates/bench/README.md for the method.

mod governed;
mod lanes;
mod provider;
mod realistic;
mod report;

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use anyhow::{Context as _, Result, bail};
use clap::Parser;
use morpheus_bench::http::Target;
use morpheus_bench::procs::{self, Machine};
use morpheus_bench::setup;
use morpheus_bench::stack::{self, Bins, chat_body};
use serde_json::json;

use crate::report::{Pinning, Results, Round};

/// Measures the latency, throughput, time to first token, stream capacity, memory and
/// start-up of morpheus-gateway against morpheus-router-sim, lane "direct" (load generator →
/// simulator) against lane "gateway" (load generator → gateway → simulator), interleaved; and
/// the same small chat against morpheus-openai-mock, directly and through a gateway routing to
/// it as a plain OpenAI-compatible provider.
#[derive(Parser, Debug)]
#[command(name = "morpheus-bench", version)]
struct Args {
    /// Rounds of the interleaved lane comparisons (figures 1–3).
    #[arg(long, default_value_t = 3)]
    rounds: usize,
    /// Small counts and durations: a smoke run well under a minute.
    #[arg(long)]
    quick: bool,
    /// Where the JSON results go [default: <target dir>/bench/results.json].
    #[arg(long)]
    out: Option<PathBuf>,
    /// Wait after the 1,000 streams before the last RSS reading [default: 60, quick: 5].
    #[arg(long)]
    settle_seconds: Option<u64>,
    /// Directory holding morpheus-gateway, morpheus-router-sim and morpheus-openai-mock
    /// [default: this binary's].
    #[arg(long)]
    bin_dir: Option<PathBuf>,
    /// Do not pin processes to cores.
    #[arg(long)]
    no_pin: bool,
    /// Run only the realistic lane (provider latency, slow opens, the session pool's cap).
    #[arg(long)]
    realistic_only: bool,
    /// The realistic lane's gateway pool cap (`MORPHEUS_POOL_MAX_SESSIONS_PER_MODEL`).
    #[arg(long, default_value_t = 8)]
    realistic_cap: u32,
    /// The realistic lane's concurrent clients [default: twice the cap].
    #[arg(long)]
    realistic_clients: Option<usize>,
}

/// Counts and durations of one run.
#[derive(Debug, Clone)]
pub struct Plan {
    pub rounds: usize,
    pub startup_runs: usize,
    pub c1_warmup: usize,
    pub c1_requests: usize,
    pub c64_conns: usize,
    pub c64_warmup: Duration,
    pub c64_measure: Duration,
    pub ttft_warmup: usize,
    pub ttft_streams: usize,
    pub ttft_chunks: u32,
    pub many_streams: usize,
    pub many_chunks: u32,
    pub many_chunk_delay_ms: u64,
    pub settle: Duration,
    pub realistic_cap: u32,
    pub realistic_clients: usize,
    pub realistic_first_token: Duration,
    pub realistic_open_latency: Duration,
    /// The most the realistic lane waits for the pool to reach its cap.
    pub realistic_warmup_max: Duration,
    pub realistic_window: Duration,
}

impl Plan {
    fn new(args: &Args) -> Self {
        let quick = args.quick;
        Self {
            rounds: args.rounds.max(1),
            startup_runs: if quick { 3 } else { 5 },
            c1_warmup: if quick { 50 } else { 500 },
            c1_requests: if quick { 300 } else { 3000 },
            c64_conns: 64,
            c64_warmup: Duration::from_millis(if quick { 200 } else { 1000 }),
            c64_measure: Duration::from_millis(if quick { 1000 } else { 5000 }),
            ttft_warmup: if quick { 10 } else { 100 },
            ttft_streams: if quick { 100 } else { 1000 },
            ttft_chunks: 64,
            many_streams: 1000,
            many_chunks: if quick { 20 } else { 40 },
            many_chunk_delay_ms: 50,
            settle: Duration::from_secs(args.settle_seconds.unwrap_or(if quick { 5 } else { 60 })),
            realistic_cap: args.realistic_cap.max(1),
            realistic_clients: args
                .realistic_clients
                .unwrap_or(args.realistic_cap.max(1) as usize * 2)
                .max(1),
            realistic_first_token: Duration::from_millis(300),
            realistic_open_latency: Duration::from_millis(1500),
            realistic_warmup_max: Duration::from_secs(15),
            realistic_window: Duration::from_secs(if quick { 5 } else { 20 }),
        }
    }

    pub fn json(&self) -> serde_json::Value {
        json!({
            "rounds": self.rounds,
            "startup_runs": self.startup_runs,
            "c1_warmup_requests": self.c1_warmup,
            "c1_requests_per_round": self.c1_requests,
            "c64_connections": self.c64_conns,
            "c64_warmup_seconds": self.c64_warmup.as_secs_f64(),
            "c64_seconds_per_round": self.c64_measure.as_secs_f64(),
            "ttft_warmup_streams": self.ttft_warmup,
            "ttft_streams_per_round": self.ttft_streams,
            "ttft_content_chunks": self.ttft_chunks,
            "many_streams": self.many_streams,
            "many_content_chunks": self.many_chunks,
            "many_chunk_delay_ms": self.many_chunk_delay_ms,
            "settle_seconds": self.settle.as_secs_f64(),
            "realistic_pool_cap": self.realistic_cap,
            "realistic_clients": self.realistic_clients,
            "realistic_first_token_ms": self.realistic_first_token.as_secs_f64() * 1000.0,
            "realistic_open_latency_ms": self.realistic_open_latency.as_secs_f64() * 1000.0,
            "realistic_warmup_max_seconds": self.realistic_warmup_max.as_secs_f64(),
            "realistic_seconds": self.realistic_window.as_secs_f64(),
        })
    }
}

fn main() -> ExitCode {
    let args = Args::parse();
    match run(&args) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("morpheus-bench: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn run(args: &Args) -> Result<()> {
    let plan = Plan::new(args);
    let bins = Bins::locate(
        args.bin_dir.as_deref(),
        "run bench/run (it builds morpheus-gateway, morpheus-router-sim, morpheus-openai-mock \
         and morpheus-bench in release mode first)",
    )?;
    let out = match &args.out {
        Some(p) => p.clone(),
        None => bins.target_dir().join("bench/results.json"),
    };
    let nofile = procs::raise_nofile()?;
    let need = plan.many_streams as u64 * 3 + 1000;
    if nofile < need {
        bail!(
            "the open-files limit is {nofile}; {need} are needed for {} streams (ulimit -n)",
            plan.many_streams
        );
    }
    let machine = Machine::describe();
    // Load generator and simulator on core 0, the gateway alone on core 1.
    let pinning = if args.no_pin {
        Pinning::off("--no-pin")
    } else if machine.cores < 2 {
        Pinning::off("fewer than 2 cores")
    } else {
        match procs::pin_current_thread(0) {
            Ok(()) => Pinning::on(),
            Err(e) => Pinning::off(&format!("{e:#}")),
        }
    };
    // One thread: the load generator stays on its core and pays no cross-thread wake-ups.
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let wall = Instant::now();
    if args.realistic_only {
        let lane = rt.block_on(realistic_only(&plan, &bins, &pinning))?;
        let (table, doc) = report::render_realistic_only(&lane, &machine, &pinning, &plan);
        println!("{table}");
        return write_json(&out, &doc);
    }
    let mut results = rt.block_on(bench(&plan, &bins, machine, pinning))?;
    results.wall_seconds = wall.elapsed().as_secs_f64();
    let (table, doc) = report::render(&results);
    println!("{table}");
    write_json(&out, &doc)
}

fn write_json(out: &std::path::Path, doc: &serde_json::Value) -> Result<()> {
    if let Some(dir) = out.parent() {
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    }
    std::fs::write(out, serde_json::to_string_pretty(doc)? + "\n")
        .with_context(|| format!("writing {}", out.display()))?;
    println!("results: {}", out.display());
    Ok(())
}

fn cores(pinning: &Pinning) -> (Option<usize>, Option<usize>) {
    if pinning.enabled {
        (Some(0), Some(1))
    } else {
        (None, None)
    }
}

async fn realistic_only(
    plan: &Plan,
    bins: &Bins,
    pinning: &Pinning,
) -> Result<realistic::Realistic> {
    let tmp = tempfile::Builder::new()
        .prefix("morpheus-bench-")
        .tempdir()?;
    let lane = realistic::run(plan, bins, tmp.path(), cores(pinning)).await?;
    progress(lane.one_line());
    Ok(lane)
}

pub fn progress(msg: impl AsRef<str>) {
    eprintln!("[bench] {}", msg.as_ref());
}

async fn bench(plan: &Plan, bins: &Bins, machine: Machine, pinning: Pinning) -> Result<Results> {
    let tmp = tempfile::Builder::new()
        .prefix("morpheus-bench-")
        .tempdir()?;
    let (core_lg, core_gw) = cores(&pinning);
    progress(format!("machine: {}", machine.one_line()));
    let (sim, sim_addr) = stack::start_sim(bins, tmp.path(), core_lg, &[])?;
    progress(format!("simulator on {sim_addr} (pid {})", sim.pid()));

    // 6. Start-up, each on a fresh, empty SQLite database and data directory.
    let mut startup_ms = Vec::new();
    for i in 0..plan.startup_runs {
        let dir = tmp.path().join(format!("startup-{i}"));
        let gw = stack::start_gateway(bins, &dir, sim_addr, core_gw, &[])?;
        let took = gw.startup;
        drop(gw);
        startup_ms.push(took.as_secs_f64() * 1000.0);
        progress(format!(
            "start-up {}: {:.1} ms",
            i + 1,
            took.as_secs_f64() * 1000.0
        ));
    }

    let stack::Gateway {
        child: mut gw,
        addr: gw_addr,
        ..
    } = stack::start_gateway(bins, &tmp.path().join("gateway"), sim_addr, core_gw, &[])?;
    let gw_pid = gw.pid();
    let pinning = pinning.observed(std::process::id(), sim.pid(), gw_pid);
    progress(format!(
        "gateway on {gw_addr} (pid {gw_pid}); {}",
        pinning.describe()
    ));

    tokio::time::sleep(Duration::from_millis(500)).await;
    let rss_fresh_kib = procs::rss_kib(gw_pid)?;
    let ready = setup::run(gw_addr, sim_addr).await?;
    progress(format!(
        "set up: model {} ({}), gateway key {}…, direct session {}",
        ready.model,
        ready.blockchain_id,
        &ready.api_key[..ready.api_key.len().min(9)],
        ready.sim_session
    ));
    tokio::time::sleep(Duration::from_secs(1)).await;
    let rss_idle_kib = procs::rss_kib(gw_pid)?;
    progress(format!("gateway RSS idle: {rss_idle_kib} KiB"));

    let direct = Target::new(
        sim_addr,
        "/v1/chat/completions",
        &[
            ("authorization", setup::basic_auth()),
            ("session_id", ready.sim_session.clone()),
        ],
    )?;
    let gateway = Target::new(
        gw_addr,
        "/api/v1/chat/completions",
        &[("authorization", format!("Bearer {}", ready.api_key))],
    )?;
    let redis = governed::redis_url();
    let mut governed = governed::start(
        bins,
        &tmp.path().join("governed"),
        sim_addr,
        core_gw,
        redis.as_deref(),
    )
    .await?;
    progress(format!(
        "governed lanes: {}{}",
        governed
            .iter()
            .map(|l| l.name)
            .collect::<Vec<_>>()
            .join("; "),
        if redis.is_none() {
            " (no Redis reachable: the Redis lanes are skipped)"
        } else {
            ""
        }
    ));
    let mut provider = provider::start(
        bins,
        &tmp.path().join("provider"),
        sim_addr,
        (core_lg, core_gw),
    )
    .await?;
    let pinning = pinning.observed_provider(provider.mock_pid(), provider.gateway_pid());
    progress(format!(
        "plain-provider lane: openai-mock on {} (pid {}, cores {}), its gateway on {} (pid {}, \
         cores {}), model {} → {}",
        provider.direct.addr,
        provider.mock_pid(),
        pinning.mock_cpus,
        provider.gateway_addr(),
        provider.gateway_pid(),
        pinning.provider_gateway_cpus,
        provider::MODEL,
        provider::UPSTREAM_MODEL
    ));
    let small = chat_body(&ready.model, 4, 16, false);
    let streamed = chat_body(&ready.model, plan.ttft_chunks - 1, plan.ttft_chunks, true);

    let mut rounds = Vec::new();
    for r in 1..=plan.rounds {
        let mut round = Round::default();
        let warm = if r == 1 {
            plan.c1_warmup
        } else {
            plan.c1_warmup / 5
        };
        round.c1_direct = lanes::latency(&direct, &small, warm, plan.c1_requests)
            .await?
            .into();
        let before = governed::own_time(gw_addr)?;
        round.c1_gateway = lanes::latency(&gateway, &small, warm, plan.c1_requests)
            .await?
            .into();
        round.c1_gateway_own_us = governed::own_time_mean_us(before, governed::own_time(gw_addr)?);
        progress(format!(
            "round {r}/{}: c=1 p50 direct {:.1} µs, gateway {:.1} µs",
            plan.rounds, round.c1_direct.p50_us, round.c1_gateway.p50_us
        ));
        if let Some(url) = &redis {
            round.redis_round_trip_us =
                Some(governed::redis_round_trip_p50(url, plan.c1_requests).await?);
        }
        for lane in &mut governed {
            let before = governed::own_time(lane.addr())?;
            let measured: report::LatencySummary =
                lanes::latency(&lane.target, &small, warm, plan.c1_requests)
                    .await?
                    .into();
            round.c1_governed_own_us.push(governed::own_time_mean_us(
                before,
                governed::own_time(lane.addr())?,
            ));
            progress(format!(
                "round {r}/{}: c=1 p50 governed ({}) {:.1} µs",
                plan.rounds, lane.name, measured.p50_us
            ));
            round.c1_governed.push(measured);
            lane.check_running()?;
        }
        // The plain-provider lane: the mock directly, then through its gateway.
        round.provider_c1_direct = lanes::latency(
            &provider.direct,
            &provider.direct_body,
            warm,
            plan.c1_requests,
        )
        .await?
        .into();
        let before = governed::own_time(provider.gateway_addr())?;
        round.provider_c1_gateway = lanes::latency(
            &provider.through,
            &provider.through_body,
            warm,
            plan.c1_requests,
        )
        .await?
        .into();
        round.provider_own_us =
            governed::own_time_mean_us(before, governed::own_time(provider.gateway_addr())?);
        progress(format!(
            "round {r}/{}: c=1 p50 openai-mock direct {:.1} µs, through the gateway {:.1} µs \
             (its own time {:.1} µs)",
            plan.rounds,
            round.provider_c1_direct.p50_us,
            round.provider_c1_gateway.p50_us,
            round.provider_own_us
        ));
        let (cw, cm, cn) = (plan.c64_warmup, plan.c64_measure, plan.c64_conns);
        round.c64_direct = lanes::throughput(&direct, &small, cn, cw, cm).await?.into();
        round.c64_gateway = lanes::throughput(&gateway, &small, cn, cw, cm)
            .await?
            .into();
        progress(format!(
            "round {r}/{}: c={cn} direct {:.0}/s, gateway {:.0}/s",
            plan.rounds, round.c64_direct.per_second, round.c64_gateway.per_second
        ));
        round.provider_c64_direct =
            lanes::throughput(&provider.direct, &provider.direct_body, cn, cw, cm)
                .await?
                .into();
        round.provider_c64_gateway =
            lanes::throughput(&provider.through, &provider.through_body, cn, cw, cm)
                .await?
                .into();
        progress(format!(
            "round {r}/{}: c={cn} openai-mock direct {:.0}/s, through the gateway {:.0}/s",
            plan.rounds,
            round.provider_c64_direct.per_second,
            round.provider_c64_gateway.per_second
        ));
        provider.check_running()?;
        let (tw, tn, tc) = (plan.ttft_warmup, plan.ttft_streams, plan.ttft_chunks);
        round.ttft_direct = lanes::ttft(&direct, &streamed, tw, tn, tc).await?.into();
        round.ttft_gateway = lanes::ttft(&gateway, &streamed, tw, tn, tc).await?.into();
        progress(format!(
            "round {r}/{}: TTFT p50 direct {:.1} µs, gateway {:.1} µs",
            plan.rounds, round.ttft_direct.p50_us, round.ttft_gateway.p50_us
        ));
        gw.check_running()?;
        rounds.push(round);
    }
    let rss_after_rounds_kib = procs::rss_kib(gw_pid)?;
    let governed_lanes: Vec<report::GovernedLaneInfo> = governed
        .iter()
        .map(|l| report::GovernedLaneInfo {
            name: l.name,
            credit: l.credit,
            redis: l.redis,
        })
        .collect();
    let redis_reachable = redis.is_some();
    drop(governed);
    drop(provider);
    progress(report::provider_line(&rounds));

    // 4 and 5: many slow streams at once through the gateway, RSS sampled every 10 ms.
    setup::set_chunk_delay(sim_addr, plan.many_chunk_delay_ms).await?;
    let slow = chat_body(&ready.model, plan.many_chunks - 1, plan.many_chunks, true);
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let sampler = {
        let stop = std::sync::Arc::clone(&stop);
        tokio::spawn(async move {
            let mut peak = 0;
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                peak = peak.max(procs::rss_kib(gw_pid).unwrap_or(0));
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
            peak.max(procs::rss_kib(gw_pid).unwrap_or(0))
        })
    };
    progress(format!(
        "{} concurrent streams of {} chunks, {} ms apart…",
        plan.many_streams, plan.many_chunks, plan.many_chunk_delay_ms
    ));
    let many = lanes::many_streams(
        &gateway,
        &slow,
        plan.many_streams,
        plan.many_chunks,
        Duration::from_secs(120),
    )
    .await;
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let rss_peak_kib = sampler.await?;
    let many = many?;
    setup::set_chunk_delay(sim_addr, 0).await?;
    progress(format!(
        "streams: {}/{} completed, worst gap {:.1} ms, peak open {}, peak RSS {rss_peak_kib} KiB",
        many.completed,
        many.streams,
        many.worst_gap.as_secs_f64() * 1000.0,
        many.peak_open
    ));
    gw.check_running()?;

    progress(format!("settling {} s…", plan.settle.as_secs()));
    tokio::time::sleep(plan.settle).await;
    let rss_settled_kib = procs::rss_kib(gw_pid)?;
    gw.check_running()?;
    drop(gw);
    drop(sim);

    // 7. The realistic lane, on a simulator and gateway of its own.
    let realistic = realistic::run(
        plan,
        bins,
        &tmp.path().join("realistic"),
        (core_lg, core_gw),
    )
    .await?;
    progress(realistic.one_line());

    Ok(Results {
        machine,
        pinning,
        plan: plan.clone(),
        startup_ms,
        rounds,
        many,
        rss_fresh_kib,
        rss_idle_kib,
        rss_after_rounds_kib,
        rss_peak_kib,
        rss_settled_kib,
        realistic,
        governed_lanes,
        redis_reachable,
        model: ready.model,
        wall_seconds: 0.0,
    })
}
