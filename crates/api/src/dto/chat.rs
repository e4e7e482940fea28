//! The chat request as validated by the gateway. Only what the gateway checks is modelled;
//! the body is forwarded as the client sent it (unknown fields included), minus `session_id`
//! and `model`.

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::error::OpenAiErrorBody;

/// An OpenAI chat completion request. Fields not listed here are passed to the provider
/// untouched.
#[derive(Debug, Deserialize, ToSchema)]
#[schema(example = json!({"model": "llama-3.3-70b", "messages": [{"role": "user", "content": "Hello!"}], "stream": false}))]
pub struct ChatCompletionRequest {
    /// A model name, alias or on-chain id; the configured default when left out.
    #[serde(default)]
    pub model: Option<String>,
    /// The caps' defaults are the bounds declared here (`MORPHEUS_CHAT_MAX_*` change them).
    #[schema(min_items = 1, max_items = 1000)]
    pub messages: Vec<ChatMessage>,
    /// Answer as server-sent events.
    #[serde(default)]
    pub stream: Option<bool>,
    #[serde(default)]
    #[schema(minimum = 1, maximum = 8)]
    pub n: Option<i64>,
    #[serde(default)]
    #[schema(minimum = 1, maximum = 32768)]
    pub max_tokens: Option<i64>,
    #[serde(default)]
    #[schema(minimum = 1, maximum = 32768)]
    pub max_completion_tokens: Option<i64>,
    #[serde(default)]
    #[schema(minimum = 0, maximum = 2)]
    pub temperature: Option<f64>,
    #[serde(default)]
    #[schema(minimum = 0, maximum = 1)]
    pub top_p: Option<f64>,
    #[serde(default)]
    #[schema(minimum = -2, maximum = 2)]
    pub presence_penalty: Option<f64>,
    #[serde(default)]
    #[schema(minimum = -2, maximum = 2)]
    pub frequency_penalty: Option<f64>,
    #[serde(default)]
    pub stop: Option<StopSequences>,
    #[serde(default)]
    #[schema(max_items = 128)]
    pub tools: Option<Vec<ChatTool>>,
    /// `none`, `auto`, `required`, or `{"type":"function","function":{"name":…}}`.
    #[serde(default)]
    pub tool_choice: Option<serde_json::Value>,
    #[serde(default)]
    pub response_format: Option<serde_json::Value>,
    #[serde(default)]
    pub seed: Option<i64>,
    #[serde(default)]
    pub stream_options: Option<serde_json::Value>,
    #[serde(default)]
    pub user: Option<String>,
    /// Gateway extension: run on this session of the calling key (not forwarded).
    #[serde(default)]
    #[schema(pattern = "^0x[0-9a-fA-F]{64}$")]
    pub session_id: Option<String>,
}

#[derive(Debug, Deserialize, ToSchema)]
pub struct ChatMessage {
    pub role: ChatRole,
    /// Text, or an array of content parts (`text`, `image_url`, `input_audio`, `file`).
    #[serde(default)]
    pub content: Option<MessageContent>,
    #[serde(default)]
    pub name: Option<String>,
    #[serde(default)]
    pub tool_calls: Option<Vec<serde_json::Value>>,
    #[serde(default)]
    pub tool_call_id: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum ChatRole {
    System,
    Developer,
    User,
    Assistant,
    Tool,
    Function,
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(untagged)]
pub enum MessageContent {
    Text(String),
    Parts(Vec<serde_json::Map<String, serde_json::Value>>),
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(untagged)]
pub enum StopSequences {
    One(String),
    Many(Vec<String>),
}

#[derive(Debug, Deserialize, ToSchema)]
pub struct ChatTool {
    /// `function`.
    #[serde(rename = "type")]
    pub kind: String,
    pub function: ChatFunction,
}

#[derive(Debug, Deserialize, ToSchema)]
pub struct ChatFunction {
    #[schema(pattern = "^[A-Za-z0-9_-]{1,64}$")]
    pub name: String,
    #[serde(default)]
    pub description: Option<String>,
    /// A JSON Schema object.
    #[serde(default)]
    pub parameters: Option<serde_json::Map<String, serde_json::Value>>,
}

/// The `data` of one server-sent event of a streamed chat completion: a chunk, then `[DONE]`
/// at the end; or, when the stream breaks after it started, one error instead of `[DONE]`.
#[derive(Debug, Serialize, ToSchema)]
#[serde(untagged)]
#[allow(
    dead_code,
    reason = "documents the stream; the gateway relays the provider's events"
)]
pub enum ChatCompletionStreamEvent {
    Chunk(ChatCompletionChunk),
    Error(OpenAiErrorBody),
    Done(StreamDone),
}

/// The last event's `data` of a stream that ended normally.
#[derive(Debug, Serialize, ToSchema)]
pub enum StreamDone {
    #[serde(rename = "[DONE]")]
    Done,
}

/// OpenAI's `chat.completion.chunk`, as the provider wrote it (other members pass through).
#[derive(Debug, Serialize, ToSchema)]
#[allow(
    dead_code,
    reason = "documents the stream; the gateway relays the provider's events"
)]
pub struct ChatCompletionChunk {
    pub id: String,
    /// `chat.completion.chunk`.
    pub object: String,
    /// Unix seconds.
    pub created: i64,
    /// The model asked for.
    pub model: String,
    /// Each with `index`, a `delta` of the message and, in the last, `finish_reason`.
    pub choices: Vec<serde_json::Map<String, serde_json::Value>>,
    /// Token counts, in the last chunk when `stream_options.include_usage` asked for them.
    pub usage: Option<serde_json::Map<String, serde_json::Value>>,
}
