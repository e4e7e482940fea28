//! An open-loop load generator at a fixed rate over keep-alive connections, wrk2-style: each
//! of `conns` connections owns an evenly spaced share of the schedule, and a request's
//! latency is measured from the moment it was *meant* to be sent, so a stalled server shows
//! up as the latency its clients would really see (no coordinated omission, like oha's
//! `--latency-correction`).

use std::collections::BTreeMap;
use std::time::Duration;

use anyhow::Result;
use bytes::Bytes;
use hdrhistogram::Histogram;
use morpheus_bench::http::{Conn, Target, drain};
use morpheus_bench::stats::{histogram, percentile_us, record};
use serde_json::{Value, json};
use tokio::time::Instant;

/// How hard and how long to push.
#[derive(Debug, Clone, Copy)]
pub struct Rate {
    pub rps: f64,
    pub conns: usize,
    /// Sent but not counted.
    pub warmup: Duration,
    pub measure: Duration,
    /// A request without its whole answer by then counts as a timeout.
    pub timeout: Duration,
}

/// What came back from the counted part of a run.
pub struct RateRun {
    pub rps: f64,
    pub sent: u64,
    pub ok: u64,
    /// Non-2xx answers by status.
    pub statuses: BTreeMap<u16, u64>,
    /// Connections refused, reset or closed mid-exchange.
    pub socket_errors: u64,
    pub timeouts: u64,
    /// 2xx answers, from the intended send time.
    pub ok_latency: Histogram<u64>,
    /// 429 and 503 answers, from the actual send time: how fast the excess is turned away.
    pub rejected_latency: Histogram<u64>,
    pub first_error: Option<String>,
    /// When each counted request actually left, and whether it got a 2xx.
    pub sends: Vec<(Instant, bool)>,
}

impl RateRun {
    /// Requests that actually left before `t`, and how many of those failed.
    pub fn sent_before(&self, t: Instant) -> (u64, u64) {
        let before = self.sends.iter().filter(|(at, _)| *at < t);
        let (mut sent, mut failed) = (0, 0);
        for (_, ok) in before {
            sent += 1;
            failed += u64::from(!ok);
        }
        (sent, failed)
    }

    pub fn non_2xx(&self) -> u64 {
        self.statuses.values().sum()
    }

    pub fn rejected(&self) -> u64 {
        self.statuses.get(&429).unwrap_or(&0) + self.statuses.get(&503).unwrap_or(&0)
    }

    pub fn failures(&self) -> u64 {
        self.non_2xx() + self.socket_errors + self.timeouts
    }

    pub fn error_rate(&self) -> f64 {
        if self.sent == 0 {
            return 0.0;
        }
        self.failures() as f64 / self.sent as f64
    }

    /// A 2xx percentile in microseconds.
    pub fn p(&self, pct: f64) -> f64 {
        percentile_us(&self.ok_latency, pct)
    }

    pub fn json(&self) -> Value {
        let ms = |us: f64| crate::outcome::ms(us);
        json!({
            "rate_rps": self.rps,
            "sent": self.sent,
            "ok": self.ok,
            "non_2xx": self.statuses.iter().map(|(s, n)| (s.to_string(), json!(n))).collect::<serde_json::Map<_, _>>(),
            "socket_errors": self.socket_errors,
            "timeouts": self.timeouts,
            "p50_ms": ms(self.p(50.0)),
            "p90_ms": ms(self.p(90.0)),
            "p99_ms": ms(self.p(99.0)),
            "p99_9_ms": ms(self.p(99.9)),
            "rejected_p99_ms": ms(percentile_us(&self.rejected_latency, 99.0)),
            "first_error": self.first_error,
        })
    }
}

/// What one exchange ended in.
enum Outcome {
    Status(u16),
    Socket(String),
    Timeout,
}

async fn exchange(conn: &mut Conn, t: &Target, body: &Bytes, timeout: Duration) -> Outcome {
    let req = t.request(body);
    let run = async {
        let resp = conn.send(req).await?;
        let status = resp.status().as_u16();
        drain(resp.into_body()).await?;
        Ok::<_, anyhow::Error>(status)
    };
    match tokio::time::timeout(timeout, run).await {
        Ok(Ok(status)) => Outcome::Status(status),
        Ok(Err(e)) => Outcome::Socket(format!("{e:#}")),
        Err(_) => Outcome::Timeout,
    }
}

