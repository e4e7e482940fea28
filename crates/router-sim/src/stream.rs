//! A chat answer as server-sent events, generated one event at a time.
//!
//! Dropping a `ChatSource` before it finished is how the simulator notices that the client went
//! away: hyper drops the response body when the connection dies.

use std::sync::Arc;

use bytes::Bytes;
use serde::Serialize;

use crate::chat::{Answer, ChatPlan, NodeUsage, SYSTEM_FINGERPRINT, UsageOut};
use crate::counters::{bump, drop_one};
use crate::gate::Turn;
use crate::state::Shared;

enum Step {
    /// The `i`-th event written before the answer (failover control chunks).
    Prelude(usize),
    Role(u32),
    /// The word starting at byte `start` of the content, for choice `choice`.
    Word {
        start: usize,
        choice: u32,
    },
    ToolHead(u32),
    ToolArgs(u32),
    Finish(u32),
    Usage,
    Done,
    End,
}

#[derive(Clone, Copy, PartialEq, Eq)]
pub(crate) enum Outcome {
    Running,
    /// Produced to the end, or cut cleanly by a fault.
    Completed,
    /// Killed by the simulator itself (a reset fault): neither completed nor cancelled.
    Aborted,
}

pub(crate) struct ChatSource {
    plan: ChatPlan,
    shared: Arc<Shared>,
    done_marker: bool,
    /// Send the final `choices: []` chunk with `usage`.
    usage_chunk: bool,
    /// `usage_from_*` on final chunks.
    node_usage: Option<NodeUsage>,
    prelude: Vec<Bytes>,
    /// After this many events, append this raw error and end.
    error_after: Option<(u32, Bytes)>,
    sent: u32,
    step: Step,
    outcome: Outcome,
    /// The session is this request's until the stream ends or is dropped.
    _turn: Option<Turn>,
}

/// How a stream is shaped besides its answer.
pub(crate) struct StreamOptions {
    /// Events written before the answer.
    pub prelude: Vec<Bytes>,
    /// After this many events the node appends `{"error":…}` raw and ends.
    pub error_after: Option<(u32, String)>,
    pub turn: Option<Turn>,
}

/// A chunk as the node writes it: re-marshalled from a Go map, top-level keys sorted
/// (`genericchatstorage/chat_completion.go:182-196`), so declared in that order.
#[derive(Serialize)]
struct ChunkOut<'a> {
    choices: &'a [ChunkChoice<'a>],
    created: u64,
    id: &'a str,
    model: &'a str,
    object: &'static str,
    system_fingerprint: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    usage: Option<UsageOut>,
    #[serde(skip_serializing_if = "Option::is_none")]
    usage_from_consumer: Option<NodeUsage>,
    #[serde(skip_serializing_if = "Option::is_none")]
    usage_from_provider: Option<NodeUsage>,
}

#[derive(Serialize)]
struct ChunkChoice<'a> {
    index: u32,
    delta: Delta<'a>,
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

impl ChatSource {
    pub fn new(plan: ChatPlan, shared: Arc<Shared>, options: StreamOptions) -> Self {
        bump(&shared.counters.streams_active);
        // The node relays the backend's usage chunk, which exists only when asked for
        // (reference §2.10), and adds its own counts to the final chunks.
        let usage_chunk = plan.include_usage || shared.usage_without_include_usage;
        let node_usage = shared.node_usage_fields.then(|| plan.node_stream_usage());
        let error_after = options.error_after.map(|(n, text)| {
            // Written raw: no `data:`, no newline (`proxyapi/controller_http.go:279-283`).
            (n, Bytes::from(crate::reply::error_json(&text)))
        });
        let step = if options.prelude.is_empty() {
            Step::Role(0)
        } else {
            Step::Prelude(0)
        };
        Self {
            plan,
            done_marker: shared.done_marker,
            usage_chunk,
            node_usage,
            prelude: options.prelude,
            error_after,
            sent: 0,
            shared,
            step,
            outcome: Outcome::Running,
            _turn: options.turn,
        }
    }

    /// Records how the simulator itself ended the stream.
    pub fn end(&mut self, outcome: Outcome) {
        if self.outcome == Outcome::Running {
            if outcome == Outcome::Completed {
                bump(&self.shared.counters.streams_completed);
            }
            self.outcome = outcome;
        }
    }

    fn first_body_step(&self) -> Step {
        match &self.plan.answer {
            Answer::Text(t) if t.is_empty() => Step::Finish(0),
            Answer::Text(_) => Step::Word {
                start: 0,
                choice: 0,
            },
            Answer::Tool(_) => Step::ToolHead(0),
        }
    }

    /// The next SSE event, `None` once the stream is over.
    pub fn next_chunk(&mut self) -> Option<Bytes> {
        // Due, or the answer is over before `after` events: the error follows what was sent.
        if let Some((after, error)) = &self.error_after
            && (self.sent == *after || matches!(self.step, Step::End))
        {
            let error = error.clone();
            self.error_after = None;
            self.step = Step::End;
            return Some(error);
        }
        let event = self.next_event()?;
        self.sent += 1;
        Some(event)
    }

