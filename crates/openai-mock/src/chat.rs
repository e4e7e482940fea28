//! The deterministic "model" behind `POST /v1/chat/completions`.
//!
//! The full answer to a conversation is `Echo:` followed by the words of the last user message,
//! one space apart, so tests can predict every byte (router-sim's model answers the same). A
//! "token" is a word: `max_tokens` keeps that many, `usage` counts them.

use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use hyper::StatusCode;
use serde::{Deserialize, Serialize};

use crate::hash::fnv1a;
use crate::reply::{self, Reply};
use crate::state::Shared;

/// The parts of a chat request the mock looks at; everything else is ignored.
#[derive(Deserialize)]
pub(crate) struct ChatRequest {
    model: Option<String>,
    messages: Option<Vec<Message>>,
    stream: Option<bool>,
    stream_options: Option<StreamOptions>,
    max_tokens: Option<u64>,
    max_completion_tokens: Option<u64>,
    tools: Option<Vec<ToolDef>>,
    tool_choice: Option<serde_json::Value>,
}

#[derive(Deserialize)]
struct StreamOptions {
    include_usage: Option<bool>,
}

#[derive(Deserialize)]
struct Message {
    #[serde(default)]
    role: String,
    content: Option<Content>,
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
    text: Option<String>,
}

#[derive(Deserialize)]
struct ToolDef {
    function: Option<ToolFn>,
}

#[derive(Deserialize)]
struct ToolFn {
    #[serde(default)]
    name: String,
}

impl Content {
    /// The string itself, or the `text` parts joined by `sep`.
    fn text(&self, sep: &str) -> String {
        match self {
            Self::Text(s) => s.clone(),
            Self::Parts(parts) => parts
                .iter()
                .filter_map(|p| p.text.as_deref())
                .collect::<Vec<_>>()
                .join(sep),
            Self::Other(_) => String::new(),
        }
    }
}

pub(crate) fn count_words(s: &str) -> u64 {
    s.split_whitespace().count() as u64
}

pub(crate) struct ToolCall {
    pub id: String,
    pub name: String,
    /// `{"query":"<last user text>"}` as a JSON string, as OpenAI sends arguments.
    pub arguments: String,
}

pub(crate) enum Answer {
    /// One piece per stream chunk, each a word with the whitespace after it; concatenated,
    /// they are the JSON answer's content.
    Text(Vec<String>),
    Tool(ToolCall),
}

#[derive(Serialize, Clone, Copy)]
pub(crate) struct Usage {
    prompt_tokens: u64,
    completion_tokens: u64,
    total_tokens: u64,
}

/// Everything needed to render the answer, as JSON or as a stream.
pub(crate) struct ChatPlan {
    /// `chatcmpl-` + 16 hex of a hash of the last user message (router-sim's ids).
    pub id: String,
    pub model: String,
    pub created: u64,
    pub answer: Answer,
    pub finish_reason: &'static str,
    pub usage: Usage,
    /// The request asked for a usage chunk (`stream_options.include_usage`).
    pub include_usage: bool,
}

pub(crate) const SYSTEM_FINGERPRINT: &str = "fp_openai_mock";

pub(crate) fn handle(shared: &Arc<Shared>, body: &[u8]) -> Reply {
    let req: ChatRequest = match serde_json::from_slice(body) {
        Ok(r) => r,
        Err(e) => {
            return reply::invalid(
                &format!("We could not parse the JSON body of your request: {e}"),
                None,
            );
        }
    };
    let Some(model) = req.model.as_deref() else {
        return reply::invalid("you must provide a model parameter", Some("model"));
    };
    if !shared.knows_model(model) {
        return reply::model_not_found(model);
    }
    if req.messages.as_deref().is_none_or(<[Message]>::is_empty) {
        return reply::invalid("[] is too short - 'messages'", Some("messages"));
    }
    let limit = match req.max_tokens.or(req.max_completion_tokens) {
        Some(0) => {
            return reply::invalid(
                "Invalid 'max_tokens': integer below minimum value. Expected a value >= 1, \
                 but got 0 instead.",
                Some("max_tokens"),
            );
        }
        Some(n) => usize::try_from(n).unwrap_or(usize::MAX),
        None => usize::MAX,
    };
    let plan = ChatPlan::new(&req, model, limit);
    if req.stream == Some(true) {
        crate::stream::respond(shared, &plan)
    } else {
        reply::json_bytes(StatusCode::OK, plan.completion_json())
    }
}

