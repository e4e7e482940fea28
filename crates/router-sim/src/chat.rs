//! The deterministic "model": what a chat request is answered with.
//!
//! The answer is `Echo:` followed by the words of the last user message, so tests can predict
//! every byte. A "token" is a whitespace-separated word.

use std::sync::Arc;

use bytes::Bytes;
use serde::{Deserialize, Serialize};

use crate::ids::fnv1a;

/// The parts of an OpenAI chat request the simulator looks at (in the body the provider
/// received); everything else is ignored.
#[derive(Deserialize)]
pub(crate) struct ChatRequest {
    #[serde(default, deserialize_with = "null_as_default")]
    messages: Vec<Message>,
    #[serde(default)]
    pub stream: Option<bool>,
    #[serde(default)]
    stream_options: Option<StreamOptions>,
    #[serde(default)]
    n: Option<u32>,
    #[serde(default)]
    max_tokens: Option<u64>,
    #[serde(default)]
    max_completion_tokens: Option<u64>,
    #[serde(default)]
    tools: Option<Vec<ToolDef>>,
    #[serde(default)]
    tool_choice: Option<serde_json::Value>,
}

/// `"messages": null` is what a body without messages becomes after go-openai.
fn null_as_default<'de, D, T>(d: D) -> Result<T, D::Error>
where
    D: serde::Deserializer<'de>,
    T: Default + Deserialize<'de>,
{
    Ok(Option::<T>::deserialize(d)?.unwrap_or_default())
}

#[derive(Deserialize)]
struct StreamOptions {
    #[serde(default)]
    include_usage: bool,
}

#[derive(Deserialize)]
struct Message {
    #[serde(default)]
    role: String,
    #[serde(default)]
    content: Option<Content>,
    #[serde(default)]
    name: Option<String>,
}

#[derive(Deserialize)]
#[serde(untagged)]
enum Content {
    Text(String),
    Parts(Vec<Part>),
    Other(serde::de::IgnoredAny),
}

#[derive(Deserialize)]
struct Part {
    #[serde(default)]
    text: Option<String>,
}

#[derive(Deserialize)]
struct ToolDef {
    #[serde(default)]
    function: Option<ToolFn>,
}

#[derive(Deserialize)]
struct ToolFn {
    #[serde(default)]
    name: String,
}

impl Content {
    /// The text of a message: the string itself, or its `text` parts joined by spaces.
    fn text(&self) -> String {
        match self {
            Self::Text(s) => s.clone(),
            Self::Parts(parts) => parts
                .iter()
                .filter_map(|p| p.text.as_deref())
                .collect::<Vec<_>>()
                .join(" "),
            Self::Other(_) => String::new(),
        }
    }

    fn words(&self) -> u64 {
        match self {
            Self::Text(s) => count_words(s),
            Self::Parts(parts) => parts
                .iter()
                .filter_map(|p| p.text.as_deref())
                .map(count_words)
                .sum(),
            Self::Other(_) => 0,
        }
    }
}

/// The node's own prompt count, `lib.CountPromptTokens` (`lib/tokens.go:22-47`): per message one
/// token for the role, its content's tokens and its name's, plus 3 of formatting. The node counts
/// with tiktoken; the simulator's token is a word.
fn node_prompt_tokens(messages: &[Message]) -> u64 {
    messages
        .iter()
        .map(|m| {
            1 + m.content.as_ref().map_or(0, Content::words)
                + m.name.as_deref().map_or(0, count_words)
                + 3
        })
        .sum()
}

fn count_words(s: &str) -> u64 {
    s.split_whitespace().count() as u64
}

/// A tool call the simulator decided to make.
pub(crate) struct ToolCall {
    pub id: String,
    pub name: String,
    /// `{"query":"<last user text>"}` as a JSON string, as OpenAI sends arguments.
    pub arguments: String,
}

pub(crate) enum Answer {
    /// Normalised: words separated by single spaces, so `"word "` slices are zero-copy.
    Text(String),
    Tool(ToolCall),
}

/// Everything needed to render the answer, as JSON or as a stream.
pub(crate) struct ChatPlan {
    /// `chatcmpl-` + 16 hex of a hash of the last user message: identical requests share it,
    /// different ones (almost surely) do not, so concurrent streams can be told apart.
    pub id: String,
    pub model: Arc<str>,
    pub created: u64,
    pub n: u32,
    pub answer: Answer,
    pub finish_reason: &'static str,
    pub prompt_tokens: u64,
    pub completion_tokens: u64,
    /// Report usage as negative numbers and strings (the `BadUsage` fault).
    pub bad_usage: bool,
    /// The request asked for a usage chunk (`stream_options.include_usage`).
    pub include_usage: bool,
    /// What the node itself counts for the prompt (`usage_from_*`).
    pub node_prompt_tokens: u64,
}

