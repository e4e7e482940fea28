//! E1 · Overhead at a fixed rate: non-stream chat at 200, 500 and 1,000 requests per second
//! over 64 keep-alive connections, straight at the simulator and then through the gateway
//! (API-key authentication, usage records); latency from the intended send time.

use std::time::Duration;

use anyhow::Result;
use serde_json::json;

use crate::load::{self, Rate, RateRun};
use crate::outcome::{Outcome, ms};
use crate::progress;
use crate::rig::{Ctx, Rig};
use crate::sampler::CpuMeter;

pub const RATES: [f64; 3] = [200.0, 500.0, 1000.0];
const CONNS: usize = 64;
/// The rate the overhead target is judged at.
const JUDGED_RPS: f64 = 500.0;
const OVERHEAD_P99_MS: f64 = 5.0;

/// Words in the chat message: the simulator's echo is then about 1 KB of JSON, as the
/// checklist's mock answers.
pub const WORDS: u32 = 100;

pub async fn run(ctx: &Ctx) -> Result<Outcome> {
    let mut out = Outcome::new("e1", "Overhead at a fixed rate");
    let mut rig = Rig::start(ctx, "e1", &[]).await?;
    let body = morpheus_bench::stack::chat_body(rig.model(), WORDS, WORDS + 1, false);
    let (direct, gateway) = (rig.direct()?, rig.gateway()?);
    let seconds = if ctx.long { 60 } else { 4 };
    let rate = |rps| Rate {
        rps,
        conns: CONNS,
        warmup: Duration::from_millis(500),
        measure: Duration::from_secs(seconds),
        timeout: Duration::from_secs(5),
    };
    let (mut failures, mut judged_overhead) = (0, f64::NAN);
    for rps in RATES {
        let d = load::fixed_rate(&direct, &body, rate(rps)).await?;
        let cpu = CpuMeter::start(rig.gw_pid());
        let g = load::fixed_rate(&gateway, &body, rate(rps)).await?;
        let cpu = cpu.percent();
        let overhead = |p| ms(g.p(p) - d.p(p));
        progress(format!(
            "E1 {rps} RPS: p99 direct {} ms, gateway {} ms; gateway CPU {cpu} %",
            ms(d.p(99.0)),
            ms(g.p(99.0))
        ));
        failures += d.failures() + g.failures();
        if rps == JUDGED_RPS {
            judged_overhead = overhead(99.0);
        }
        out.figure(
            &format!("rps_{rps}"),
            json!({
                "direct": d.json(),
                "gateway": g.json(),
                "overhead_ms": {"p50": overhead(50.0), "p90": overhead(90.0), "p99": overhead(99.0), "p99_9": overhead(99.9)},
                "gateway_cpu_percent": cpu,
            }),
        );
        out.line(format!("{rps} RPS: {}", summary(&d, &g, cpu)));
        rig.alive()?;
    }
    out.criterion(
        "non-2xx answers, socket errors and timeouts, all rates and lanes",
        failures.to_string(),
        "0",
        failures == 0,
    );
    out.target(
        "gateway overhead p99 at 500 RPS",
        format!("{judged_overhead} ms"),
        &format!("≤ {OVERHEAD_P99_MS} ms"),
        judged_overhead <= OVERHEAD_P99_MS,
    );
    Ok(out)
}

fn summary(d: &RateRun, g: &RateRun, cpu: f64) -> String {
    let p = |r: &RateRun| {
        format!(
            "{}/{}/{}/{}",
            ms(r.p(50.0)),
            ms(r.p(90.0)),
            ms(r.p(99.0)),
            ms(r.p(99.9))
        )
    };
    format!(
        "p50/p90/p99/p99.9 ms direct {}, gateway {}; overhead p99 {} ms; gateway CPU {cpu} %; failures {}+{}",
        p(d),
        p(g),
        ms(g.p(99.0) - d.p(99.0)),
        d.failures(),
        g.failures()
    )
}