impl ChatPlan {
    fn new(req: &ChatRequest, model: &str, limit: usize) -> Self {
        let messages = req.messages.as_deref().unwrap_or_default();
        let last_user = messages
            .iter()
            .rev()
            .find(|m| m.role == "user")
            .and_then(|m| m.content.as_ref())
            .map(|c| c.text(" "))
            .unwrap_or_default();
        let prompt_tokens = messages
            .iter()
            .filter_map(|m| m.content.as_ref())
            .map(|c| count_words(&c.text(" ")))
            .sum();
        let last_role = messages.last().map_or("", |m| m.role.as_str());

        let (answer, finish_reason, completion_tokens) = match pick_tool(req, &last_user, last_role)
        {
            Some(name) => {
                let arguments = serde_json::json!({ "query": last_user }).to_string();
                let id = format!(
                    "call_{:016x}",
                    fnv1a(format!("{name}\n{last_user}").as_bytes())
                );
                let words = count_words(&arguments);
                let call = ToolCall {
                    id,
                    name,
                    arguments,
                };
                (Answer::Tool(call), "tool_calls", words)
            }
            None => {
                // An assistant message last is a prefill: continue it.
                let prefill = messages
                    .last()
                    .filter(|m| m.role == "assistant")
                    .and_then(|m| m.content.as_ref())
                    .map(|c| c.text(""));
                let full = echo(&last_user);
                let rest = prefill
                    .as_deref()
                    .and_then(|p| full.strip_prefix(p))
                    .unwrap_or(&full);
                let mut pieces: Vec<String> = pieces(rest).into_iter().map(str::to_owned).collect();
                let finish = if pieces.len() > limit {
                    pieces.truncate(limit);
                    if let Some(last) = pieces.last_mut() {
                        last.truncate(last.trim_end().len());
                    }
                    "length"
                } else {
                    "stop"
                };
                let count = pieces.len() as u64;
                (Answer::Text(pieces), finish, count)
            }
        };
        Self {
            id: format!("chatcmpl-{:016x}", fnv1a(last_user.as_bytes())),
            model: model.to_owned(),
            created: SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .map_or(0, |d| d.as_secs()),
            answer,
            finish_reason,
            usage: Usage {
                prompt_tokens,
                completion_tokens,
                total_tokens: prompt_tokens + completion_tokens,
            },
            include_usage: req
                .stream_options
                .as_ref()
                .and_then(|o| o.include_usage)
                .unwrap_or(false),
        }
    }

    /// The non-streaming `chat.completion` body.
    fn completion_json(&self) -> Vec<u8> {
        let (content, tool_calls) = match &self.answer {
            Answer::Text(pieces) => (Some(pieces.concat()), None),
            Answer::Tool(call) => (None, Some([call.out()])),
        };
        let body = CompletionOut {
            id: &self.id,
            object: "chat.completion",
            created: self.created,
            model: &self.model,
            choices: [ChoiceOut {
                index: 0,
                message: MessageOut {
                    role: "assistant",
                    content: content.as_deref(),
                    refusal: None,
                    tool_calls,
                },
                logprobs: None,
                finish_reason: self.finish_reason,
            }],
            usage: self.usage,
            system_fingerprint: SYSTEM_FINGERPRINT,
        };
        serde_json::to_vec(&body).unwrap_or_default()
    }
}