/// `usage_from_provider` / `usage_from_consumer`: a Go `map[string]int`, so its keys are sorted
/// (`chatstorage/genericchatstorage/chat_completion.go:132-145`).
#[derive(Serialize, Clone, Copy)]
pub(crate) struct NodeUsage {
    completion_tokens: u64,
    prompt_tokens: u64,
    total_tokens: u64,
}

impl NodeUsage {
    pub fn new(prompt_tokens: u64, completion_tokens: u64) -> Self {
        Self {
            completion_tokens,
            prompt_tokens,
            total_tokens: prompt_tokens + completion_tokens,
        }
    }
}

/// More choices than this is a client bug; cap it instead of generating megabytes.
const MAX_CHOICES: u32 = 64;

impl ChatPlan {
    pub fn new(req: &ChatRequest, model: Arc<str>, created: u64, bad_usage: bool) -> Self {
        let last_user = req
            .messages
            .iter()
            .rev()
            .find(|m| m.role == "user")
            .and_then(|m| m.content.as_ref())
            .map(Content::text)
            .unwrap_or_default();
        let prompt_tokens = req
            .messages
            .iter()
            .filter_map(|m| m.content.as_ref())
            .map(Content::words)
            .sum();
        let id = format!("chatcmpl-{:016x}", fnv1a(last_user.as_bytes()));
        let n = req.n.unwrap_or(1).clamp(1, MAX_CHOICES);

        let (answer, finish_reason, completion_tokens) = match pick_tool(req, &last_user) {
            Some(name) => {
                let arguments = serde_json::json!({ "query": last_user }).to_string();
                let words = count_words(&arguments);
                let id = format!(
                    "call_{:016x}",
                    fnv1a(format!("{name}\n{last_user}").as_bytes())
                );
                (
                    Answer::Tool(ToolCall {
                        id,
                        name,
                        arguments,
                    }),
                    "tool_calls",
                    words,
                )
            }
            None => {
                let limit = req
                    .max_tokens
                    .or(req.max_completion_tokens)
                    .map_or(usize::MAX, |m| usize::try_from(m).unwrap_or(usize::MAX));
                let all = std::iter::once("Echo:").chain(last_user.split_whitespace());
                let total = 1 + last_user.split_whitespace().count();
                let kept: Vec<&str> = all.take(limit).collect();
                let finish = if kept.len() < total { "length" } else { "stop" };
                let count = kept.len() as u64;
                (Answer::Text(kept.join(" ")), finish, count)
            }
        };
        Self {
            id,
            model,
            created,
            n,
            answer,
            finish_reason,
            prompt_tokens,
            completion_tokens,
            bad_usage,
            include_usage: req.stream_options.as_ref().is_some_and(|o| o.include_usage),
            node_prompt_tokens: node_prompt_tokens(&req.messages),
        }
    }

    /// The node's count of what a stream's content deltas carried, at its final chunks: the
    /// words of every choice's deltas (`proxy_sender.go:1024-1043`, `proxy_receiver.go:224-244`).
    pub fn node_stream_usage(&self) -> NodeUsage {
        let words = match &self.answer {
            Answer::Text(_) => self.completion_tokens * u64::from(self.n),
            Answer::Tool(_) => 0,
        };
        NodeUsage::new(self.node_prompt_tokens, words)
    }

    /// The node's count for a JSON answer: the first choice's content
    /// (`proxy_sender.go:1056-1061`, `proxy_receiver.go:251-257`).
    pub fn node_answer_usage(&self) -> NodeUsage {
        let words = match &self.answer {
            Answer::Text(_) => self.completion_tokens,
            Answer::Tool(_) => 0,
        };
        NodeUsage::new(self.node_prompt_tokens, words)
    }

    pub fn usage(&self) -> UsageOut {
        if self.bad_usage {
            UsageOut::Bad {
                prompt_tokens: -1,
                completion_tokens: "seven",
                total_tokens: -5,
            }
        } else {
            UsageOut::Good {
                prompt_tokens: self.prompt_tokens,
                completion_tokens: self.completion_tokens,
                total_tokens: self.prompt_tokens + self.completion_tokens,
            }
        }
    }

