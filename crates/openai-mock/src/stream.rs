//! A chat answer as server-sent events, handed to [`crate::paced`], which paces them and
//! carries out the stream faults.

use std::sync::Arc;

use bytes::Bytes;
use serde::Serialize;

use crate::chat::{Answer, ChatPlan, SYSTEM_FINGERPRINT, Usage};
use crate::faults::FaultRoute;
use crate::paced::Pieces;
use crate::reply::Reply;
use crate::state::Shared;

/// Starts the stream: role chunk, one chunk per answer piece (or the tool call's two), a
/// chunk with `finish_reason`, the usage chunk when asked for, `data: [DONE]`.
pub(crate) fn respond(shared: &Arc<Shared>, plan: &ChatPlan) -> Reply {
    let (pieces, answer) = events(plan);
    let body = Pieces {
        content_type: "text/event-stream",
        pieces,
        lead: 1,
        answer,
    };
    crate::paced::respond(shared, FaultRoute::Chat, body)
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
    crate::paced::sse(&chunk)
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