/// The full answer: `Echo:` and the words of `user`, one space apart.
fn echo(user: &str) -> String {
    let mut out = String::from("Echo:");
    for word in user.split_whitespace() {
        out.push(' ');
        out.push_str(word);
    }
    out
}

/// Splits `text` into one piece per word, each word with the whitespace after it (the first
/// also with any before it), so the pieces concatenate to `text`. A continuation that starts
/// mid-word starts with the rest of that word.
fn pieces(text: &str) -> Vec<&str> {
    let mut out = Vec::new();
    let (mut start, mut seen_word, mut in_space) = (0, false, false);
    for (i, c) in text.char_indices() {
        if c.is_whitespace() {
            in_space |= seen_word;
        } else {
            if in_space {
                out.push(&text[start..i]);
                start = i;
                in_space = false;
            }
            seen_word = true;
        }
    }
    if start < text.len() {
        out.push(&text[start..]);
    }
    out
}

/// Which function to call, if any. Tools offered and `tool_choice` not `"none"`; then a
/// function `tool_choice` names, or for `"required"` (or when the conversation ends with a
/// user message that says "lookup" or names a tool) the tool named in the message, else the
/// first. After a tool result the answer is text, so an agent loop ends.
fn pick_tool(req: &ChatRequest, last_user: &str, last_role: &str) -> Option<String> {
    let names: Vec<&str> = req
        .tools
        .as_deref()
        .unwrap_or_default()
        .iter()
        .filter_map(|t| t.function.as_ref())
        .map(|f| f.name.as_str())
        .filter(|n| !n.is_empty())
        .collect();
    let first = *names.first()?;
    let named_in_text = names.iter().find(|n| last_user.contains(**n)).copied();
    let chosen = match &req.tool_choice {
        Some(serde_json::Value::String(s)) if s == "none" => None,
        Some(serde_json::Value::Object(o)) => {
            return o
                .get("function")
                .and_then(|f| f.get("name"))
                .and_then(serde_json::Value::as_str)
                .map(str::to_owned);
        }
        Some(serde_json::Value::String(s)) if s == "required" => {
            Some(named_in_text.unwrap_or(first))
        }
        _ if last_role == "user" && (last_user.contains("lookup") || named_in_text.is_some()) => {
            Some(named_in_text.unwrap_or(first))
        }
        _ => None,
    };
    chosen.map(str::to_owned)
}

#[derive(Serialize)]
pub(crate) struct ToolCallOut<'a> {
    pub id: &'a str,
    #[serde(rename = "type")]
    pub kind: &'static str,
    pub function: FunctionOut<'a>,
}

#[derive(Serialize)]
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

/// Declared in OpenAI's key order.
#[derive(Serialize)]
struct CompletionOut<'a> {
    id: &'a str,
    object: &'static str,
    created: u64,
    model: &'a str,
    choices: [ChoiceOut<'a>; 1],
    usage: Usage,
    system_fingerprint: &'static str,
}

#[derive(Serialize)]
struct ChoiceOut<'a> {
    index: u32,
    message: MessageOut<'a>,
    logprobs: Option<()>,
    finish_reason: &'static str,
}

#[derive(Serialize)]
struct MessageOut<'a> {
    role: &'static str,
    /// `null` for a tool call, as OpenAI sends it.
    content: Option<&'a str>,
    refusal: Option<()>,
    #[serde(skip_serializing_if = "Option::is_none")]
    tool_calls: Option<[ToolCallOut<'a>; 1]>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pieces_concatenate_to_the_text() {
        assert_eq!(pieces("Echo: a b"), ["Echo: ", "a ", "b"]);
        assert_eq!(pieces(" big world"), [" big ", "world"]);
        assert_eq!(pieces("lo world"), ["lo ", "world"]);
        assert!(pieces("").is_empty());
    }

    #[test]
    fn echo_normalises_whitespace() {
        assert_eq!(echo("  hello \n world "), "Echo: hello world");
        assert_eq!(echo(""), "Echo:");
    }
}
