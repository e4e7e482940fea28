//! Chat history: conversations a client stores with the gateway (titles and messages), kept per
//! user. The gateway never writes them itself; the chat route does not record anything here.

use chrono::{DateTime, Utc};

use super::UserId;
use crate::validation::{Invalid, check_no_nul};

macro_rules! uuid_id {
    ($(#[$doc:meta])* $name:ident) => {
        $(#[$doc])*
        #[derive(Debug, Clone, PartialEq, Eq, Hash)]
        pub struct $name(String);

        impl $name {
            pub fn random() -> Self {
                Self(uuid::Uuid::new_v4().to_string())
            }

            /// Any spelling `uuid` accepts, kept in its canonical form (lower-case, hyphenated)
            /// so that every spelling finds the same row. `None` when it is not a UUID: the
            /// caller answers as for an unknown id.
            pub fn parse(raw: &str) -> Option<Self> {
                uuid::Uuid::parse_str(raw).ok().map(|id| Self(id.to_string()))
            }

            /// Rebuilds an id that was canonical when it was stored.
            pub fn from_trusted(stored: String) -> Self {
                Self(stored)
            }

            pub fn as_str(&self) -> &str {
                &self.0
            }
        }

        impl std::fmt::Display for $name {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                self.0.fmt(f)
            }
        }
    };
}

uuid_id!(
    /// A stored chat (a UUID, as the 2026 gateway's).
    ChatId
);
uuid_id!(
    /// One message of a stored chat (a UUID).
    MessageId
);

/// A chat's title: at most 200 characters as sent, stored without its surrounding whitespace,
/// and not blank.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChatTitle(String);

impl ChatTitle {
    pub const MAX_CHARS: usize = 200;

    /// The length is counted before trimming, as the contract's `maxLength` counts it, so a
    /// title the schema refuses is never accepted.
    pub fn parse(raw: &str) -> Result<Self, Invalid> {
        if raw.chars().count() > Self::MAX_CHARS {
            return Err(Invalid::too_long(Self::MAX_CHARS));
        }
        check_no_nul(raw)?;
        let trimmed = raw.trim_matches(is_blank);
        if trimmed.is_empty() {
            return Err(Invalid::new(
                "string_too_short",
                "Title must not be empty or only whitespace",
            ));
        }
        Ok(Self(trimmed.to_owned()))
    }

    pub fn from_trusted(stored: String) -> Self {
        Self(stored)
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// Whitespace as the contract's pattern (`\s`) means it to the fuzzer, whose regular
/// expressions are Python's: Unicode whitespace and the four information separators
/// (U+001C–U+001F), which Rust does not count. A title of those alone is refused, as the
/// schema says.
fn is_blank(c: char) -> bool {
    c.is_whitespace() || matches!(c, '\u{1c}'..='\u{1f}')
}

/// Who wrote a stored message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MessageRole {
    User,
    Assistant,
}

impl MessageRole {
    pub fn parse(raw: &str) -> Result<Self, Invalid> {
        match raw {
            "user" => Ok(Self::User),
            "assistant" => Ok(Self::Assistant),
            _ => Err(Invalid::new(
                "enum",
                "Invalid role. Must be 'user' or 'assistant'",
            )),
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Self::User => "user",
            Self::Assistant => "assistant",
        }
    }
}

/// A message's text, at most the operator's number of bytes (UTF-8, as stored).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MessageContent(String);

impl MessageContent {
    /// The default cap (`MORPHEUS_MAX_CHAT_MESSAGE_BYTES`): 256 KiB.
    pub const MAX_BYTES: usize = 256 * 1024;

    pub fn parse(raw: String, max_bytes: usize) -> Result<Self, Invalid> {
        if raw.len() > max_bytes {
            return Err(Invalid::new(
                "string_too_long",
                format!(
                    "Content is {} bytes; the limit is {max_bytes} bytes per message",
                    raw.len()
                ),
            ));
        }
        check_no_nul(&raw)?;
        Ok(Self(raw))
    }

    pub fn from_trusted(stored: String) -> Self {
        Self(stored)
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// The token count a client may attach to a message: informative only, never billed.
pub fn parse_message_tokens(raw: Option<i64>) -> Result<Option<i32>, Invalid> {
    raw.map(|n| {
        i32::try_from(n).ok().filter(|n| *n >= 0).ok_or_else(|| {
            Invalid::new(
                "value_error",
                format!("Input should be between 0 and {}", i32::MAX),
            )
        })
    })
    .transpose()
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Chat {
    pub id: ChatId,
    pub user_id: UserId,
    pub title: ChatTitle,
    pub is_archived: bool,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

/// A chat with the number of messages it holds (listings and answers about one chat).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChatSummary {
    pub chat: Chat,
    pub message_count: u64,
}

/// A message as submitted; storage gives it its place in the chat.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewChatMessage {
    pub id: MessageId,
    pub chat_id: ChatId,
    pub role: MessageRole,
    pub content: MessageContent,
    pub tokens: Option<i32>,
    pub created_at: DateTime<Utc>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChatMessage {
    pub id: MessageId,
    pub chat_id: ChatId,
    pub role: MessageRole,
    pub content: MessageContent,
    /// 1 for a chat's first message, then one more than the highest so far (deleting a
    /// message leaves a gap rather than renumbering).
    pub sequence: i64,
    pub tokens: Option<i32>,
    pub created_at: DateTime<Utc>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn titles_are_trimmed_not_blank_and_counted_as_sent() {
        assert_eq!(ChatTitle::parse("  Trip  ").unwrap().as_str(), "Trip");
        assert_eq!(
            ChatTitle::parse(" \t").unwrap_err().kind,
            "string_too_short"
        );
        assert_eq!(
            ChatTitle::parse("\u{1f}\u{3000}").unwrap_err().kind,
            "string_too_short"
        );
        assert_eq!(ChatTitle::parse("").unwrap_err().kind, "string_too_short");
        assert!(ChatTitle::parse(&"é".repeat(200)).is_ok());
        let padded = format!("{} ", "a".repeat(200));
        assert_eq!(
            ChatTitle::parse(&padded).unwrap_err().kind,
            "string_too_long"
        );
        assert!(ChatTitle::parse("a\0b").is_err());
    }

    #[test]
    fn ids_are_canonical_uuids() {
        let upper = "6F9619FF-8B86-D011-B42D-00C04FC964FF";
        let id = ChatId::parse(upper).unwrap();
        assert_eq!(id.as_str(), "6f9619ff-8b86-d011-b42d-00c04fc964ff");
        assert_eq!(ChatId::parse("6f9619ff8b86d011b42d00c04fc964ff"), Some(id));
        assert_eq!(ChatId::parse("1"), None);
        assert_eq!(ChatId::parse(""), None);
    }

    #[test]
    fn roles_are_user_or_assistant() {
        assert_eq!(MessageRole::parse("user"), Ok(MessageRole::User));
        assert_eq!(MessageRole::parse("assistant"), Ok(MessageRole::Assistant));
        let refused = MessageRole::parse("system").unwrap_err();
        assert_eq!(
            refused.message,
            "Invalid role. Must be 'user' or 'assistant'"
        );
    }

    #[test]
    fn content_is_capped_in_bytes_and_tokens_fit_a_column() {
        assert!(MessageContent::parse("ab".into(), 2).is_ok());
        let refused = MessageContent::parse("é".into(), 1).unwrap_err();
        assert!(refused.message.contains("limit is 1 bytes"), "{refused}");
        assert_eq!(parse_message_tokens(Some(7)), Ok(Some(7)));
        assert_eq!(parse_message_tokens(None), Ok(None));
        assert!(parse_message_tokens(Some(-1)).is_err());
        assert!(parse_message_tokens(Some(i64::from(i32::MAX) + 1)).is_err());
    }
}
