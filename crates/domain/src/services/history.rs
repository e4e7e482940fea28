use std::sync::Arc;

use chrono::{DateTime, DurationRound, Utc};

use crate::model::*;
use crate::ports::*;

/// Chats a user stores with the gateway (the 2026 gateway's chat-history API), within the
/// operator's bounds so that one free account cannot fill the database.
#[derive(Clone)]
pub struct ChatHistoryService {
    chats: Arc<dyn ChatHistoryRepository>,
    limits: ChatHistoryLimits,
}

/// What one user may store.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ChatHistoryLimits {
    /// Chats per user, archived ones included.
    pub chats_per_user: u64,
    /// Messages per chat.
    pub messages_per_chat: u64,
    /// Bytes of one message's content.
    pub message_bytes: usize,
}

impl Default for ChatHistoryLimits {
    fn default() -> Self {
        Self {
            chats_per_user: 1_000,
            messages_per_chat: 10_000,
            message_bytes: MessageContent::MAX_BYTES,
        }
    }
}

/// How many messages the answer about one chat carries: the first ones in sequence order. A
/// longer chat is read on with its message listing (`message_count` says how many there are).
pub const MESSAGES_WITH_CHAT: u32 = 500;

#[derive(Debug, thiserror::Error)]
pub enum CreateChatError {
    #[error("You already store {0} chats, the most allowed; delete one before creating another")]
    TooMany(u64),
    #[error(transparent)]
    Unknown(#[from] anyhow::Error),
}

#[derive(Debug, thiserror::Error)]
pub enum GetChatError {
    #[error("Chat not found")]
    NotFound,
    #[error(transparent)]
    Unknown(#[from] anyhow::Error),
}

#[derive(Debug, thiserror::Error)]
pub enum RenameChatError {
    #[error("Chat not found")]
    NotFound,
    #[error(transparent)]
    Unknown(#[from] anyhow::Error),
}

#[derive(Debug, thiserror::Error)]
pub enum DeleteChatError {
    #[error("Chat not found")]
    NotFound,
    #[error(transparent)]
    Unknown(#[from] anyhow::Error),
}

#[derive(Debug, thiserror::Error)]
pub enum AddMessageError {
    #[error("Chat not found")]
    ChatNotFound,
    #[error("This chat already holds {0} messages, the most allowed; start another chat")]
    TooMany(u64),
    #[error(transparent)]
    Unknown(#[from] anyhow::Error),
}

#[derive(Debug, thiserror::Error)]
pub enum ListMessagesError {
    #[error("Chat not found")]
    ChatNotFound,
    #[error(transparent)]
    Unknown(#[from] anyhow::Error),
}

#[derive(Debug, thiserror::Error)]
pub enum DeleteMessageError {
    #[error("Message not found")]
    NotFound,
    #[error(transparent)]
    Unknown(#[from] anyhow::Error),
}

/// How a chat is removed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ChatRemoval {
    /// Hidden from listings by default, kept with its messages.
    Archive,
    /// Gone, with its messages.
    Delete,
}

/// A message as submitted, checked.
#[derive(Debug, Clone)]
pub struct MessageDraft {
    pub role: MessageRole,
    pub content: MessageContent,
    pub tokens: Option<i32>,
}

/// Now, to the microsecond: what both databases store, so an answer shows exactly what a later
/// read returns.
fn now() -> DateTime<Utc> {
    let now = Utc::now();
    now.duration_trunc(chrono::Duration::microseconds(1))
        .unwrap_or(now)
}

impl ChatHistoryService {
    pub fn new(chats: Arc<dyn ChatHistoryRepository>) -> Self {
        Self {
            chats,
            limits: ChatHistoryLimits::default(),
        }
    }

    pub fn with_limits(mut self, limits: ChatHistoryLimits) -> Self {
        self.limits = limits;
        self
    }

    /// The most bytes a message's content may have here.
    pub fn max_message_bytes(&self) -> usize {
        self.limits.message_bytes
    }

    pub async fn create(&self, user: UserId, title: ChatTitle) -> Result<Chat, CreateChatError> {
        let at = now();
        let chat = Chat {
            id: ChatId::random(),
            user_id: user,
            title,
            is_archived: false,
            created_at: at,
            updated_at: at,
        };
        // A v4 UUID does not collide in practice, so there is no redraw: a clash is a 500.
        match self
            .chats
            .insert_chat(chat, self.limits.chats_per_user)
            .await
        {
            Ok(chat) => Ok(chat),
            Err(InsertChatError::LimitReached) => {
                Err(CreateChatError::TooMany(self.limits.chats_per_user))
            }
            Err(InsertChatError::Unknown(e)) => Err(e.into()),
        }
    }

    pub async fn list(
        &self,
        user: UserId,
        include_archived: bool,
        page: Page,
    ) -> anyhow::Result<Vec<ChatSummary>> {
        self.chats.list_chats(user, include_archived, page).await
    }

    /// The chat with its first [`MESSAGES_WITH_CHAT`] messages.
    pub async fn get(
        &self,
        user: UserId,
        id: ChatId,
    ) -> Result<(ChatSummary, Vec<ChatMessage>), GetChatError> {
        let first = Page {
            skip: 0,
            limit: MESSAGES_WITH_CHAT,
        };
        self.chats
            .find_chat(user, id, first)
            .await?
            .ok_or(GetChatError::NotFound)
    }

    pub async fn rename(
        &self,
        user: UserId,
        id: ChatId,
        title: ChatTitle,
    ) -> Result<ChatSummary, RenameChatError> {
        self.chats
            .rename_chat(user, id, title, now())
            .await?
            .ok_or(RenameChatError::NotFound)
    }

    pub async fn remove(
        &self,
        user: UserId,
        id: ChatId,
        how: ChatRemoval,
    ) -> Result<(), DeleteChatError> {
        let found = match how {
            ChatRemoval::Archive => self.chats.archive_chat(user, id).await?,
            ChatRemoval::Delete => self.chats.delete_chat(user, id).await?,
        };
        found.then_some(()).ok_or(DeleteChatError::NotFound)
    }

    pub async fn add_message(
        &self,
        user: UserId,
        chat: ChatId,
        draft: MessageDraft,
    ) -> Result<ChatMessage, AddMessageError> {
        let message = NewChatMessage {
            id: MessageId::random(),
            chat_id: chat,
            role: draft.role,
            content: draft.content,
            tokens: draft.tokens,
            created_at: now(),
        };
        match self
            .chats
            .insert_message(user, message, self.limits.messages_per_chat)
            .await
        {
            Ok(message) => Ok(message),
            Err(InsertMessageError::ChatNotFound) => Err(AddMessageError::ChatNotFound),
            Err(InsertMessageError::LimitReached) => {
                Err(AddMessageError::TooMany(self.limits.messages_per_chat))
            }
            Err(InsertMessageError::Unknown(e)) => Err(e.into()),
        }
    }

    pub async fn messages(
        &self,
        user: UserId,
        chat: ChatId,
        page: Page,
    ) -> Result<Vec<ChatMessage>, ListMessagesError> {
        self.chats
            .list_messages(user, chat, page)
            .await?
            .ok_or(ListMessagesError::ChatNotFound)
    }

    pub async fn delete_message(
        &self,
        user: UserId,
        id: MessageId,
    ) -> Result<(), DeleteMessageError> {
        self.chats
            .delete_message(user, id, now())
            .await?
            .then_some(())
            .ok_or(DeleteMessageError::NotFound)
    }
}
