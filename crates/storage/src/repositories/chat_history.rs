use std::collections::HashMap;

use anyhow::Context;
use async_trait::async_trait;
use chrono::{DateTime, NaiveDateTime, Utc};
use diesel::prelude::*;
use morpheus_domain::ports::{ChatHistoryRepository, InsertChatError, InsertMessageError};
use morpheus_domain::{
    Chat, ChatId, ChatMessage, ChatSummary, ChatTitle, MessageContent, MessageId, MessageRole,
    NewChatMessage, Page, UserId,
};

use crate::connection::AnyConnection;
use crate::database::Database;
use crate::schema::{chats, messages, users};

#[derive(Queryable, Selectable, Insertable)]
#[diesel(table_name = chats)]
struct ChatRow {
    id: String,
    user_id: i64,
    title: String,
    is_archived: bool,
    created_at: NaiveDateTime,
    updated_at: NaiveDateTime,
}

impl From<ChatRow> for Chat {
    fn from(row: ChatRow) -> Self {
        Chat {
            id: ChatId::from_trusted(row.id),
            user_id: UserId(row.user_id),
            title: ChatTitle::from_trusted(row.title),
            is_archived: row.is_archived,
            created_at: row.created_at.and_utc(),
            updated_at: row.updated_at.and_utc(),
        }
    }
}

impl From<&Chat> for ChatRow {
    fn from(chat: &Chat) -> Self {
        ChatRow {
            id: chat.id.as_str().to_owned(),
            user_id: chat.user_id.0,
            title: chat.title.as_str().to_owned(),
            is_archived: chat.is_archived,
            created_at: chat.created_at.naive_utc(),
            updated_at: chat.updated_at.naive_utc(),
        }
    }
}

#[derive(Queryable, Selectable, Insertable)]
#[diesel(table_name = messages)]
struct MessageRow {
    id: String,
    chat_id: String,
    role: String,
    content: String,
    sequence: i64,
    tokens: Option<i32>,
    created_at: NaiveDateTime,
}

impl MessageRow {
    fn new(message: NewChatMessage, sequence: i64) -> Self {
        MessageRow {
            id: message.id.as_str().to_owned(),
            chat_id: message.chat_id.as_str().to_owned(),
            role: message.role.as_str().to_owned(),
            content: message.content.as_str().to_owned(),
            sequence,
            tokens: message.tokens,
            created_at: message.created_at.naive_utc(),
        }
    }

    fn into_message(self) -> anyhow::Result<ChatMessage> {
        Ok(ChatMessage {
            // The column's CHECK admits only the two roles.
            role: MessageRole::parse(&self.role).context("a stored message's role")?,
            id: MessageId::from_trusted(self.id),
            chat_id: ChatId::from_trusted(self.chat_id),
            content: MessageContent::from_trusted(self.content),
            sequence: self.sequence,
            tokens: self.tokens,
            created_at: self.created_at.and_utc(),
        })
    }
}

fn to_messages(rows: Vec<MessageRow>) -> anyhow::Result<Vec<ChatMessage>> {
    rows.into_iter().map(MessageRow::into_message).collect()
}

/// Why a message was not inserted.
enum Refused {
    ChatNotFound,
    LimitReached,
    Database(diesel::result::Error),
}

impl From<diesel::result::Error> for Refused {
    fn from(error: diesel::result::Error) -> Self {
        Self::Database(error)
    }
}

fn count(n: i64) -> u64 {
    u64::try_from(n).unwrap_or(0)
}

/// The user's chat, or `None` (another user's chat is not found either).
fn owned_chat(conn: &mut AnyConnection, user: i64, id: &str) -> QueryResult<Option<ChatRow>> {
    chats::table
        .find(id)
        .filter(chats::user_id.eq(user))
        .select(ChatRow::as_select())
        .first(conn)
        .optional()
}

fn message_count(conn: &mut AnyConnection, chat: &str) -> QueryResult<u64> {
    messages::table
        .filter(messages::chat_id.eq(chat))
        .count()
        .get_result::<i64>(conn)
        .map(count)
}

fn summary(conn: &mut AnyConnection, row: ChatRow) -> QueryResult<ChatSummary> {
    let message_count = message_count(conn, &row.id)?;
    Ok(ChatSummary {
        chat: row.into(),
        message_count,
    })
}

/// Serialises one user's chat creations on Postgres (a lock on the user's row), so that two of
/// them cannot both count below the limit. `NO KEY UPDATE` does not block the key-share locks
/// that inserting rows which reference the user takes. SQLite needs nothing here: `BEGIN
/// IMMEDIATE` already admits one writer at a time.
fn lock_user(conn: &mut AnyConnection, user: i64) -> QueryResult<()> {
    if let AnyConnection::Postgresql(pg) = conn {
        users::table
            .find(user)
            .select(users::id)
            .for_no_key_update()
            .first::<i64>(pg)
            .optional()?;
    }
    Ok(())
}