    fn next_event(&mut self) -> Option<Bytes> {
        let n = self.plan.n;
        let next_choice = |i: u32, same: fn(u32) -> Step, after: Step| {
            if i + 1 < n { same(i + 1) } else { after }
        };
        let (event, next) = match self.step {
            Step::Prelude(i) => {
                let next = if i + 1 < self.prelude.len() {
                    Step::Prelude(i + 1)
                } else {
                    Step::Role(0)
                };
                (self.prelude[i].clone(), next)
            }
            Step::Role(i) => {
                let delta = Delta {
                    role: Some("assistant"),
                    content: Some(""),
                    ..Delta::default()
                };
                (
                    self.chunk(i, delta, None),
                    next_choice(i, Step::Role, self.first_body_step()),
                )
            }
            Step::Word { start, choice } => {
                let Answer::Text(text) = &self.plan.answer else {
                    unreachable!("words only for text answers")
                };
                let end = text[start..].find(' ').map_or(text.len(), |i| start + i);
                // Every word but the last carries its trailing space, so the deltas concatenate
                // to exactly the non-streaming content.
                let piece = &text[start..(end + 1).min(text.len())];
                let event = self.chunk(
                    choice,
                    Delta {
                        content: Some(piece),
                        ..Delta::default()
                    },
                    None,
                );
                let next = if choice + 1 < n {
                    Step::Word {
                        start,
                        choice: choice + 1,
                    }
                } else if end >= text.len() {
                    Step::Finish(0)
                } else {
                    Step::Word {
                        start: end + 1,
                        choice: 0,
                    }
                };
                (event, next)
            }
            Step::ToolHead(i) => {
                let Answer::Tool(call) = &self.plan.answer else {
                    unreachable!("tool steps only for tool answers")
                };
                let delta = ToolDelta {
                    index: 0,
                    id: Some(&call.id),
                    kind: Some("function"),
                    function: FunctionDelta {
                        name: Some(&call.name),
                        arguments: "",
                    },
                };
                let event = self.chunk(
                    i,
                    Delta {
                        tool_calls: Some([delta]),
                        ..Delta::default()
                    },
                    None,
                );
                (event, next_choice(i, Step::ToolHead, Step::ToolArgs(0)))
            }
            Step::ToolArgs(i) => {
                let Answer::Tool(call) = &self.plan.answer else {
                    unreachable!("tool steps only for tool answers")
                };
                let delta = ToolDelta {
                    index: 0,
                    id: None,
                    kind: None,
                    function: FunctionDelta {
                        name: None,
                        arguments: &call.arguments,
                    },
                };
                let event = self.chunk(
                    i,
                    Delta {
                        tool_calls: Some([delta]),
                        ..Delta::default()
                    },
                    None,
                );
                (event, next_choice(i, Step::ToolArgs, Step::Finish(0)))
            }
            Step::Finish(i) => {
                let after = if self.usage_chunk {
                    Step::Usage
                } else if self.done_marker {
                    Step::Done
                } else {
                    Step::End
                };
                let choice = ChunkChoice {
                    index: i,
                    delta: Delta::default(),
                    finish_reason: Some(self.plan.finish_reason),
                };
                // A chunk with a finish reason is final: it gets the node's counts.
                let event = self.render(&[choice], None, self.node_usage);
                (event, next_choice(i, Step::Finish, after))
            }
            Step::Usage => {
                let event = self.render(&[], Some(self.plan.usage()), self.node_usage);
                (
                    event,
                    if self.done_marker {
                        Step::Done
                    } else {
                        Step::End
                    },
                )
            }
            Step::Done => (Bytes::from_static(b"data: [DONE]\n\n"), Step::End),
            Step::End => {
                self.end(Outcome::Completed);
                return None;
            }
        };
        self.step = next;
        Some(event)
    }

    fn chunk(&self, index: u32, delta: Delta<'_>, finish_reason: Option<&str>) -> Bytes {
        self.render(
            &[ChunkChoice {
                index,
                delta,
                finish_reason,
            }],
            None,
            None,
        )
    }

    fn render(
        &self,
        choices: &[ChunkChoice<'_>],
        usage: Option<UsageOut>,
        node_usage: Option<NodeUsage>,
    ) -> Bytes {
        let chunk = ChunkOut {
            choices,
            created: self.plan.created,
            id: &self.plan.id,
            model: &self.plan.model,
            object: "chat.completion.chunk",
            system_fingerprint: SYSTEM_FINGERPRINT,
            usage,
            usage_from_consumer: node_usage,
            usage_from_provider: node_usage,
        };
        let mut buf = Vec::with_capacity(256);
        buf.extend_from_slice(b"data: ");
        crate::gojson::write(&mut buf, &chunk);
        buf.extend_from_slice(b"\n\n");
        Bytes::from(buf)
    }
}

impl Drop for ChatSource {
    fn drop(&mut self) {
        let counters = &self.shared.counters;
        drop_one(&counters.streams_active);
        if self.outcome == Outcome::Running {
            counters.record_cancel();
        }
    }
}
