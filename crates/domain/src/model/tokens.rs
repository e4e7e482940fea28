use chrono::{DateTime, Utc};

use super::UserId;

/// The two kinds of JWT. Each is only ever accepted where its kind is expected (RFC 8725
/// §3.12): an access token cannot refresh and a refresh token cannot authenticate.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TokenKind {
    Access,
    Refresh,
}

impl TokenKind {
    pub fn as_str(self) -> &'static str {
        match self {
            TokenKind::Access => "access",
            TokenKind::Refresh => "refresh",
        }
    }
}

/// What a token says, independent of how it is encoded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TokenClaims {
    pub user_id: UserId,
    pub kind: TokenKind,
    /// Unique per token; for refresh tokens it is the key of the stored rotation record.
    pub token_id: String,
    /// The refresh family a token belongs to (every rotation keeps it).
    pub family_id: Option<String>,
    /// Access tokens: the user's token generation when it was issued (see
    /// [`crate::User::token_generation`]); 0 in tokens that predate it.
    pub generation: i64,
    /// When the user last proved who they are (a login or a password change) in the chain of
    /// tokens this one descends from; refreshing keeps it. `None` in tokens that predate it.
    pub authenticated_at: Option<DateTime<Utc>>,
    pub issued_at: DateTime<Utc>,
    pub expires_at: DateTime<Utc>,
}

/// The answer to a login or a refresh.
#[derive(Clone)]
pub struct TokenPair {
    pub access_token: String,
    pub refresh_token: String,
}

impl std::fmt::Debug for TokenPair {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("TokenPair(..)")
    }
}

/// The stored side of a refresh token: enough to rotate it once and detect reuse.
#[derive(Debug, Clone)]
pub struct NewRefreshRecord {
    pub token_id: String,
    pub family_id: String,
    pub user_id: UserId,
    pub issued_at: DateTime<Utc>,
    pub expires_at: DateTime<Utc>,
}

/// What happened when a refresh token was presented for rotation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RefreshConsumption {
    /// It was unused and is now used, and its successor is stored.
    Consumed,
    /// It was used before: someone replayed it.
    Reused,
    /// Its sign-in has ended (logout, password change, a replay detected before, …).
    Revoked,
    /// No such record (never issued by us, or its user was deleted).
    Unknown,
}
