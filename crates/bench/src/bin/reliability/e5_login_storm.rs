//! E5 · Login storm: 200 connections logging in over and over (argon2, about 25 ms of CPU
//! each) while chat runs at 200 requests per second; `/health` polled alongside. The login
//! throttles are raised for the run: all the load comes from one address and one account, and
//! what is measured is the hashing path, not the throttle.

use std::collections::BTreeMap;
use std::time::Duration;

use anyhow::Result;
use bytes::Bytes;
use hdrhistogram::Histogram;
use hyper::Method;
use morpheus_bench::http::{Conn, Target, drain};
use morpheus_bench::stats::{histogram, percentile_us, record};
use serde_json::json;
use tokio::time::Instant;

use crate::load::{self, Rate};
use crate::outcome::{Outcome, mib, ms};
use crate::progress;
use crate::rig::{self, Ctx, Rig};
use crate::sampler::RssPeak;

const CHAT_RPS: f64 = 200.0;
const LOGINS: usize = 200;
const HEALTH_EVERY: Duration = Duration::from_millis(50);
const ARGON2_MIB: u64 = 19;
const FAST_REJECTION_MS: f64 = 10.0;

pub async fn run(ctx: &Ctx) -> Result<Outcome> {
    let mut out = Outcome::new("e5", "Login storm");
    let mut rig = Rig::start(ctx, "e5", &rig::raised_login_limits()).await?;
    let pid = rig.gw_pid();
    let chat = rig.gateway()?;
    let body = morpheus_bench::stack::chat_body(
        rig.model(),
        crate::e1_fixed_rate::WORDS,
        crate::e1_fixed_rate::WORDS + 1,
        false,
    );
    let (before_s, storm_s) = if ctx.long { (30, 60) } else { (5, 10) };
    let chat_rate = |seconds| Rate {
        rps: CHAT_RPS,
        conns: 16,
        warmup: Duration::from_secs(1),
        measure: Duration::from_secs(seconds),
        timeout: Duration::from_secs(5),
    };
    let rss_baseline = morpheus_bench::procs::rss_kib(pid)?;
    let health = tokio::spawn(poll_health(rig.gw_addr, Duration::from_secs(before_s + 1)));
    let before = load::fixed_rate(&chat, &body, chat_rate(before_s)).await?;
    let health_before = health.await??;
    rig.alive()?;

    progress(format!(
        "E5: {LOGINS} concurrent logins for {storm_s} s under chat at {CHAT_RPS} RPS…"
    ));
    let peak = RssPeak::start(pid);
    let storm_for = Duration::from_secs(storm_s + 1);
    let storm = tokio::spawn(login_storm(rig.gw_addr, storm_for));
    let health = tokio::spawn(poll_health(rig.gw_addr, storm_for));
    let during = load::fixed_rate(&chat, &body, chat_rate(storm_s)).await?;
    let logins = storm.await??;
    let health_during = health.await??;
    let rss_peak = peak.stop().await;
    rig.alive()?;

    let hash_slots = hash_concurrency(ctx);
    let rss_limit = rss_baseline + hash_slots * ARGON2_MIB * 1024;
    let (p99_before, p99_during) = (ms(before.p(99.0)), ms(during.p(99.0)));
    let health_p99 = ms(percentile_us(&health_during.latency, 99.0));
    let rejected =
        logins.statuses.get(&429).unwrap_or(&0) + logins.statuses.get(&503).unwrap_or(&0);
    let rejected_p99 = ms(percentile_us(&logins.rejected, 99.0));
    let per_second = logins.ok as f64 / storm_for.as_secs_f64();
    let other_login_failures = logins.sent - logins.ok - rejected;
    out.line(
        format!(
            "chat p99 {p99_before} ms before, {p99_during} ms during; /health p99 {health_p99} ms; logins {:.1}/s ({} ok, {rejected} turned away with p99 {rejected_p99} ms, {other_login_failures} other failures); RSS {} → peak {} MiB",
            per_second,
            logins.ok,
            mib(rss_baseline),
            mib(rss_peak)
        ),
    );
    out.figure("chat_before", before.json());
    out.figure("chat_during", during.json());
    out.figure(
        "health",
        json!({"before_p99_ms": ms(percentile_us(&health_before.latency, 99.0)), "during_p99_ms": health_p99, "during_max_ms": ms(health_during.latency.max() as f64 / 1000.0), "failures": health_before.failures + health_during.failures}),
    );
    out.figure(
        "logins",
        json!({"sent": logins.sent, "ok": logins.ok, "per_second": (per_second * 10.0).round() / 10.0,
               "statuses": logins.statuses.iter().map(|(s, n)| (s.to_string(), json!(n))).collect::<serde_json::Map<_, _>>(),
               "socket_errors": logins.socket_errors,
               "ok_p50_ms": ms(percentile_us(&logins.accepted, 50.0)), "ok_p99_ms": ms(percentile_us(&logins.accepted, 99.0)),
               "rejected_p50_ms": ms(percentile_us(&logins.rejected, 50.0)), "rejected_p99_ms": rejected_p99}),
    );
    out.figure("rss_baseline_mib", mib(rss_baseline));
    out.figure("rss_peak_mib", mib(rss_peak));
    out.figure("hash_slots", hash_slots);
    out.target(
        "chat p99 during the storm",
        format!("{p99_during} ms (before {p99_before} ms)"),
        &format!("< 2 × before = {} ms", p99_before * 2.0),
        p99_during < p99_before * 2.0,
    );
    out.criterion(
        "chat failures during the storm",
        during.failures().to_string(),
        "0",
        during.failures() == 0 && before.failures() == 0,
    );
    out.target(
        "/health p99 during the storm",
        format!("{health_p99} ms ({} failed)", health_during.failures),
        "< 50 ms, none failed",
        health_p99 < 50.0 && health_during.failures == 0,
    );
    out.target(
        "excess logins turned away fast (429/503)",
        format!(
            "{rejected} turned away, p99 {rejected_p99} ms; {other_login_failures} other failures"
        ),
        &format!("p99 < {FAST_REJECTION_MS} ms, no other failures"),
        other_login_failures == 0 && (rejected == 0 || rejected_p99 < FAST_REJECTION_MS),
    );
    out.target(
        "RSS peak",
        format!("{} MiB", mib(rss_peak)),
        &format!(
            "≤ baseline + {hash_slots} hashing slots × {ARGON2_MIB} MiB = {} MiB",
            mib(rss_limit)
        ),
        rss_peak <= rss_limit,
    );
    Ok(out)
}