    /// The non-streaming `chat.completion` body, with the node's usage members when `node_usage`.
    pub fn completion_json(&self, node_usage: bool) -> Bytes {
        let (content, tool_calls) = match &self.answer {
            Answer::Text(t) => (Some(t.as_str()), None),
            Answer::Tool(call) => (None, Some([call.out()])),
        };
        let choices: Vec<ChoiceOut<'_>> = (0..self.n)
            .map(|index| ChoiceOut {
                index,
                message: MessageOut {
                    role: "assistant",
                    content,
                    tool_calls: tool_calls.clone(),
                },
                finish_reason: self.finish_reason,
            })
            .collect();
        let node = node_usage.then(|| self.node_answer_usage());
        let body = CompletionOut {
            choices,
            created: self.created,
            id: &self.id,
            model: &self.model,
            object: "chat.completion",
            system_fingerprint: SYSTEM_FINGERPRINT,
            usage: self.usage(),
            usage_from_consumer: node,
            usage_from_provider: node,
        };
        Bytes::from(crate::gojson::to_vec(&body))
    }
}

pub(crate) const SYSTEM_FINGERPRINT: &str = "fp_sim";

/// Which function to call, if any: tools offered, `tool_choice` not `"none"`, and either a
/// function named by `tool_choice`, `"required"` (first tool), or a tool whose name appears in
/// the last user message.
fn pick_tool(req: &ChatRequest, last_user: &str) -> Option<String> {
    let names: Vec<&str> = req
        .tools
        .as_deref()
        .unwrap_or_default()
        .iter()
        .filter_map(|t| t.function.as_ref())
        .map(|f| f.name.as_str())
        .filter(|n| !n.is_empty())
        .collect();
    if names.is_empty() {
        return None;
    }
    match &req.tool_choice {
        Some(serde_json::Value::String(s)) if s == "none" => None,
        Some(serde_json::Value::Object(o)) => o
            .get("function")
            .and_then(|f| f.get("name"))
            .and_then(|n| n.as_str())
            .map(str::to_owned),
        Some(serde_json::Value::String(s)) if s == "required" => Some(
            names
                .iter()
                .find(|n| last_user.contains(**n))
                .unwrap_or(&names[0])
                .to_string(),
        ),
        _ => names
            .iter()
            .find(|n| last_user.contains(**n))
            .map(|n| (*n).to_owned()),
    }
}

#[derive(Serialize)]
#[serde(untagged)]
pub(crate) enum UsageOut {
    Good {
        prompt_tokens: u64,
        completion_tokens: u64,
        total_tokens: u64,
    },
    Bad {
        prompt_tokens: i64,
        completion_tokens: &'static str,
        total_tokens: i64,
    },
}

#[derive(Serialize, Clone)]
pub(crate) struct ToolCallOut<'a> {
    pub id: &'a str,
    #[serde(rename = "type")]
    pub kind: &'static str,
    pub function: FunctionOut<'a>,
}

#[derive(Serialize, Clone)]
pub(crate) struct FunctionOut<'a> {
    pub name: &'a str,
    pub arguments: &'a str,
}

impl ToolCall {
    fn out(&self) -> ToolCallOut<'_> {
        ToolCallOut {
            id: &self.id,
            kind: "function",
            function: FunctionOut {
                name: &self.name,
                arguments: &self.arguments,
            },
        }
    }
}

/// The node re-marshals the backend's answer from a Go map, so its top-level keys come out
/// sorted (`genericchatstorage/chat_completion.go:86-100`): declared here in that order.
#[derive(Serialize)]
struct CompletionOut<'a> {
    choices: Vec<ChoiceOut<'a>>,
    created: u64,
    id: &'a str,
    model: &'a str,
    object: &'static str,
    system_fingerprint: &'static str,
    usage: UsageOut,
    #[serde(skip_serializing_if = "Option::is_none")]
    usage_from_consumer: Option<NodeUsage>,
    #[serde(skip_serializing_if = "Option::is_none")]
    usage_from_provider: Option<NodeUsage>,
}

#[derive(Serialize)]
struct ChoiceOut<'a> {
    index: u32,
    message: MessageOut<'a>,
    finish_reason: &'static str,
}

#[derive(Serialize)]
struct MessageOut<'a> {
    role: &'static str,
    /// `null` for a tool call, as OpenAI sends it.
    content: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    tool_calls: Option<[ToolCallOut<'a>; 1]>,
}
