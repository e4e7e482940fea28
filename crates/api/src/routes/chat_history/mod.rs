//! The chat-history API (`/api/v1/chat-history`, API key): chats a client stores per user,
//! in the 2026 Morpheus gateway's shapes. Ids are UUIDs; a malformed id, an unknown one and
//! another user's all answer the same 404.

pub mod create_chat;
pub mod create_message;
pub mod delete_chat;
pub mod delete_message;
pub mod get_chat;
pub mod list_chats;
pub mod list_messages;
pub mod update_chat;

use actix_web::HttpRequest;
use morpheus_domain::{ChatId, ChatTitle, MessageId};

use crate::error::{ApiError, Fields};

/// The `chat_id` of the path; anything that is not a UUID names no chat.
fn chat_id(req: &HttpRequest) -> Result<ChatId, ApiError> {
    ChatId::parse(req.match_info().get("chat_id").unwrap_or_default())
        .ok_or_else(|| ApiError::NotFound("Chat not found".to_owned()))
}

/// The `message_id` of the path; anything that is not a UUID names no message.
fn message_id(req: &HttpRequest) -> Result<MessageId, ApiError> {
    MessageId::parse(req.match_info().get("message_id").unwrap_or_default())
        .ok_or_else(|| ApiError::NotFound("Message not found".to_owned()))
}

/// The body's `title`, checked (422 naming it otherwise).
fn title(raw: &str) -> Result<ChatTitle, ApiError> {
    let mut fields = Fields::default();
    fields
        .check("title", ChatTitle::parse(raw))
        .ok_or_else(|| fields.into())
}