/// The gateway's argon2 slots: its default is one per core it may run on.
fn hash_concurrency(ctx: &Ctx) -> u64 {
    match ctx.cores {
        Some(_) => 1,
        None => std::thread::available_parallelism().map_or(1, |n| n.get() as u64),
    }
}

struct Logins {
    sent: u64,
    ok: u64,
    statuses: BTreeMap<u16, u64>,
    socket_errors: u64,
    accepted: Histogram<u64>,
    rejected: Histogram<u64>,
}

/// `LOGINS` connections, each logging in again as soon as it has its answer, for `span`.
async fn login_storm(gw: std::net::SocketAddr, span: Duration) -> Result<Logins> {
    let target = Target::new(gw, "/api/v1/auth/login", &[])?;
    let body = Bytes::from(
        json!({"email": morpheus_bench::setup::EMAIL, "password": morpheus_bench::setup::PASSWORD})
            .to_string(),
    );
    let conns = Conn::open_many(gw, LOGINS).await?;
    let until = Instant::now() + span;
    let tasks: Vec<_> = conns
        .into_iter()
        .map(|mut conn| {
            let (target, body) = (target.clone(), body.clone());
            tokio::spawn(async move {
                let mut l = Logins {
                    sent: 0,
                    ok: 0,
                    statuses: BTreeMap::new(),
                    socket_errors: 0,
                    accepted: histogram(),
                    rejected: histogram(),
                };
                while Instant::now() < until {
                    let start = Instant::now();
                    l.sent += 1;
                    let answer = tokio::time::timeout(Duration::from_secs(10), async {
                        let resp = conn.send(target.request(&body)).await?;
                        let status = resp.status().as_u16();
                        drain(resp.into_body()).await?;
                        Ok::<_, anyhow::Error>(status)
                    })
                    .await;
                    match answer {
                        Ok(Ok(200)) => {
                            l.ok += 1;
                            record(&mut l.accepted, start.elapsed());
                        }
                        Ok(Ok(s)) => {
                            *l.statuses.entry(s).or_default() += 1;
                            if s == 429 || s == 503 {
                                record(&mut l.rejected, start.elapsed());
                            }
                        }
                        _ => {
                            l.socket_errors += 1;
                            match Conn::open(gw).await {
                                Ok(c) => conn = c,
                                Err(_) => tokio::time::sleep(Duration::from_millis(10)).await,
                            }
                        }
                    }
                }
                l
            })
        })
        .collect();
    let mut all = Logins {
        sent: 0,
        ok: 0,
        statuses: BTreeMap::new(),
        socket_errors: 0,
        accepted: histogram(),
        rejected: histogram(),
    };
    for task in tasks {
        let l = task.await?;
        all.sent += l.sent;
        all.ok += l.ok;
        all.socket_errors += l.socket_errors;
        for (s, n) in l.statuses {
            *all.statuses.entry(s).or_default() += n;
        }
        all.accepted.add(l.accepted)?;
        all.rejected.add(l.rejected)?;
    }
    Ok(all)
}

struct Health {
    latency: Histogram<u64>,
    failures: u64,
}

/// `GET /health` every 50 ms on one keep-alive connection for `span`.
async fn poll_health(gw: std::net::SocketAddr, span: Duration) -> Result<Health> {
    let mut conn = Conn::open(gw).await?;
    let mut h = Health {
        latency: histogram(),
        failures: 0,
    };
    let until = Instant::now() + span;
    let mut every = tokio::time::interval(HEALTH_EVERY);
    while Instant::now() < until {
        every.tick().await;
        let mut req = hyper::Request::new(http_body_util::Full::new(Bytes::new()));
        *req.method_mut() = Method::GET;
        *req.uri_mut() = "/health".parse()?;
        req.headers_mut()
            .insert(hyper::header::HOST, gw.to_string().parse()?);
        let start = Instant::now();
        let answer = tokio::time::timeout(Duration::from_secs(5), async {
            let resp = conn.send(req).await?;
            let ok = resp.status().is_success();
            drain(resp.into_body()).await?;
            Ok::<_, anyhow::Error>(ok)
        })
        .await;
        match answer {
            Ok(Ok(true)) => record(&mut h.latency, start.elapsed()),
            _ => {
                h.failures += 1;
                conn = Conn::open(gw).await?;
            }
        }
    }
    Ok(h)
}
