//! A chat answer as server-sent events, handed to the body by a producer task that paces them
//! and carries out the stream faults.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use hyper::Response;
use hyper::header::{self, HeaderValue};
use serde::Serialize;
use tokio::sync::mpsc;

use crate::body::{Event, MockBody};
use crate::chat::{Answer, ChatPlan, SYSTEM_FINGERPRINT, Usage};
use crate::counters::bump;
use crate::faults::{FaultKind, FaultRoute, Stage};
use crate::reply::Reply;
use crate::state::Shared;

/// Before a cut, time for the events already handed over to leave the socket: hyper drops
/// what it still buffers when the body fails.
const CUT_GRACE: Duration = Duration::from_millis(20);

/// How a stream fault ends a stream before its finish chunk.
#[derive(Clone, Copy)]
enum Stop {
    Cut,
    Stall,
}

/// Starts the stream: role chunk, one chunk per answer piece (or the tool call's two), a
/// chunk with `finish_reason`, the usage chunk when asked for, `data: [DONE]`.
pub(crate) fn respond(shared: &Arc<Shared>, plan: ChatPlan) -> Reply {
    let (events, answer_chunks) = events(&plan);
    let stop = shared
        .faults
        .take(FaultRoute::Chat, Stage::Stream)
        .map(|fault| {
            bump(&shared.counters.faults_fired);
            let (chunks, stop) = match fault {
                FaultKind::CutAfterChunks { chunks } => (chunks, Stop::Cut),
                FaultKind::StallAfterChunks { chunks } => (chunks, Stop::Stall),
                _ => unreachable!("only stream faults are taken at the stream stage"),
            };
            // After the role chunk and at most every answer chunk: never the finish chunk.
            let at = 1 + usize::try_from(chunks).map_or(answer_chunks, |c| c.min(answer_chunks));
            (at, stop)
        });
    let (tx, rx) = mpsc::channel(8);
    bump(&shared.counters.streams_started);
    tokio::spawn(produce(Arc::clone(shared), events, stop, tx));

    let mut resp = Response::new(MockBody::Events(rx));
    let headers = resp.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/event-stream"),
    );
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    resp
}

async fn produce(
    shared: Arc<Shared>,
    events: Vec<Bytes>,
    stop: Option<(usize, Stop)>,
    tx: mpsc::Sender<Event>,
) {
    let counters = &shared.counters;
    let delay = shared.config.chunk_delay;
    for (i, event) in events.into_iter().enumerate() {
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
        if tx.send(Event::Data(event)).await.is_err() {
            bump(&counters.streams_cancelled);
            return;
        }
    }
    bump(&counters.streams_completed);
}

/// Every event of the stream, and how many of them carry the answer.
fn events(plan: &ChatPlan) -> (Vec<Bytes>, usize) {
    // With `include_usage`, OpenAI sends `"usage": null` on every chunk but the usage chunk.
    let usage = plan.include_usage.then_some(None);
    let chunk = |delta: Delta<'_>, finish_reason: Option<&str>| {
        render(plan, &[choice(delta, finish_reason)], usage)
    };
    let mut out = vec![chunk(
        Delta {
            role: Some("assistant"),
            content: Some(""),
            ..Delta::default()
        },
        None,
    )];
    match &plan.answer {
        Answer::Text(pieces) => out.extend(pieces.iter().map(|piece| {
            chunk(
                Delta {
                    content: Some(piece),
                    ..Delta::default()
                },
                None,
            )
        })),
        Answer::Tool(call) => {
            let head = ToolDelta {
                index: 0,
                id: Some(&call.id),
                kind: Some("function"),
                function: FunctionDelta {
                    name: Some(&call.name),
                    arguments: "",
                },
            };
            let args = ToolDelta {
                index: 0,
                id: None,
                kind: None,
                function: FunctionDelta {
                    name: None,
                    arguments: &call.arguments,
                },
            };
            for delta in [head, args] {
                out.push(chunk(
                    Delta {
                        tool_calls: Some([delta]),
                        ..Delta::default()
                    },
                    None,
                ));
            }
        }
    }
    let answer_chunks = out.len() - 1;
    out.push(chunk(Delta::default(), Some(plan.finish_reason)));
    if plan.include_usage {
        out.push(render(plan, &[], Some(Some(plan.usage))));
    }
    out.push(Bytes::from_static(b"data: [DONE]\n\n"));
    (out, answer_chunks)
}

fn choice<'a>(delta: Delta<'a>, finish_reason: Option<&'a str>) -> ChunkChoice<'a> {
    ChunkChoice {
        index: 0,
        delta,
        logprobs: None,
        finish_reason,
    }
}

fn render(plan: &ChatPlan, choices: &[ChunkChoice<'_>], usage: Option<Option<Usage>>) -> Bytes {
    let chunk = ChunkOut {
        id: &plan.id,
        object: "chat.completion.chunk",
        created: plan.created,
        model: &plan.model,
        system_fingerprint: SYSTEM_FINGERPRINT,
        choices,
        usage,
    };
    let mut buf = Vec::with_capacity(256);
    buf.extend_from_slice(b"data: ");
    let _ = serde_json::to_writer(&mut buf, &chunk);
    buf.extend_from_slice(b"\n\n");
    Bytes::from(buf)
}

/// Declared in OpenAI's key order.
#[derive(Serialize)]
struct ChunkOut<'a> {
    id: &'a str,
    object: &'static str,
    created: u64,
    model: &'a str,
    system_fingerprint: &'static str,
    choices: &'a [ChunkChoice<'a>],
    /// Absent without `include_usage`; `null`, or the totals on the usage chunk, with it.
    #[serde(skip_serializing_if = "Option::is_none")]
    usage: Option<Option<Usage>>,
}

#[derive(Serialize)]
struct ChunkChoice<'a> {
    index: u32,
    delta: Delta<'a>,
    logprobs: Option<()>,
    finish_reason: Option<&'a str>,
}

#[derive(Serialize, Default)]
struct Delta<'a> {
    #[serde(skip_serializing_if = "Option::is_none")]
    role: Option<&'static str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    content: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    tool_calls: Option<[ToolDelta<'a>; 1]>,
}

#[derive(Serialize)]
struct ToolDelta<'a> {
    index: u32,
    #[serde(skip_serializing_if = "Option::is_none")]
    id: Option<&'a str>,
    #[serde(rename = "type", skip_serializing_if = "Option::is_none")]
    kind: Option<&'static str>,
    function: FunctionDelta<'a>,
}

#[derive(Serialize)]
struct FunctionDelta<'a> {
    #[serde(skip_serializing_if = "Option::is_none")]
    name: Option<&'a str>,
    arguments: &'a str,
}
