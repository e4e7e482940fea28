//! E6 · Graceful shutdown: under E1-type load (non-stream chat at 200 requests per second,
//! each held 300 ms by the simulator so that dozens are in flight) with 50 active streams and
//! a few idle keep-alive connections, the gateway gets SIGTERM. Half of the streams end well
//! within the drain window, half would outlast it and must receive the terminal error event.

use std::time::Duration;

use anyhow::Result;
use bytes::Bytes;
use hyper::Method;
use morpheus_bench::http::{self, Conn};
use serde_json::json;
use tokio::time::Instant;

use crate::load::{self, Rate};
use crate::outcome::Outcome;
use crate::progress;
use crate::rig::{Ctx, Rig};
use crate::streams::{self, End};

const STREAMS: usize = 50;
const IDLE_CONNS: usize = 10;
const CHAT_RPS: f64 = 200.0;
/// The simulator holds every chat this long, so about 60 are in flight at any moment.
const UPSTREAM_MS: u64 = 300;
const CHUNK_DELAY_MS: u64 = 50;
/// When SIGTERM goes out after the load started.
const SIGNAL_AFTER: Duration = Duration::from_secs(2);
/// The load's last request leaves this long before the signal: still in flight then (the
/// simulator holds each for 300 ms), and none is sent on a connection already being closed.
const LAST_SEND_MARGIN: Duration = Duration::from_millis(250);
/// The streams that should finish inside the drain window last this long.
const SHORT_STREAM_MS: u64 = 3_000;

