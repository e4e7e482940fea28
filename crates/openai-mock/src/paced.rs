//! Answers sent in pieces by a producer task that paces them ([`MockConfig::chunk_delay`]) and
//! carries out the stream faults: chat and transcription streams, speech audio.
//!
//! [`MockConfig::chunk_delay`]: crate::MockConfig::chunk_delay

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use hyper::Response;
use hyper::header::{self, HeaderValue};
use tokio::sync::mpsc;

use crate::body::{Event, MockBody};
use crate::counters::bump;
use crate::faults::{FaultKind, FaultRoute, Stage};
use crate::reply::Reply;
use crate::state::Shared;

/// Before a cut, time for the pieces already handed over to leave the socket: hyper drops
/// what it still buffers when the body fails.
const CUT_GRACE: Duration = Duration::from_millis(20);

/// How a stream fault ends a stream before its end.
#[derive(Clone, Copy)]
enum Stop {
    Cut,
    Stall,
}

/// A body to send piece by piece.
pub(crate) struct Pieces {
    pub content_type: &'static str,
    pub pieces: Vec<Bytes>,
    /// Pieces before the answer ones (a chat stream's role chunk), always sent.
    pub lead: usize,
    /// Answer pieces after the lead, the ones `cut_after_chunks` counts; the pieces after
    /// them (a finish chunk, `[DONE]`) are never reached by a stream fault.
    pub answer: usize,
}

/// Starts the producer and answers with a chunked body, after taking the stream fault for
/// `route`, if any.
pub(crate) fn respond(shared: &Arc<Shared>, route: FaultRoute, body: Pieces) -> Reply {
    let stop = shared.faults.take(route, Stage::Stream).map(|fault| {
        bump(&shared.counters.faults_fired);
        let (chunks, stop) = match fault {
            FaultKind::CutAfterChunks { chunks } => (chunks, Stop::Cut),
            FaultKind::StallAfterChunks { chunks } => (chunks, Stop::Stall),
            _ => unreachable!("only stream faults are taken at the stream stage"),
        };
        let at = body.lead + usize::try_from(chunks).map_or(body.answer, |c| c.min(body.answer));
        (at, stop)
    });
    let (tx, rx) = mpsc::channel(8);
    bump(&shared.counters.streams_started);
    tokio::spawn(produce(Arc::clone(shared), body.pieces, stop, tx));

    let mut resp = Response::new(MockBody::Events(rx));
    let headers = resp.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static(body.content_type),
    );
    if body.content_type == "text/event-stream" {
        headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    }
    resp
}

async fn produce(
    shared: Arc<Shared>,
    pieces: Vec<Bytes>,
    stop: Option<(usize, Stop)>,
    tx: mpsc::Sender<Event>,
) {
    let counters = &shared.counters;
    let delay = shared.config.chunk_delay;
    for (i, piece) in pieces.into_iter().enumerate() {
        match stop {
            Some((at, Stop::Cut)) if at == i => {
                tokio::time::sleep(CUT_GRACE).await;
                let _ = tx.send(Event::Cut).await;
                bump(&counters.streams_cut);
                return;
            }
            Some((at, Stop::Stall)) if at == i => {
                bump(&counters.streams_stalled);
                // Hyper drops the body, and with it the receiver, once the client is gone.
                tx.closed().await;
                bump(&counters.streams_cancelled);
                return;
            }
            _ => {}
        }
        if i > 0 && !delay.is_zero() {
            tokio::time::sleep(delay).await;
        }
        if tx.send(Event::Data(piece)).await.is_err() {
            bump(&counters.streams_cancelled);
            return;
        }
    }
    bump(&counters.streams_completed);
}

/// `data: <json>\n\n`.
pub(crate) fn sse<T: serde::Serialize>(value: &T) -> Bytes {
    let mut buf = Vec::with_capacity(128);
    buf.extend_from_slice(b"data: ");
    let _ = serde_json::to_writer(&mut buf, value);
    buf.extend_from_slice(b"\n\n");
    Bytes::from(buf)
}
