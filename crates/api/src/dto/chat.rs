//! The chat request as validated by the gateway. Only what the gateway checks is modelled;
//! the body is forwarded as the client sent it (unknown fields included), minus `session_id`
//! and `model`.

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

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
    pub response_format: Option<ChatResponseFormat>,
    #[serde(default)]
    pub seed: Option<i64>,
    /// Sent upstream with `include_usage` set (the gateway counts every stream's tokens); the
    /// usage chunk reaches the client only when it asked for it.
    #[serde(default)]
    #[schema(value_type = Option<ChatStreamOptions>)]
    pub stream_options: Option<serde_json::Value>,
    /// String keys to string values: the marketplace carries nothing else.
    #[serde(default)]
    #[schema(value_type = Option<std::collections::HashMap<String, String>>)]
    pub metadata: Option<serde_json::Value>,
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
    /// Text, or an array of content parts (`text`, `image_url`; the marketplace drops the
    /// data of other parts, so they are refused).
    #[serde(default)]
    pub content: Option<MessageContent>,
    #[serde(default)]
    pub name: Option<String>,
    #[serde(default)]
    pub tool_calls: Option<Vec<ChatToolCall>>,
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
    Parts(Vec<ChatContentPart>),
}

// The shapes below are the ones the proxy-router decodes these members into (go-openai's
// types): a value of another type is refused there, after a session was opened for it, so the
// gateway refuses it first (422). Members they do not list pass through as sent.

/// One content part: `{"type": "text", "text": …}`, `{"type": "image_url", "image_url":
/// {"url": …}}`, …
#[derive(Debug, Deserialize, ToSchema)]
pub struct ChatContentPart {
    /// `text` or `image_url`: the marketplace carries no other part (400
    /// `unsupported_by_marketplace`).
    #[serde(rename = "type")]
    #[schema(pattern = "^(text|image_url)$")]
    pub kind: String,
    #[serde(default)]
    pub text: Option<String>,
    #[serde(default)]
    pub image_url: Option<ChatImageUrl>,
}

#[derive(Debug, Deserialize, ToSchema)]
pub struct ChatImageUrl {
    #[serde(default)]
    pub url: Option<String>,
    /// `auto`, `low` or `high`.
    #[serde(default)]
    pub detail: Option<String>,
}

/// A tool call of an `assistant` message.
#[derive(Debug, Deserialize, ToSchema)]
pub struct ChatToolCall {
    #[serde(default)]
    pub index: Option<i64>,
    #[serde(default)]
    pub id: Option<String>,
    /// `function`.
    #[serde(default, rename = "type")]
    pub kind: Option<String>,
    #[serde(default)]
    pub function: Option<ChatFunctionCall>,
}

#[derive(Debug, Deserialize, ToSchema)]
pub struct ChatFunctionCall {
    #[serde(default)]
    pub name: Option<String>,
    /// The arguments, as JSON text.
    #[serde(default)]
    pub arguments: Option<String>,
}

/// `{"type": "text" | "json_object" | "json_schema", "json_schema": {…}}`.
#[derive(Debug, Deserialize, ToSchema)]
pub struct ChatResponseFormat {
    #[serde(default, rename = "type")]
    pub kind: Option<String>,
    #[serde(default)]
    pub json_schema: Option<ChatJsonSchema>,
}

#[derive(Debug, Deserialize, ToSchema)]
pub struct ChatJsonSchema {
    #[serde(default)]
    pub name: Option<String>,
    #[serde(default)]
    pub description: Option<String>,
    #[serde(default)]
    pub strict: Option<bool>,
    /// A JSON Schema object.
    #[serde(default)]
    pub schema: Option<serde_json::Map<String, serde_json::Value>>,
}

#[derive(Debug, Deserialize, ToSchema)]
pub struct ChatStreamOptions {
    /// Send token counts in a last chunk.
    #[serde(default)]
    pub include_usage: Option<bool>,
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

/// One server-sent event of a streamed chat completion, as an event-stream reader sees it (the
/// stream is such events separated by blank lines, with `: keep-alive` comments while the
/// provider is quiet).
#[derive(Debug, Serialize, ToSchema)]
#[allow(
    dead_code,
    reason = "documents the stream; the gateway relays the provider's events"
)]
pub struct ChatCompletionStreamEvent {
    /// One `chat.completion.chunk` as JSON (`{"id", "object": "chat.completion.chunk",
    /// "created", "model", "choices": [{"index", "delta": {…}, "finish_reason"}], "usage"?}`,
    /// as the provider wrote it, `model` being the name asked for), then `[DONE]` after the
    /// last one; or, when the stream breaks after it started, one OpenAI error object
    /// (`{"error": {"message", "type", "param", "code"}}`) instead of `[DONE]`.
    #[schema(pattern = "^(\\[DONE\\]|\\{[\\s\\S]*\\})$")]
    pub data: String,
    /// Not sent: every event is a `message`.
    pub event: Option<String>,
    /// Not sent.
    pub id: Option<String>,
    /// Not sent.
    pub retry: Option<i64>,
}