pub async fn run(ctx: &Ctx) -> Result<Outcome> {
    let mut out = Outcome::new("e6", "Graceful shutdown");
    // The default window is 30 s; the short run uses 5 s, which exercises the same path.
    let grace_s: u64 = if ctx.long { 30 } else { 5 };
    let mut rig = Rig::start(
        ctx,
        "e6",
        &[("MORPHEUS_SHUTDOWN_GRACE_SECONDS", grace_s.to_string())],
    )
    .await?;
    let (gw, sim) = (rig.gw_addr, rig.sim_addr);
    morpheus_bench::setup::set_chunk_delay(sim, CHUNK_DELAY_MS).await?;
    let fault = json!({"route": "chat", "kind": {"type": "latency", "ms": UPSTREAM_MS}});
    let (s, _) = http::call(sim, Method::POST, "/__sim/faults", &[], Some(&fault)).await?;
    anyhow::ensure!(s.is_success(), "installing the simulator's latency: {s}");

    // Streams: half end about 1 s after the signal, half would run for twice the window.
    let chunks = |ms: u64| u32::try_from(ms / CHUNK_DELAY_MS).unwrap_or(u32::MAX);
    let (short, long) = (chunks(SHORT_STREAM_MS), chunks(grace_s * 2_000));
    let bodies: Vec<Bytes> = (0..STREAMS)
        .map(|i| {
            let n = if i % 2 == 0 { short } else { long };
            morpheus_bench::stack::chat_body(rig.model(), n - 1, n, true)
        })
        .collect();
    let mut idle = Vec::with_capacity(IDLE_CONNS);
    for _ in 0..IDLE_CONNS {
        let mut c = Conn::open(gw).await?;
        let req = http::request(gw, Method::GET, "/health", &[], None)?;
        http::drain(c.send(req).await?.into_body()).await?;
        idle.push(c);
    }
    let body = morpheus_bench::stack::chat_body(rig.model(), 20, 21, false);
    let chat = rig.gateway()?;
    let stream_target = rig.gateway()?;
    let streams = tokio::spawn(async move {
        streams::run(
            &stream_target,
            &bodies,
            Duration::ZERO,
            Duration::from_secs(grace_s * 3 + 10),
        )
        .await
    });
    let load_until_signal = tokio::spawn({
        async move {
            load::fixed_rate(
                &chat,
                &body,
                Rate {
                    rps: CHAT_RPS,
                    conns: 128,
                    warmup: Duration::ZERO,
                    measure: SIGNAL_AFTER - LAST_SEND_MARGIN,
                    timeout: Duration::from_secs(grace_s + 5),
                },
            )
            .await
        }
    });
    // The load's last requests are sent just before the signal: they are the in-flight ones.
    tokio::time::sleep(SIGNAL_AFTER).await;
    progress(format!(
        "E6: SIGTERM with {STREAMS} streams and about {} chats in flight…",
        (CHAT_RPS * UPSTREAM_MS as f64 / 1000.0) as u64
    ));
    rig.gw.signal(libc::SIGTERM)?;
    let signalled = Instant::now();

    // New connections after the signal.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let refused = match Conn::open(gw).await {
        Err(_) => true,
        Ok(mut c) => {
            let req = http::request(gw, Method::GET, "/health", &[], None)?;
            tokio::time::timeout(Duration::from_secs(1), c.send(req))
                .await
                .map_or(true, |r| r.is_err())
        }
    };
    tokio::time::sleep(Duration::from_millis(700)).await;
    let idle_closed = idle.iter().filter(|c| c.is_closed()).count();

    let mut exit = None;
    let deadline = signalled + Duration::from_secs(grace_s + 10);
    while Instant::now() < deadline {
        if let Some(status) = rig.gw.try_exit()? {
            exit = Some((status, signalled.elapsed()));
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let in_flight = load_until_signal.await??;
    let streams = streams.await??;

    let done = streams.count(|e| *e == End::Done);
    let told =
        streams.count(|e| matches!(e, End::ErrorEvent(p) if p.contains("gateway_shutting_down")));
    let cut = STREAMS - done - told;
    // Only what actually left before the signal was in flight: a load generator running late
    // on a busy machine sends some of its schedule after it.
    let (in_flight_sent, in_flight_failed) = in_flight.sent_before(signalled);
    let sent_after = in_flight.sent - in_flight_sent;
    out.line(
        format!(
            "{in_flight_sent} chats sent before SIGTERM, {in_flight_failed} of them failed ({sent_after} sent late, after it, {} failed); streams: {done} finished, {told} told gateway_shutting_down, {cut} cut otherwise; idle keep-alive closed {idle_closed}/{IDLE_CONNS}; new connection refused: {refused}; exit {}",
            in_flight.failures() - in_flight_failed,
            match &exit {
                Some((s, took)) => format!("{s} after {:.2} s", took.as_secs_f64()),
                None => "none".to_owned(),
            }
        ),
    );
    out.figure("chat_in_flight", in_flight.json());
    out.figure("grace_seconds", grace_s);
    out.figure(
        "streams",
        json!({"finished": done, "told_shutting_down": told, "cut": cut, "first_failure": streams.first_failure()}),
    );
    out.criterion(
        "non-stream requests sent before SIGTERM that failed",
        format!("{in_flight_failed} of {in_flight_sent}"),
        "0",
        in_flight_failed == 0 && in_flight_sent > 0,
    );
    out.criterion(
        "idle keep-alive connections closed within 1 s",
        format!("{idle_closed}/{IDLE_CONNS}"),
        "all",
        idle_closed == IDLE_CONNS,
    );
    out.criterion(
        "a new connection after SIGTERM is refused",
        if refused { "refused" } else { "served" },
        "refused",
        refused,
    );
    out.criterion(
        "streams finished or told gateway_shutting_down",
        format!(
            "{} of {STREAMS} ({done} finished, {told} told)",
            done + told
        ),
        "all",
        cut == 0,
    );
    let (code_ok, took) = match &exit {
        Some((status, took)) => (status.code() == Some(0), took.as_secs_f64()),
        None => (false, f64::NAN),
    };
    out.criterion(
        "exit after SIGTERM",
        match &exit {
            Some((s, _)) => format!("{s} after {took:.2} s"),
            None => "still running".to_owned(),
        },
        &format!("code 0 within {} s", grace_s + 1),
        code_ok && took <= (grace_s + 1) as f64,
    );
    rig.alive().ok();
    Ok(out)
}
