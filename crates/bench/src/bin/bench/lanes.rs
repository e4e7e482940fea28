//! The measurements, each run against one lane (a [`Target`]): latency at concurrency 1,
//! throughput over N keep-alive connections, time to first token, and many overlapping streams.
//!
//! Connections are opened before the clock starts; requests are built before the clock
//! starts; each timed span is `Instant::now()` around one exchange.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering::Relaxed};
use std::time::{Duration, Instant};

use anyhow::{Result, anyhow, bail};
use bytes::Bytes;
use hdrhistogram::Histogram;
use http_body_util::BodyExt as _;
use hyper::StatusCode;

use morpheus_bench::http::{Conn, Target};
use morpheus_bench::sse::SseScan;
use morpheus_bench::stats::{self, histogram, record};

/// A run stops (as an error) after this many failed requests: something is broken.
const MAX_ERRORS: u64 = 100;
/// A whole stream of the fast lanes.
const STREAM_TIMEOUT: Duration = Duration::from_secs(30);

/// Latency of `n` sequential requests on one connection, after `warmup` untimed ones.
pub struct Latency {
    pub hist: Histogram<u64>,
    pub errors: u64,
}

pub async fn latency(t: &Target, body: &Bytes, warmup: usize, n: usize) -> Result<Latency> {
    let mut conn = Conn::open(t.addr).await?;
    let mut hist = histogram();
    let mut errors = 0;
    for i in 0..warmup + n {
        let req = t.request(body);
        let start = Instant::now();
        let outcome = conn.exchange(req).await;
        let took = start.elapsed();
        match outcome {
            Ok(()) if i >= warmup => record(&mut hist, took),
            Ok(()) => {}
            Err(e) => {
                errors += 1;
                if errors > MAX_ERRORS {
                    bail!("more than {MAX_ERRORS} failed requests; the last: {e:#}");
                }
                conn = Conn::open(t.addr).await?;
            }
        }
    }
    Ok(Latency { hist, errors })
}

/// Requests completed per second over `conns` connections, each sending back to back.
pub struct Throughput {
    pub completed: u64,
    pub errors: u64,
    pub per_second: f64,
    pub hist: Histogram<u64>,
}

/// Every connection sends from the start; completions are counted between `warmup` and
/// `warmup + measure`, and nothing new is sent after that.
pub async fn throughput(
    t: &Target,
    body: &Bytes,
    conns: usize,
    warmup: Duration,
    measure: Duration,
) -> Result<Throughput> {
    let opened = Conn::open_many(t.addr, conns).await?;
    let from = Instant::now() + warmup;
    let until = from + measure;
    let tasks: Vec<_> = opened
        .into_iter()
        .map(|mut conn| {
            let t = t.clone();
            let body = body.clone();
            tokio::spawn(async move {
                let mut hist = histogram();
                let (mut completed, mut errors) = (0u64, 0u64);
                loop {
                    let req = t.request(&body);
                    let start = Instant::now();
                    if start >= until {
                        break;
                    }
                    let outcome = conn.exchange(req).await;
                    let end = Instant::now();
                    let counted = end >= from && end <= until;
                    match outcome {
                        Ok(()) if counted => {
                            completed += 1;
                            record(&mut hist, end - start);
                        }
                        Ok(()) => {}
                        Err(e) => {
                            errors += 1;
                            if errors > MAX_ERRORS {
                                bail!("more than {MAX_ERRORS} failed requests; the last: {e:#}");
                            }
                            conn = Conn::open(t.addr).await?;
                        }
                    }
                }
                Ok::<_, anyhow::Error>((completed, errors, hist))
            })
        })
        .collect();
    let mut out = Throughput {
        completed: 0,
        errors: 0,
        per_second: 0.0,
        hist: histogram(),
    };
    for task in tasks {
        let (completed, errors, hist) = task.await??;
        out.completed += completed;
        out.errors += errors;
        out.hist.add(hist)?;
    }
    out.per_second = out.completed as f64 / measure.as_secs_f64();
    Ok(out)
}

/// What the client saw of one stream.
struct Seen {
    /// When the first content-carrying event arrived.
    first_content: Option<Instant>,
    content_events: u32,
}