/// Sends `body` to `t` at `rate.rps` for `warmup + measure`.
pub async fn fixed_rate(t: &Target, body: &Bytes, rate: Rate) -> Result<RateRun> {
    let conns = Conn::open_many(t.addr, rate.conns).await?;
    // Each connection sends every `interval`, the connections evenly staggered.
    let interval = Duration::from_secs_f64(rate.conns as f64 / rate.rps);
    let start = Instant::now() + Duration::from_millis(20);
    let from = start + rate.warmup;
    let until = from + rate.measure;
    let tasks: Vec<_> = conns
        .into_iter()
        .enumerate()
        .map(|(i, mut conn)| {
            let (t, body) = (t.clone(), body.clone());
            let offset = interval.mul_f64(i as f64 / rate.conns as f64);
            tokio::spawn(async move {
                let mut run = empty(rate.rps);
                let mut broken = false;
                for k in 0u32.. {
                    let intended = start + offset + interval * k;
                    if intended >= until {
                        break;
                    }
                    tokio::time::sleep_until(intended).await;
                    // A server may close a connection after an answer (`Connection: close`,
                    // e.g. after turning a request away unread): a client simply reconnects.
                    if broken || conn.is_closed() {
                        match Conn::open(t.addr).await {
                            Ok(c) => {
                                conn = c;
                                broken = false;
                            }
                            Err(e) => {
                                if intended >= from {
                                    run.sent += 1;
                                    run.sends.push((Instant::now(), false));
                                    run.socket_errors += 1;
                                    run.first_error.get_or_insert(format!("{e:#}"));
                                }
                                continue;
                            }
                        }
                    }
                    let sent_at = Instant::now();
                    let outcome = exchange(&mut conn, &t, &body, rate.timeout).await;
                    let end = Instant::now();
                    if intended < from {
                        broken = !matches!(outcome, Outcome::Status(_));
                        continue;
                    }
                    run.sent += 1;
                    let ok = matches!(outcome, Outcome::Status(s) if (200..300).contains(&s));
                    run.sends.push((sent_at, ok));
                    match outcome {
                        Outcome::Status(s) if (200..300).contains(&s) => {
                            run.ok += 1;
                            record(&mut run.ok_latency, end - intended);
                        }
                        Outcome::Status(s) => {
                            *run.statuses.entry(s).or_default() += 1;
                            if s == 429 || s == 503 {
                                record(&mut run.rejected_latency, end - sent_at);
                            }
                            run.first_error.get_or_insert(format!("status {s}"));
                        }
                        Outcome::Socket(e) => {
                            run.socket_errors += 1;
                            run.first_error.get_or_insert(e);
                            broken = true;
                        }
                        Outcome::Timeout => {
                            run.timeouts += 1;
                            run.first_error
                                .get_or_insert(format!("no answer within {:?}", rate.timeout));
                            broken = true;
                        }
                    }
                }
                run
            })
        })
        .collect();
    let mut total = empty(rate.rps);
    for task in tasks {
        let run = task.await?;
        total.sent += run.sent;
        total.ok += run.ok;
        for (s, n) in run.statuses {
            *total.statuses.entry(s).or_default() += n;
        }
        total.socket_errors += run.socket_errors;
        total.timeouts += run.timeouts;
        total.ok_latency.add(run.ok_latency)?;
        total.rejected_latency.add(run.rejected_latency)?;
        total.sends.extend(run.sends);
        if total.first_error.is_none() {
            total.first_error = run.first_error;
        }
    }
    Ok(total)
}

fn empty(rps: f64) -> RateRun {
    RateRun {
        rps,
        sent: 0,
        ok: 0,
        statuses: BTreeMap::new(),
        socket_errors: 0,
        timeouts: 0,
        ok_latency: histogram(),
        rejected_latency: histogram(),
        first_error: None,
        sends: Vec::new(),
    }
}
