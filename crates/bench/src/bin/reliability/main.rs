//! `morpheus-reliability`: checklist items E1–E6 of the reliability guide (load and soak) as
//! one program. Each check starts a fresh simulator and gateway, prints its report figures,
//! judges its pass criteria (behaviour: a miss fails the run) and reports its performance
//! targets (speed and memory: a miss is reported, as in the benchmark); the process exits
//! non-zero when any check fails. The figures
//! also go to `<target>/reliability/results.json`. Run it with `bench/reliability` (it builds
//! the binaries first). See crates/bench/README.md.

mod e1_fixed_rate;
mod e2_capacity_knee;
mod e3_stream_concurrency;
mod e4_soak;
mod e5_login_storm;
mod e6_graceful_shutdown;
mod load;
mod outcome;
mod rig;
mod sampler;
mod streams;

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Instant;

use anyhow::{Context as _, Result, bail};
use clap::{Parser, Subcommand};
use morpheus_bench::procs::{self, Machine};
use morpheus_bench::stack::Bins;
use serde_json::json;

use crate::outcome::Outcome;
use crate::rig::Ctx;

/// Checklist items E1–E6: overhead at a fixed rate, capacity knee and load shedding, stream
/// concurrency, soak, login storm, graceful shutdown; against morpheus-router-sim.
#[derive(Parser, Debug)]
#[command(name = "morpheus-reliability", version)]
struct Args {
    #[command(subcommand)]
    check: Check,
    /// The long variants (60 s rates, 30 s steps, 30 min soak, 30 s streams and drain window).
    #[arg(long, global = true)]
    long: bool,
    /// Where the JSON results go [default: <target dir>/reliability/results.json].
    #[arg(long, global = true)]
    out: Option<PathBuf>,
    /// Directory holding morpheus-gateway and morpheus-router-sim [default: this binary's].
    #[arg(long, global = true)]
    bin_dir: Option<PathBuf>,
    /// Do not pin processes to cores.
    #[arg(long, global = true)]
    no_pin: bool,
    /// E4's rate when E2 has not run first to find the knee.
    #[arg(long, global = true, default_value_t = 300.0)]
    soak_rate: f64,
}

#[derive(Subcommand, Debug, Clone, Copy, PartialEq, Eq)]
enum Check {
    /// E1 · overhead at 200, 500 and 1,000 requests per second
    E1,
    /// E2 · capacity knee, then 1.5× the knee
    E2,
    /// E3 · 1,000 concurrent streams
    E3,
    /// E4 · soak with a mixed load
    E4,
    /// E5 · login storm under chat load
    E5,
    /// E6 · SIGTERM under load with streams
    E6,
    /// All of them, E2 before E4 (its knee sets E4's rate)
    All,
}

const ALL: [Check; 6] = [
    Check::E1,
    Check::E2,
    Check::E3,
    Check::E5,
    Check::E4,
    Check::E6,
];

fn main() -> ExitCode {
    let args = Args::parse();
    match run(&args) {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::FAILURE,
        Err(e) => {
            eprintln!("morpheus-reliability: {e:#}");
            ExitCode::FAILURE
        }
    }
}

pub fn progress(msg: impl AsRef<str>) {
    eprintln!("[reliability] {}", msg.as_ref());
}