async fn one_stream(conn: &mut Conn, t: &Target, body: &Bytes) -> Result<(Instant, Seen)> {
    let req = t.request(body);
    let start = Instant::now();
    let resp = conn.send(req).await?;
    if resp.status() != StatusCode::OK {
        bail!("status {}", resp.status());
    }
    let mut body = resp.into_body();
    let mut scan = SseScan::default();
    let mut first_content = None;
    while let Some(frame) = body.frame().await {
        let now = Instant::now();
        if let Some(data) = frame?.data_ref() {
            let fed = scan.feed(data);
            if fed.content > 0 && first_content.is_none() {
                first_content = Some(now);
            }
        }
    }
    Ok((
        start,
        Seen {
            first_content,
            content_events: scan.content_events,
        },
    ))
}

/// Time to first token of `n` sequential streams on one connection, after `warmup`.
pub struct Ttft {
    pub hist: Histogram<u64>,
    pub errors: u64,
    /// Streams that ended without exactly the expected number of content events.
    pub incomplete: u64,
}

pub async fn ttft(
    t: &Target,
    body: &Bytes,
    warmup: usize,
    n: usize,
    expect_content: u32,
) -> Result<Ttft> {
    let mut conn = Conn::open(t.addr).await?;
    let mut out = Ttft {
        hist: histogram(),
        errors: 0,
        incomplete: 0,
    };
    for i in 0..warmup + n {
        let outcome = tokio::time::timeout(STREAM_TIMEOUT, one_stream(&mut conn, t, body))
            .await
            .unwrap_or_else(|_| Err(anyhow!("stream not finished within {STREAM_TIMEOUT:?}")));
        match outcome {
            Ok((start, seen)) => {
                if seen.content_events != expect_content {
                    out.incomplete += 1;
                    if i == 0 {
                        bail!(
                            "a stream carried {} content events, {expect_content} expected",
                            seen.content_events
                        );
                    }
                }
                if let (Some(first), true) = (seen.first_content, i >= warmup) {
                    record(&mut out.hist, first - start);
                }
            }
            Err(e) => {
                out.errors += 1;
                if out.errors > MAX_ERRORS || i == 0 {
                    bail!("stream failed: {e:#}");
                }
                conn = Conn::open(t.addr).await?;
            }
        }
    }
    Ok(out)
}

/// `n` streams started at once on `n` connections.
pub struct Many {
    pub streams: usize,
    pub completed: usize,
    pub failed: usize,
    pub first_errors: Vec<String>,
    /// Gaps between consecutive reads that brought events, over all streams.
    pub gaps: Histogram<u64>,
    pub worst_gap: Duration,
    /// From sending the request to the first event.
    pub first_event: Histogram<u64>,
    /// Most streams that had begun and not yet ended at one time.
    pub peak_open: usize,
    pub wall: Duration,
}

struct StreamReport {
    completed: bool,
    error: Option<String>,
    gaps_us: Vec<u32>,
    worst_gap: Duration,
    first_event: Option<Duration>,
}

