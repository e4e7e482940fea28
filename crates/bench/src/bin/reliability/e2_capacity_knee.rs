//! E2 · Capacity knee and load shedding: non-stream chat through the gateway in steps of
//! +250 requests per second until more than 0.1 % fail or p99 passes 50 ms; the last step
//! that held is the knee. Then 1.5× the knee, offered over many more connections than the
//! gateway admits at once, so the excess reaches the gateway instead of queueing in the load
//! generator: it must be turned away fast (429/503), and what is accepted must stay quick.

use std::time::Duration;

use anyhow::Result;
use morpheus_bench::stats::percentile_us;
use serde_json::json;

use crate::load::{self, Rate};
use crate::outcome::{Outcome, ms};
use crate::progress;
use crate::rig::{Ctx, Rig};

const STEP_RPS: f64 = 250.0;
/// The short run starts at the floor: the steps below it prove nothing the floor does not,
/// and a 2-core machine gets to about 6,000 (at 5 s a step, every step counts).
const SHORT_FIRST_RPS: f64 = KNEE_FLOOR_RPS;
/// Where the steps stop even without a failure: far beyond the floor, and the load generator
/// shares its core with the simulator.
const MAX_RPS: f64 = 6000.0;
const MAX_ERROR_RATE: f64 = 0.001;
const MAX_P99_MS: f64 = 50.0;
const KNEE_FLOOR_RPS: f64 = 1000.0;
const OVERLOAD_FACTOR: f64 = 1.5;
const CONNS: usize = 64;
/// Connections offering the overload: more than the gateway's in-flight limit for chat.
const OVERLOAD_CONNS: usize = 1024;
const FAST_REJECTION_MS: f64 = 10.0;

pub async fn run(ctx: &mut Ctx) -> Result<Outcome> {
    let mut out = Outcome::new("e2", "Capacity knee and load shedding");
    let mut rig = Rig::start(ctx, "e2", &[]).await?;
    let body = morpheus_bench::stack::chat_body(
        rig.model(),
        crate::e1_fixed_rate::WORDS,
        crate::e1_fixed_rate::WORDS + 1,
        false,
    );
    let gateway = rig.gateway()?;
    let step_seconds = if ctx.long { 30 } else { 5 };
    let mut knee: Option<(f64, f64)> = None;
    let mut failed_first = String::from("nothing failed up to the last step");
    let mut steps = Vec::new();
    let mut step_line = Vec::new();
    let mut rps = if ctx.long { STEP_RPS } else { SHORT_FIRST_RPS };
    while rps <= MAX_RPS {
        let run = load::fixed_rate(
            &gateway,
            &body,
            Rate {
                rps,
                conns: CONNS,
                warmup: Duration::from_millis(500),
                measure: Duration::from_secs(step_seconds),
                timeout: Duration::from_secs(5),
            },
        )
        .await?;
        rig.alive()?;
        let (p99, rate) = (ms(run.p(99.0)), run.error_rate());
        progress(format!(
            "E2 step {rps} RPS: p99 {p99} ms, failed {:.3} %",
            rate * 100.0
        ));
        steps.push(json!({"rps": rps, "p99_ms": p99, "error_rate": rate, "run": run.json()}));
        step_line.push(format!("{rps}: {p99}"));
        if rate > MAX_ERROR_RATE || p99 > MAX_P99_MS {
            failed_first = if rate > MAX_ERROR_RATE {
                format!(
                    "errors at {rps} RPS: {:.3} % ({})",
                    rate * 100.0,
                    run.first_error.unwrap_or_default()
                )
            } else {
                format!("latency at {rps} RPS: p99 {p99} ms")
            };
            break;
        }
        knee = Some((rps, p99));
        rps += STEP_RPS;
    }
    out.line(format!("steps (RPS: p99 ms): {}", step_line.join(", ")));
    out.figure("steps", steps);
    out.line(format!("what failed first: {failed_first}"));
    out.figure("failed_first", failed_first);
    let Some((knee_rps, knee_p99)) = knee else {
        out.target(
            "knee",
            format!("none: the first step ({}) failed", steps_first(ctx)),
            "≥ 1000 RPS",
            false,
        );
        return Ok(out);
    };
    ctx.knee_rps = Some(knee_rps);
    out.line(format!("knee: {knee_rps} RPS, p99 {knee_p99} ms"));
    out.figure("knee_rps", knee_rps);
    out.figure("knee_p99_ms", knee_p99);
    out.target(
        "knee",
        format!("{knee_rps} RPS (p99 {knee_p99} ms)"),
        &format!("≥ {KNEE_FLOOR_RPS} RPS"),
        knee_rps >= KNEE_FLOOR_RPS,
    );

    let overload_rps = knee_rps * OVERLOAD_FACTOR;
    let over = load::fixed_rate(
        &gateway,
        &body,
        Rate {
            rps: overload_rps,
            conns: OVERLOAD_CONNS,
            warmup: Duration::from_secs(1),
            measure: Duration::from_secs(if ctx.long { 60 } else { 10 }),
            timeout: Duration::from_secs(5),
        },
    )
    .await?;
    rig.alive()?;
    let rejected_p99 = ms(percentile_us(&over.rejected_latency, 99.0));
    let accepted_p99 = ms(over.p(99.0));
    let others = over.failures() - over.rejected();
    progress(format!(
        "E2 overload {overload_rps} RPS: {} accepted (p99 {accepted_p99} ms), {} rejected (p99 {rejected_p99} ms), {others} other failures",
        over.ok,
        over.rejected()
    ));
    out.figure("overload", over.json());
    out.line(
        format!(
            "{overload_rps} RPS over {OVERLOAD_CONNS} connections: {} accepted, p99 {accepted_p99} ms; {} turned away (429/503), p99 {rejected_p99} ms; {others} timeouts, socket errors or other statuses",
            over.ok,
            over.rejected()
        ),
    );
    out.criterion(
        "overload: the excess is turned away (429/503), not timed out or broken",
        format!("{others} timeouts, socket errors or other statuses"),
        "0",
        others == 0,
    );
    out.target(
        "overload: turned-away answers p99",
        if over.rejected() == 0 {
            "none turned away".to_owned()
        } else {
            format!("{rejected_p99} ms")
        },
        &format!("< {FAST_REJECTION_MS} ms"),
        over.rejected() == 0 || rejected_p99 < FAST_REJECTION_MS,
    );
    out.target(
        "overload: accepted requests p99",
        format!("{accepted_p99} ms"),
        &format!("≤ 2 × knee p99 = {} ms", knee_p99 * 2.0),
        accepted_p99 <= knee_p99 * 2.0,
    );
    Ok(out)
}

fn steps_first(ctx: &Ctx) -> String {
    let first = if ctx.long { STEP_RPS } else { SHORT_FIRST_RPS };
    format!("{first} RPS")
}
