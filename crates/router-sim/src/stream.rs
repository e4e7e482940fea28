//! A chat answer as server-sent events, generated one event at a time.
//!
//! Dropping a `ChatSource` before it finished is how the simulator notices that the client went
//! away: hyper drops the response body when the connection dies.

use std::sync::Arc;

use bytes::Bytes;
use serde::Serialize;

use crate::chat::{Answer, ChatPlan, SYSTEM_FINGERPRINT, UsageOut};
use crate::counters::{bump, drop_one};
use crate::state::Shared;

enum Step {
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
    step: Step,
    outcome: Outcome,
}

#[derive(Serialize)]
struct ChunkOut<'a> {
    id: &'a str,
    object: &'static str,
    created: u64,
    model: &'a str,
    system_fingerprint: &'static str,
    choices: &'a [ChunkChoice<'a>],
    #[serde(skip_serializing_if = "Option::is_none")]
    usage: Option<UsageOut>,
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
    pub fn new(plan: ChatPlan, shared: Arc<Shared>) -> Self {
        bump(&shared.counters.streams_active);
        let done_marker = shared.done_marker;
        Self {
            plan,
            shared,
            done_marker,
            step: Step::Role(0),
            outcome: Outcome::Running,
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
        let n = self.plan.n;
        let next_choice = |i: u32, same: fn(u32) -> Step, after: Step| {
            if i + 1 < n { same(i + 1) } else { after }
        };
        let (event, next) = match self.step {
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
                let event = self.chunk(i, Delta::default(), Some(self.plan.finish_reason));
                (event, next_choice(i, Step::Finish, Step::Usage))
            }
            Step::Usage => {
                let event = self.render(&[], Some(self.plan.usage()));
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
        )
    }

    fn render(&self, choices: &[ChunkChoice<'_>], usage: Option<UsageOut>) -> Bytes {
        let chunk = ChunkOut {
            id: &self.plan.id,
            object: "chat.completion.chunk",
            created: self.plan.created,
            model: &self.plan.model,
            system_fingerprint: SYSTEM_FINGERPRINT,
            choices,
            usage,
        };
        let mut buf = Vec::with_capacity(256);
        buf.extend_from_slice(b"data: ");
        // Writing plain structs into a Vec cannot fail.
        let _ = serde_json::to_writer(&mut buf, &chunk);
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