/// Runs the checks asked for; `Ok(true)` when all passed.
fn run(args: &Args) -> Result<bool> {
    let bins = Bins::locate(
        args.bin_dir.as_deref(),
        "run bench/reliability (it builds morpheus-gateway, morpheus-router-sim and \
         morpheus-reliability in release mode first)",
    )?;
    let out_path = args
        .out
        .clone()
        .unwrap_or_else(|| bins.target_dir().join("reliability/results.json"));
    // 1,000 streams and a 1,024-connection overload hold about 3,000 sockets.
    let nofile = procs::raise_nofile()?;
    if nofile < 4000 {
        bail!("the open-files limit is {nofile}; 4000 are needed (ulimit -n)");
    }
    let machine = Machine::describe();
    progress(format!("machine: {}", machine.one_line()));
    // Load generator and simulator on core 0, the gateway alone on core 1, as the benchmark.
    let cores = if args.no_pin || machine.cores < 2 {
        None
    } else {
        procs::pin_current_thread(0)?;
        Some((0, 1))
    };
    let mut ctx = Ctx {
        bins,
        long: args.long,
        cores,
        tmp: tempfile::Builder::new()
            .prefix("morpheus-reliability-")
            .tempdir()?,
        knee_rps: None,
        soak_rate: args.soak_rate,
    };
    let checks: Vec<Check> = if args.check == Check::All {
        ALL.to_vec()
    } else {
        vec![args.check]
    };
    // One thread: the load generator stays on its core and pays no cross-thread wake-ups.
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let wall = Instant::now();
    let mut outcomes = Vec::new();
    for check in checks {
        let started = Instant::now();
        let outcome = rt.block_on(one(&mut ctx, check));
        progress(format!(
            "{} took {:.0} s",
            outcome.id.to_uppercase(),
            started.elapsed().as_secs_f64()
        ));
        println!("{}", outcome.render());
        outcomes.push(outcome);
    }
    let passed = outcomes.iter().all(Outcome::passed);
    let doc = json!({
        "machine": {
            "cpu": machine.cpu_model, "cores": machine.cores, "kernel": machine.kernel,
            "memory_mib": machine.memory_mib, "load_at_start": machine.load_at_start,
            "idle_policy": machine.idle_policy,
            "load_at_end": procs::load_average(),
        },
        "pinned": cores.is_some(),
        "long": args.long,
        "wall_seconds": wall.elapsed().as_secs_f64(),
        "passed": passed,
        "checks": outcomes.iter().map(Outcome::json).collect::<Vec<_>>(),
    });
    if let Some(dir) = out_path.parent() {
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    }
    std::fs::write(&out_path, serde_json::to_string_pretty(&doc)? + "\n")
        .with_context(|| format!("writing {}", out_path.display()))?;
    let verdicts: Vec<String> = outcomes
        .iter()
        .map(|o| {
            let missed = match o.targets_missed() {
                0 => String::new(),
                n => format!(" ({n} target{} not met)", if n == 1 { "" } else { "s" }),
            };
            format!(
                "{} {}{missed}",
                o.id.to_uppercase(),
                if o.passed() { "pass" } else { "FAIL" }
            )
        })
        .collect();
    println!(
        "\n{} in {:.0} s; results: {}",
        verdicts.join(", "),
        wall.elapsed().as_secs_f64(),
        out_path.display()
    );
    Ok(passed)
}

/// One check; an error becomes a failed outcome so the others still run.
async fn one(ctx: &mut Ctx, check: Check) -> Outcome {
    let result = match check {
        Check::E1 => e1_fixed_rate::run(ctx).await,
        Check::E2 => e2_capacity_knee::run(ctx).await,
        Check::E3 => e3_stream_concurrency::run(ctx).await,
        Check::E4 => e4_soak::run(ctx).await,
        Check::E5 => e5_login_storm::run(ctx).await,
        Check::E6 => e6_graceful_shutdown::run(ctx).await,
        Check::All => unreachable!("expanded by the caller"),
    };
    result.unwrap_or_else(|e| {
        let (id, title) = match check {
            Check::E1 => ("e1", "Overhead at a fixed rate"),
            Check::E2 => ("e2", "Capacity knee and load shedding"),
            Check::E3 => ("e3", "Stream concurrency"),
            Check::E4 => ("e4", "Soak"),
            Check::E5 => ("e5", "Login storm"),
            Check::E6 | Check::All => ("e6", "Graceful shutdown"),
        };
        let mut failed = Outcome::new(id, title);
        failed.error = Some(format!("{e:#}"));
        failed
    })
}