/// Serialises one chat's appends on Postgres (a lock on the chat's row), so that two of them
/// cannot read the same highest sequence or both count below the limit; as [`lock_user`]. A
/// missing chat locks nothing, and the caller finds it missing.
fn lock_chat(conn: &mut AnyConnection, chat: &str) -> QueryResult<()> {
    if let AnyConnection::Postgresql(pg) = conn {
        chats::table
            .find(chat)
            .select(chats::id)
            .for_no_key_update()
            .first::<String>(pg)
            .optional()?;
    }
    Ok(())
}

/// Inserts the chat unless its user stores `max` already; `false` then.
fn insert_chat(conn: &mut AnyConnection, row: &ChatRow, max: u64) -> QueryResult<bool> {
    conn.write_transaction(|c| {
        lock_user(c, row.user_id)?;
        let stored: i64 = chats::table
            .filter(chats::user_id.eq(row.user_id))
            .count()
            .get_result(c)?;
        if count(stored) >= max {
            return Ok(false);
        }
        diesel::insert_into(chats::table).values(row).execute(c)?;
        Ok(true)
    })
}

fn insert_message(
    conn: &mut AnyConnection,
    user: i64,
    message: NewChatMessage,
    max: u64,
) -> Result<MessageRow, Refused> {
    conn.write_transaction(|c| {
        let chat = message.chat_id.as_str().to_owned();
        lock_chat(c, &chat)?;
        if owned_chat(c, user, &chat)?.is_none() {
            return Err(Refused::ChatNotFound);
        }
        if message_count(c, &chat)? >= max {
            return Err(Refused::LimitReached);
        }
        let highest: Option<i64> = messages::table
            .filter(messages::chat_id.eq(&chat))
            .select(diesel::dsl::max(messages::sequence))
            .first(c)?;
        let at = message.created_at.naive_utc();
        let row = MessageRow::new(message, highest.unwrap_or(0) + 1);
        diesel::insert_into(messages::table)
            .values(&row)
            .execute(c)?;
        diesel::update(chats::table.find(&chat))
            .set(chats::updated_at.eq(at))
            .execute(c)?;
        Ok(row)
    })
}

fn page_of_messages(
    conn: &mut AnyConnection,
    chat: &str,
    page: Page,
) -> QueryResult<Vec<MessageRow>> {
    messages::table
        .filter(messages::chat_id.eq(chat))
        .order(messages::sequence.asc())
        .offset(i64::from(page.skip))
        .limit(i64::from(page.limit))
        .select(MessageRow::as_select())
        .load(conn)
}

#[async_trait]
impl ChatHistoryRepository for Database {
    #[tracing::instrument(skip_all, fields(user_id = %chat.user_id, chat_id = %chat.id))]
    async fn insert_chat(&self, chat: Chat, max_per_user: u64) -> Result<Chat, InsertChatError> {
        let row = ChatRow::from(&chat);
        self.run(move |conn| {
            let inserted = insert_chat(conn, &row, max_per_user).context("inserting a chat")?;
            if inserted {
                Ok(chat)
            } else {
                Err(InsertChatError::LimitReached)
            }
        })
        .await
    }

    #[tracing::instrument(skip_all, fields(user_id = %user))]
    async fn list_chats(
        &self,
        user: UserId,
        include_archived: bool,
        page: Page,
    ) -> anyhow::Result<Vec<ChatSummary>> {
        self.run(move |conn| {
            let mut query = chats::table.filter(chats::user_id.eq(user.0)).into_boxed();
            if !include_archived {
                query = query.filter(chats::is_archived.eq(false));
            }
            let rows: Vec<ChatRow> = query
                // The id breaks ties between chats updated in the same instant, so pages
                // neither repeat nor skip rows.
                .order((chats::updated_at.desc(), chats::id.desc()))
                .offset(i64::from(page.skip))
                .limit(i64::from(page.limit))
                .select(ChatRow::as_select())
                .load(conn)
                .context("listing chats")?;
            let ids: Vec<&str> = rows.iter().map(|r| r.id.as_str()).collect();
            // One grouped count for the whole page rather than one query per chat.
            let counts: HashMap<String, i64> = messages::table
                .filter(messages::chat_id.eq_any(&ids))
                .group_by(messages::chat_id)
                .select((messages::chat_id, diesel::dsl::count_star()))
                .load::<(String, i64)>(conn)
                .context("counting the listed chats' messages")?
                .into_iter()
                .collect();
            Ok(rows
                .into_iter()
                .map(|row| {
                    let message_count = count(counts.get(&row.id).copied().unwrap_or(0));
                    ChatSummary {
                        chat: row.into(),
                        message_count,
                    }
                })
                .collect())
        })
        .await
    }

