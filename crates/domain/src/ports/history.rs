//! Where chat history is stored.

use async_trait::async_trait;
use chrono::{DateTime, Utc};

use crate::model::*;

#[derive(Debug, thiserror::Error)]
pub enum InsertChatError {
    /// The user already stores the most chats allowed (archived ones count).
    #[error("too many chats")]
    LimitReached,
    #[error(transparent)]
    Unknown(#[from] anyhow::Error),
}

#[derive(Debug, thiserror::Error)]
pub enum InsertMessageError {
    /// The chat does not exist or is not the user's.
    #[error("chat not found")]
    ChatNotFound,
    /// The chat already holds the most messages allowed.
    #[error("too many messages")]
    LimitReached,
    #[error(transparent)]
    Unknown(#[from] anyhow::Error),
}

/// Every method is scoped to `user`: another user's chat or message is reported exactly like
/// one that does not exist.
#[async_trait]
pub trait ChatHistoryRepository: Send + Sync {
    /// Stores the chat unless its user already stores `max_per_user` chats. The count and the
    /// insert are one transaction, serialised per user, so chats created at the same moment
    /// cannot pass the limit together.
    async fn insert_chat(&self, chat: Chat, max_per_user: u64) -> Result<Chat, InsertChatError>;
    /// One page of the user's chats, most recently updated first (archived ones only when
    /// asked), each with its message count.
    async fn list_chats(
        &self,
        user: UserId,
        include_archived: bool,
        page: Page,
    ) -> anyhow::Result<Vec<ChatSummary>>;
    /// The chat and one page of its messages in sequence order; `None` if it is not the user's.
    async fn find_chat(
        &self,
        user: UserId,
        id: ChatId,
        messages: Page,
    ) -> anyhow::Result<Option<(ChatSummary, Vec<ChatMessage>)>>;
    /// Sets the title and `updated_at`; `None` if the chat is not the user's.
    async fn rename_chat(
        &self,
        user: UserId,
        id: ChatId,
        title: ChatTitle,
        at: DateTime<Utc>,
    ) -> anyhow::Result<Option<ChatSummary>>;
    /// Marks the chat archived (again is not an error); `false` if it is not the user's.
    async fn archive_chat(&self, user: UserId, id: ChatId) -> anyhow::Result<bool>;
    /// Deletes the chat and its messages; `false` if it is not the user's.
    async fn delete_chat(&self, user: UserId, id: ChatId) -> anyhow::Result<bool>;
    /// Appends the message to the user's chat, unless it already holds `max_per_chat`: its
    /// sequence is one more than the chat's highest, and the chat's `updated_at` becomes the
    /// message's `created_at`, in one transaction serialised per chat, so concurrent appends
    /// get distinct, consecutive sequences.
    async fn insert_message(
        &self,
        user: UserId,
        message: NewChatMessage,
        max_per_chat: u64,
    ) -> Result<ChatMessage, InsertMessageError>;
    /// One page of the chat's messages in sequence order; `None` if the chat is not the
    /// user's.
    async fn list_messages(
        &self,
        user: UserId,
        chat: ChatId,
        page: Page,
    ) -> anyhow::Result<Option<Vec<ChatMessage>>>;
    /// Deletes the message if its chat is the user's, and sets the chat's `updated_at`;
    /// `false` otherwise.
    async fn delete_message(
        &self,
        user: UserId,
        id: MessageId,
        at: DateTime<Utc>,
    ) -> anyhow::Result<bool>;
}