pub async fn many_streams(
    t: &Target,
    body: &Bytes,
    n: usize,
    expect_content: u32,
    timeout: Duration,
) -> Result<Many> {
    let conns = Conn::open_many(t.addr, n).await?;
    let (go_tx, go_rx) = tokio::sync::watch::channel(false);
    let open = Arc::new(AtomicUsize::new(0));
    let peak = Arc::new(AtomicUsize::new(0));
    let tasks: Vec<_> = conns
        .into_iter()
        .map(|mut conn| {
            let (t, body, mut go) = (t.clone(), body.clone(), go_rx.clone());
            let (open, peak) = (Arc::clone(&open), Arc::clone(&peak));
            tokio::spawn(async move {
                let _ = go.wait_for(|go| *go).await;
                let mut report = StreamReport {
                    completed: false,
                    error: None,
                    gaps_us: Vec::with_capacity(expect_content as usize + 4),
                    worst_gap: Duration::ZERO,
                    first_event: None,
                };
                let began = AtomicBool::new(false);
                let run = async {
                    let req = t.request(&body);
                    let start = Instant::now();
                    let resp = conn.send(req).await?;
                    if resp.status() != StatusCode::OK {
                        bail!("status {}", resp.status());
                    }
                    let mut body = resp.into_body();
                    let mut scan = SseScan::default();
                    let mut last: Option<Instant> = None;
                    while let Some(frame) = body.frame().await {
                        let now = Instant::now();
                        let Some(data) = frame?.data_ref().map(|d| scan.feed(d)) else {
                            continue;
                        };
                        if data.data == 0 {
                            continue;
                        }
                        match last {
                            Some(prev) => {
                                let gap = now - prev;
                                report.worst_gap = report.worst_gap.max(gap);
                                report
                                    .gaps_us
                                    .push(u32::try_from(gap.as_micros()).unwrap_or(u32::MAX));
                            }
                            None => {
                                report.first_event = Some(now - start);
                                began.store(true, Relaxed);
                                let now_open = open.fetch_add(1, Relaxed) + 1;
                                peak.fetch_max(now_open, Relaxed);
                            }
                        }
                        last = Some(now);
                    }
                    if scan.content_events != expect_content {
                        bail!(
                            "ended after {} of {expect_content} content events",
                            scan.content_events
                        );
                    }
                    Ok(())
                };
                match tokio::time::timeout(timeout, run).await {
                    Ok(Ok(())) => report.completed = true,
                    Ok(Err(e)) => report.error = Some(format!("{e:#}")),
                    Err(_) => report.error = Some(format!("not finished within {timeout:?}")),
                }
                if began.load(Relaxed) {
                    open.fetch_sub(1, Relaxed);
                }
                report
            })
        })
        .collect();
    let started = Instant::now();
    go_tx.send(true)?;
    let mut out = Many {
        streams: n,
        completed: 0,
        failed: 0,
        first_errors: Vec::new(),
        gaps: histogram(),
        worst_gap: Duration::ZERO,
        first_event: histogram(),
        peak_open: 0,
        wall: Duration::ZERO,
    };
    for task in tasks {
        let r = task.await?;
        if r.completed {
            out.completed += 1;
        } else {
            out.failed += 1;
        }
        if let Some(e) = r.error
            && out.first_errors.len() < 5
        {
            out.first_errors.push(e);
        }
        for us in r.gaps_us {
            stats::record(&mut out.gaps, Duration::from_micros(u64::from(us)));
        }
        out.worst_gap = out.worst_gap.max(r.worst_gap);
        if let Some(d) = r.first_event {
            record(&mut out.first_event, d);
        }
    }
    out.wall = started.elapsed();
    out.peak_open = peak.load(Relaxed);
    Ok(out)
}

/// One request of a closed-loop run: when it was sent and when its answer ended.
#[derive(Clone, Copy)]
pub struct Sample {
    pub start: Instant,
    pub end: Instant,
}

/// Closed-loop load until told to stop: `conns` connections each sending back to back, every
/// exchange kept, so the caller picks its window once it knows when the warm-up ended.
pub struct Saturation {
    pub samples: Vec<Sample>,
    pub errors: u64,
    pub first_errors: Vec<String>,
}

pub async fn saturate(
    t: &Target,
    body: &Bytes,
    conns: usize,
    stop: tokio::sync::watch::Receiver<bool>,
) -> Result<Saturation> {
    let opened = Conn::open_many(t.addr, conns).await?;
    let tasks: Vec<_> = opened
        .into_iter()
        .map(|mut conn| {
            let (t, body, stop) = (t.clone(), body.clone(), stop.clone());
            tokio::spawn(async move {
                let mut out = Saturation {
                    samples: Vec::new(),
                    errors: 0,
                    first_errors: Vec::new(),
                };
                while !*stop.borrow() {
                    let req = t.request(&body);
                    let start = Instant::now();
                    match conn.exchange(req).await {
                        Ok(()) => out.samples.push(Sample {
                            start,
                            end: Instant::now(),
                        }),
                        Err(e) => {
                            out.errors += 1;
                            if out.first_errors.len() < 5 {
                                out.first_errors.push(format!("{e:#}"));
                            }
                            if out.errors > MAX_ERRORS {
                                bail!("more than {MAX_ERRORS} failed requests; the last: {e:#}");
                            }
                            conn = Conn::open(t.addr).await?;
                        }
                    }
                }
                Ok::<_, anyhow::Error>(out)
            })
        })
        .collect();
    let mut all = Saturation {
        samples: Vec::new(),
        errors: 0,
        first_errors: Vec::new(),
    };
    for task in tasks {
        let one = task.await??;
        all.samples.extend(one.samples);
        all.errors += one.errors;
        for e in one.first_errors {
            if all.first_errors.len() < 5 {
                all.first_errors.push(e);
            }
        }
    }
    Ok(all)
}