    #[tracing::instrument(skip_all, fields(user_id = %user, chat_id = %id))]
    async fn find_chat(
        &self,
        user: UserId,
        id: ChatId,
        messages: Page,
    ) -> anyhow::Result<Option<(ChatSummary, Vec<ChatMessage>)>> {
        self.run(move |conn| {
            // One snapshot, so the count and the messages agree.
            let found = conn
                .transaction(|c| {
                    let Some(row) = owned_chat(c, user.0, id.as_str())? else {
                        return Ok(None);
                    };
                    let rows = page_of_messages(c, id.as_str(), messages)?;
                    Ok::<_, diesel::result::Error>(Some((summary(c, row)?, rows)))
                })
                .context("reading a chat")?;
            found
                .map(|(summary, rows)| Ok((summary, to_messages(rows)?)))
                .transpose()
        })
        .await
    }

    #[tracing::instrument(skip_all, fields(user_id = %user, chat_id = %id))]
    async fn rename_chat(
        &self,
        user: UserId,
        id: ChatId,
        title: ChatTitle,
        at: DateTime<Utc>,
    ) -> anyhow::Result<Option<ChatSummary>> {
        self.run(move |conn| {
            conn.write_transaction(|c| {
                let renamed = diesel::update(
                    chats::table
                        .find(id.as_str())
                        .filter(chats::user_id.eq(user.0)),
                )
                .set((
                    chats::title.eq(title.as_str()),
                    chats::updated_at.eq(at.naive_utc()),
                ))
                .execute(c)?;
                if renamed == 0 {
                    return Ok(None);
                }
                let row = chats::table
                    .find(id.as_str())
                    .select(ChatRow::as_select())
                    .first(c)?;
                summary(c, row).map(Some)
            })
            .context("renaming a chat")
        })
        .await
    }

    #[tracing::instrument(skip_all, fields(user_id = %user, chat_id = %id))]
    async fn archive_chat(&self, user: UserId, id: ChatId) -> anyhow::Result<bool> {
        self.run(move |conn| {
            diesel::update(
                chats::table
                    .find(id.as_str())
                    .filter(chats::user_id.eq(user.0)),
            )
            .set(chats::is_archived.eq(true))
            .execute(conn)
            .map(|n| n > 0)
            .context("archiving a chat")
        })
        .await
    }

    #[tracing::instrument(skip_all, fields(user_id = %user, chat_id = %id))]
    async fn delete_chat(&self, user: UserId, id: ChatId) -> anyhow::Result<bool> {
        self.run(move |conn| {
            // The messages go with it (ON DELETE CASCADE).
            diesel::delete(
                chats::table
                    .find(id.as_str())
                    .filter(chats::user_id.eq(user.0)),
            )
            .execute(conn)
            .map(|n| n > 0)
            .context("deleting a chat")
        })
        .await
    }

    #[tracing::instrument(skip_all, fields(user_id = %user, chat_id = %message.chat_id))]
    async fn insert_message(
        &self,
        user: UserId,
        message: NewChatMessage,
        max_per_chat: u64,
    ) -> Result<ChatMessage, InsertMessageError> {
        self.run(
            move |conn| match insert_message(conn, user.0, message, max_per_chat) {
                Ok(row) => Ok(row.into_message()?),
                Err(Refused::ChatNotFound) => Err(InsertMessageError::ChatNotFound),
                Err(Refused::LimitReached) => Err(InsertMessageError::LimitReached),
                Err(Refused::Database(e)) => {
                    Err(anyhow::Error::new(e).context("inserting a message").into())
                }
            },
        )
        .await
    }

    #[tracing::instrument(skip_all, fields(user_id = %user, chat_id = %chat))]
    async fn list_messages(
        &self,
        user: UserId,
        chat: ChatId,
        page: Page,
    ) -> anyhow::Result<Option<Vec<ChatMessage>>> {
        self.run(move |conn| {
            if owned_chat(conn, user.0, chat.as_str())
                .context("looking up a chat")?
                .is_none()
            {
                return Ok(None);
            }
            let rows = page_of_messages(conn, chat.as_str(), page).context("listing messages")?;
            to_messages(rows).map(Some)
        })
        .await
    }

    #[tracing::instrument(skip_all, fields(user_id = %user, message_id = %id))]
    async fn delete_message(
        &self,
        user: UserId,
        id: MessageId,
        at: DateTime<Utc>,
    ) -> anyhow::Result<bool> {
        self.run(move |conn| {
            conn.write_transaction(|c| {
                let chat: Option<String> = messages::table
                    .inner_join(chats::table)
                    .filter(messages::id.eq(id.as_str()))
                    .filter(chats::user_id.eq(user.0))
                    .select(messages::chat_id)
                    .first(c)
                    .optional()?;
                let Some(chat) = chat else {
                    return Ok(false);
                };
                diesel::delete(messages::table.find(id.as_str())).execute(c)?;
                diesel::update(chats::table.find(&chat))
                    .set(chats::updated_at.eq(at.naive_utc()))
                    .execute(c)?;
                Ok::<_, diesel::result::Error>(true)
            })
            .context("deleting a message")
        })
        .await
    }
}
