//! Chat history bodies, in the 2026 Morpheus gateway's shapes (`is_archived` and, on one chat,
//! `message_count` are additions a client of that gateway ignores).

use chrono::{DateTime, Utc};
use morpheus_domain::{ChatMessage, ChatSummary};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

/// A title: at most 200 characters as sent, not blank, no NUL; stored trimmed.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ChatCreate {
    #[schema(
        min_length = 1,
        max_length = 200,
        pattern = r"^[^\u0000]*[^\s\u0000][^\u0000]*$"
    )]
    pub title: String,
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ChatUpdate {
    #[schema(
        min_length = 1,
        max_length = 200,
        pattern = r"^[^\u0000]*[^\s\u0000][^\u0000]*$"
    )]
    pub title: String,
}

/// One chat, without its messages.
#[derive(Debug, Serialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ChatResponse {
    /// A UUID.
    pub id: String,
    pub title: String,
    pub created_at: DateTime<Utc>,
    /// The last change: the title, or a message added or deleted.
    pub updated_at: DateTime<Utc>,
    pub message_count: i64,
    pub is_archived: bool,
}

impl From<ChatSummary> for ChatResponse {
    fn from(s: ChatSummary) -> Self {
        Self {
            id: s.chat.id.to_string(),
            title: s.chat.title.as_str().to_owned(),
            created_at: s.chat.created_at,
            updated_at: s.chat.updated_at,
            message_count: i64::try_from(s.message_count).unwrap_or(i64::MAX),
            is_archived: s.chat.is_archived,
        }
    }
}

/// One chat with its first messages (at most 500, in sequence order).
#[derive(Debug, Serialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ChatDetailResponse {
    pub id: String,
    pub title: String,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    pub is_archived: bool,
    /// All the chat's messages; more than `messages` holds when the chat is longer than 500.
    pub message_count: i64,
    pub messages: Vec<ChatMessageResponse>,
}

impl ChatDetailResponse {
    pub fn new(summary: ChatSummary, messages: Vec<ChatMessage>) -> Self {
        let chat = ChatResponse::from(summary);
        Self {
            id: chat.id,
            title: chat.title,
            created_at: chat.created_at,
            updated_at: chat.updated_at,
            is_archived: chat.is_archived,
            message_count: chat.message_count,
            messages: messages
                .into_iter()
                .map(ChatMessageResponse::from)
                .collect(),
        }
    }
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ChatMessageCreate {
    /// `user` or `assistant`.
    #[schema(pattern = "^(user|assistant)$")]
    pub role: String,
    #[schema(pattern = r"^[^\u0000]*$")]
    pub content: String,
    /// Informative only (never billed).
    #[serde(default)]
    #[schema(minimum = 0, maximum = 2147483647)]
    pub tokens: Option<i64>,
}

#[derive(Debug, Serialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ChatMessageResponse {
    /// A UUID.
    pub id: String,
    pub chat_id: String,
    /// `user` or `assistant`.
    pub role: String,
    pub content: String,
    /// The message's place in its chat: 1, then one more than the highest so far.
    pub sequence: i64,
    pub created_at: DateTime<Utc>,
    #[schema(required = true)]
    pub tokens: Option<i32>,
}

impl From<ChatMessage> for ChatMessageResponse {
    fn from(m: ChatMessage) -> Self {
        Self {
            id: m.id.to_string(),
            chat_id: m.chat_id.to_string(),
            role: m.role.as_str().to_owned(),
            content: m.content.as_str().to_owned(),
            sequence: m.sequence,
            created_at: m.created_at,
            tokens: m.tokens,
        }
    }
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct ChatListQuery {
    /// How many chats to skip (most recently updated first).
    #[param(minimum = 0, maximum = 1000000, default = 0)]
    pub skip: Option<i64>,
    /// How many to return (at most 100).
    #[param(minimum = 1, maximum = 100, default = 50)]
    pub limit: Option<i64>,
    /// Also list archived chats.
    #[param(default = false)]
    pub include_archived: Option<bool>,
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct MessageListQuery {
    /// How many messages to skip (in sequence order).
    #[param(minimum = 0, maximum = 1000000, default = 0)]
    pub skip: Option<i64>,
    /// How many to return (at most 500).
    #[param(minimum = 1, maximum = 500, default = 100)]
    pub limit: Option<i64>,
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct ChatDeleteQuery {
    /// `true` (the default) archives the chat; `false` deletes it and its messages.
    #[param(default = true)]
    pub archive_only: Option<bool>,
}
