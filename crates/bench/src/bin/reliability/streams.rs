//! Many SSE streams started together on connections opened beforehand, each watched for its
//! time to first event, the gaps between reads that brought events, and how it ended: with
//! `data: [DONE]`, with an error event, or broken.

use std::time::Duration;

use anyhow::Result;
use bytes::Bytes;
use hdrhistogram::Histogram;
use http_body_util::BodyExt as _;
use morpheus_bench::http::{Conn, Target};
use morpheus_bench::sse::SseScan;
use morpheus_bench::stats::{histogram, record};
use tokio::time::Instant;

/// How one stream ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum End {
    /// `data: [DONE]` after the expected number of content events.
    Done,
    /// The body ended without `[DONE]` (the simulator's own streams end like that).
    Ended,
    /// A terminal `data: {"error":…}` event, its payload.
    ErrorEvent(String),
    /// Not a 200, a broken connection, or no end within the timeout.
    Failed(String),
}

pub struct StreamsRun {
    pub ends: Vec<End>,
    /// Request sent → first `data:` event.
    pub first_event: Histogram<u64>,
    /// Between consecutive reads that brought events, over all streams.
    pub gaps: Histogram<u64>,
    /// Content events counted per stream (for "all chunks arrived").
    pub content_events: Vec<u32>,
}

impl StreamsRun {
    pub fn count(&self, pred: impl Fn(&End) -> bool) -> usize {
        self.ends.iter().filter(|e| pred(e)).count()
    }

    pub fn first_failure(&self) -> Option<String> {
        self.ends.iter().find_map(|e| match e {
            End::Failed(why) => Some(why.clone()),
            _ => None,
        })
    }
}

struct One {
    end: End,
    first_event: Option<Duration>,
    gaps: Vec<Duration>,
    content: u32,
}

/// Opens `bodies.len()` connections, then starts one stream on each, the starts spread
/// evenly over `ramp` (zero: all at the same moment).
pub async fn run(
    t: &Target,
    bodies: &[Bytes],
    ramp: Duration,
    timeout: Duration,
) -> Result<StreamsRun> {
    let n = bodies.len().max(1);
    let conns = Conn::open_many(t.addr, bodies.len()).await?;
    let (go_tx, go_rx) = tokio::sync::watch::channel(false);
    let tasks: Vec<_> = conns
        .into_iter()
        .zip(bodies.iter().cloned())
        .enumerate()
        .map(|(i, (mut conn, body))| {
            let (t, mut go) = (t.clone(), go_rx.clone());
            let delay = ramp.mul_f64(i as f64 / n as f64);
            tokio::spawn(async move {
                let _ = go.wait_for(|go| *go).await;
                tokio::time::sleep(delay).await;
                let mut one = One {
                    end: End::Failed(String::new()),
                    first_event: None,
                    gaps: Vec::new(),
                    content: 0,
                };
                let watched = watch(&mut conn, &t, &body, &mut one);
                one.end = match tokio::time::timeout(timeout, watched).await {
                    Ok(Ok(end)) => end,
                    Ok(Err(e)) => End::Failed(format!("{e:#}")),
                    Err(_) => End::Failed(format!("not ended within {timeout:?}")),
                };
                one
            })
        })
        .collect();
    go_tx.send(true)?;
    let mut out = StreamsRun {
        ends: Vec::with_capacity(tasks.len()),
        first_event: histogram(),
        gaps: histogram(),
        content_events: Vec::with_capacity(tasks.len()),
    };
    for task in tasks {
        let one = task.await?;
        if let Some(d) = one.first_event {
            record(&mut out.first_event, d);
        }
        for g in one.gaps {
            record(&mut out.gaps, g);
        }
        out.content_events.push(one.content);
        out.ends.push(one.end);
    }
    Ok(out)
}

async fn watch(conn: &mut Conn, t: &Target, body: &Bytes, one: &mut One) -> Result<End> {
    let req = t.request(body);
    let start = Instant::now();
    let resp = conn.send(req).await?;
    if !resp.status().is_success() {
        anyhow::bail!("status {}", resp.status());
    }
    let mut body = resp.into_body();
    let mut scan = SseScan::default();
    let mut last: Option<Instant> = None;
    while let Some(frame) = body.frame().await {
        let now = Instant::now();
        let Some(fed) = frame?.data_ref().map(|d| scan.feed(d)) else {
            continue;
        };
        if fed.data == 0 {
            continue;
        }
        match last {
            Some(prev) => one.gaps.push(now - prev),
            None => one.first_event = Some(now - start),
        }
        last = Some(now);
    }
    one.content = scan.content_events;
    Ok(match (scan.done, scan.error) {
        (true, _) => End::Done,
        (false, Some(payload)) => End::ErrorEvent(payload),
        (false, None) => End::Ended,
    })
}
