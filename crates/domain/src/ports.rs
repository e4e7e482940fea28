//! The ports: everything the services need from the outside world.
//!
//! They are object-safe (`async_trait`) on purpose: the HTTP layer holds them as
//! `Arc<dyn …>`, so it never names the storage crate's types and handlers stay non-generic.
//!
//! # Errors
//! Unless a method says otherwise, `Err` means an infrastructure failure (database down, pool
//! exhausted, …) that the caller reports as a 5xx; expected outcomes such as "not found" are in
//! the `Ok` value.

use std::net::IpAddr;
use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, Utc};

use crate::model::*;

mod counters;
mod credits;
mod history;
mod marketplace;
mod media;
mod provider;
mod sessions;

pub use counters::*;
pub use credits::*;
pub use history::*;
pub use marketplace::*;
pub use media::*;
pub use provider::*;
pub use sessions::*;

/// Marks an infrastructure error as "the store cannot be reached right now" (pool exhausted,
/// connection refused, …) rather than a bug: callers answer 503 instead of 500. Storage wraps
/// such failures as `anyhow::Error::new(StorageUnavailable)` with context.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("the database is unavailable")]
pub struct StorageUnavailable;

#[derive(Debug, thiserror::Error)]
pub enum InsertUserError {
    /// The address, or one that looks like it, is taken.
    #[error("a user with this email already exists")]
    DuplicateEmail,
    /// The random id collided with an existing one: draw another.
    #[error("user id already taken")]
    IdTaken,
    #[error(transparent)]
    Unknown(#[from] anyhow::Error),
}

#[async_trait]
pub trait UserRepository: Send + Sync {
    async fn insert_user(&self, user: NewUser) -> Result<User, InsertUserError>;
    async fn find_user(&self, id: UserId) -> anyhow::Result<Option<User>>;
    /// The account of this address: the one with exactly this address, else the one whose
    /// address looks like it (the same [`Email::skeleton`]).
    async fn find_user_by_email(&self, email: &Email) -> anyhow::Result<Option<User>>;
    /// Replaces the hash without ending any sign-in (a hash upgraded at login).
    async fn update_password_hash(&self, id: UserId, hash: PasswordHash) -> anyhow::Result<()>;
    /// A new password: replaces the hash, revokes every refresh token of the user and raises
    /// their token generation, in one transaction. `false` if there is no such user.
    async fn change_password(&self, id: UserId, hash: PasswordHash) -> anyhow::Result<bool>;
    /// Deletes the user and, in the same transaction, everything they own. Their usage records
    /// and sessions stay (accounting; sessions are closed on chain at their end), moved to a
    /// fresh [`UserId::pseudonym`]. `None` if there was no such user.
    async fn delete_user(&self, id: UserId) -> anyhow::Result<Option<AccountDeletion>>;
    /// Users, newest first, at most `limit`; only those whose email contains `email_contains`
    /// when it is given (operators' listing).
    async fn list_users(
        &self,
        email_contains: Option<&str>,
        limit: u32,
    ) -> anyhow::Result<Vec<User>>;
    /// Enables or disables the user, and logs the user's active API keys in the revocation
    /// log in the same transaction, so that every replica's key cache forgets them (and reads
    /// the owner's new state). Disabling also ends every sign-in (as
    /// [`RefreshTokenRepository::end_sign_ins`] with [`RevokedRefreshTokens::All`]), so that
    /// enabling the user again does not bring old sessions back. `None` if there is no such
    /// user.
    async fn set_user_active(&self, id: UserId, active: bool) -> anyhow::Result<Option<User>>;
    /// Sets the user's share of the operator's rate limits, and logs their active API keys in
    /// the revocation log in the same transaction (cached keys carry the share). `None` if
    /// there is no such user.
    async fn set_limit_multiplier(
        &self,
        id: UserId,
        multiplier: LimitMultiplier,
    ) -> anyhow::Result<Option<User>>;
}

#[derive(Debug, thiserror::Error)]
pub enum InsertApiKeyError {
    /// The random prefix or id collided with an existing key: draw again.
    #[error("api key prefix or id already taken")]
    Collision,
    /// The user already has the most active keys allowed.
    #[error("too many active api keys")]
    LimitReached,
    /// The user has created the most keys allowed in 24 hours (revoked ones count); one more
    /// may be created at `retry_at`.
    #[error("too many api keys created in the last 24 hours")]
    DailyLimitReached { retry_at: DateTime<Utc> },
    #[error(transparent)]
    Unknown(#[from] anyhow::Error),
}

/// The caps a new key must fit under.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ApiKeyLimits {
    /// Active keys per user.
    pub max_active: u64,
    /// Keys a user may create in any 24 hours, revoked ones included.
    pub max_created_per_day: u64,
}

impl ApiKeyLimits {
    pub const NONE: Self = Self {
        max_active: u64::MAX,
        max_created_per_day: u64::MAX,
    };

    /// Only a cap on active keys.
    pub const fn active(max_active: u64) -> Self {
        Self {
            max_active,
            max_created_per_day: u64::MAX,
        }
    }
}

#[async_trait]
pub trait ApiKeyRepository: Send + Sync {
    /// Stores the key unless its user already has `limits.max_active` active keys, or has
    /// created `limits.max_created_per_day` keys in the 24 hours before the new key's
    /// `created_at`. The counts and the insert are one transaction, serialised per user, so
    /// keys created at the same moment cannot pass a limit together.
    async fn insert_api_key(
        &self,
        key: NewApiKey,
        limits: ApiKeyLimits,
    ) -> Result<ApiKey, InsertApiKeyError>;
    /// Applies `change` to the key if it belongs to `user` (`None` otherwise), and logs the
    /// key in the revocation log in the same transaction, so that every replica's key cache
    /// reads it again.
    async fn update_api_key(
        &self,
        user: UserId,
        id: ApiKeyId,
        change: ApiKeyChange,
    ) -> anyhow::Result<Option<ApiKey>>;
    /// One page of the user's keys, newest first, revoked ones included.
    async fn list_api_keys(&self, user: UserId, page: Page) -> anyhow::Result<Vec<ApiKey>>;
    /// Marks `user`'s key `id` as their default and clears the mark on their other keys, in
    /// one transaction, if it is active and not expired at `now`; `None` otherwise.
    async fn set_default_api_key(
        &self,
        user: UserId,
        id: ApiKeyId,
        now: DateTime<Utc>,
    ) -> anyhow::Result<Option<ApiKey>>;
    /// The user's key marked default, if it is active and not expired at `now`.
    async fn marked_default_api_key(
        &self,
        user: UserId,
        now: DateTime<Utc>,
    ) -> anyhow::Result<Option<ApiKey>>;
    /// The user's oldest key that is active and not expired at `now`.
    async fn first_active_api_key(
        &self,
        user: UserId,
        now: DateTime<Utc>,
    ) -> anyhow::Result<Option<ApiKey>>;
    /// Marks the key inactive (and no longer the default) if it belongs to `user`; `None`
    /// otherwise.
    async fn deactivate_api_key(
        &self,
        user: UserId,
        id: ApiKeyId,
    ) -> anyhow::Result<Option<ApiKey>>;
    async fn find_api_key_by_prefix(
        &self,
        prefix: &KeyPrefix,
    ) -> anyhow::Result<Option<StoredApiKey>>;
    /// Records when keys were last used (a batch, written off the requests' path).
    async fn touch_api_keys(&self, uses: Vec<(ApiKeyId, DateTime<Utc>)>) -> anyhow::Result<()>;
}

/// The refresh tokens a sign-out revokes; the user's access tokens all end whatever it says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RevokedRefreshTokens {
    /// The tokens of one login (its family), if it is the user's.
    Family(String),
    /// Every family of the user.
    All,
    /// None: only the access tokens end.
    None,
}

#[async_trait]
pub trait RefreshTokenRepository: Send + Sync {
    async fn insert_refresh_token(&self, record: NewRefreshRecord) -> anyhow::Result<()>;
    /// Marks the token used and stores its successor, in one transaction: both happen or
    /// neither, so a failure in between can neither spend a token without a successor (the
    /// user's retry would then look like a replay) nor leave a successor outside its family's
    /// revocation. Exactly one of any number of concurrent callers gets
    /// [`RefreshConsumption::Consumed`]; the others store nothing.
    async fn rotate_refresh_token(
        &self,
        token_id: &str,
        at: DateTime<Utc>,
        successor: NewRefreshRecord,
    ) -> anyhow::Result<RefreshConsumption>;
    /// Ends sign-ins of `user`, in one transaction: revokes the refresh tokens `revoked` names
    /// (only ever the user's own), including a successor whose rotation commits while this
    /// runs, and raises the user's token generation, so that every access token issued before
    /// is refused. Returns how many refresh-token records it revoked.
    async fn end_sign_ins(
        &self,
        user: UserId,
        revoked: RevokedRefreshTokens,
    ) -> anyhow::Result<u64>;
    /// Deletes the records of tokens that expired before `before` (their JWTs are refused on
    /// expiry anyway, so nothing is left to detect); returns how many.
    async fn purge_refresh_tokens(&self, before: DateTime<Utc>) -> anyhow::Result<u64>;
}

#[async_trait]
pub trait WalletKeyRepository: Send + Sync {
    /// Stores the sealed key, replacing any previous one (keeping its `created_at`).
    async fn upsert_wallet_key(
        &self,
        user: UserId,
        sealed: SealedWalletKey,
        at: DateTime<Utc>,
    ) -> anyhow::Result<StoredWalletKey>;
    async fn find_wallet_key(&self, user: UserId) -> anyhow::Result<Option<StoredWalletKey>>;
    async fn delete_wallet_key(&self, user: UserId) -> anyhow::Result<bool>;
    /// Up to `limit` stored keys of users with ids above `after`, in id order (for resealing
    /// every row page by page).
    async fn list_wallet_keys(
        &self,
        after: Option<UserId>,
        limit: u32,
    ) -> anyhow::Result<Vec<StoredWalletKey>>;
    /// Replaces a sealed key only if it is still `expected`, so a key the user replaced in the
    /// meantime is never overwritten with an older one. Returns whether it replaced it.
    async fn replace_wallet_key(
        &self,
        user: UserId,
        expected: SealedWalletKey,
        replacement: SealedWalletKey,
        at: DateTime<Utc>,
    ) -> anyhow::Result<bool>;
}

#[derive(Debug, thiserror::Error)]
pub enum InsertDelegationError {
    #[error("delegation id already taken")]
    IdTaken,
    /// The user already stores the most delegations allowed.
    #[error("too many delegations")]
    LimitReached,
    #[error(transparent)]
    Unknown(#[from] anyhow::Error),
}

#[async_trait]
pub trait DelegationRepository: Send + Sync {
    /// Inserts the delegation unless its user already stores `max_per_user`; when it is
    /// active, the user's previously active one is deactivated in the same transaction, so a
    /// user never has two. The count and the insert are one transaction, serialised per user.
    async fn insert_delegation(
        &self,
        delegation: Delegation,
        max_per_user: u64,
    ) -> Result<Delegation, InsertDelegationError>;
    /// Newest first.
    async fn list_delegations(&self, user: UserId, page: Page) -> anyhow::Result<Vec<Delegation>>;
    async fn find_active_delegation(&self, user: UserId) -> anyhow::Result<Option<Delegation>>;
    async fn delete_delegation(&self, user: UserId, id: DelegationId) -> anyhow::Result<bool>;
}

#[async_trait]
pub trait AutomationRepository: Send + Sync {
    /// The user's settings, created from `defaults` on first read.
    async fn get_or_create_automation(
        &self,
        defaults: AutomationSettings,
    ) -> anyhow::Result<AutomationSettings>;
    /// Applies `update` (creating the row from `defaults` first if needed).
    async fn update_automation(
        &self,
        defaults: AutomationSettings,
        update: AutomationUpdate,
        at: DateTime<Utc>,
    ) -> anyhow::Result<AutomationSettings>;
}

/// One API key revoked (deactivated, or deleted with its account), as the revocation log
/// records it for every replica's key cache.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Revocation {
    /// Rises with every revocation (gaps allowed).
    pub seq: i64,
    pub prefix: KeyPrefix,
}

/// The log of API-key revocations, written in the same transaction as the revocation itself.
#[async_trait]
pub trait RevocationLog: Send + Sync {
    /// Revocations with a sequence number above `after`, lowest first, at most `limit`.
    async fn revocations_after(&self, after: i64, limit: i64) -> anyhow::Result<Vec<Revocation>>;
    /// The highest sequence number so far (0 for an empty log).
    async fn latest_revocation(&self) -> anyhow::Result<i64>;
    /// Drops entries recorded before `before`; returns how many.
    async fn purge_revocations(&self, before: DateTime<Utc>) -> anyhow::Result<u64>;
}

#[async_trait]
pub trait HealthProbe: Send + Sync {
    /// Succeeds when the database answers a trivial query.
    async fn ping(&self) -> anyhow::Result<()>;
    /// How busy this process's connection pool is (no query; for metrics).
    fn pool_use(&self) -> PoolUse;
}

/// A connection pool's state at one instant.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct PoolUse {
    /// Connections open, idle or lent out.
    pub connections: u32,
    pub idle: u32,
    /// The pool's size limit.
    pub max: u32,
}

impl PoolUse {
    /// Connections lent out right now.
    pub fn in_use(&self) -> u32 {
        self.connections.saturating_sub(self.idle)
    }
}

/// The outcome of checking a password against a stored hash.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verification {
    /// Correct. `needs_rehash` when the stored hash uses weaker parameters than today's.
    Match {
        needs_rehash: bool,
    },
    Mismatch,
}

#[derive(Debug, thiserror::Error)]
pub enum HashingError {
    /// Too many hashes are already queued: the caller should come back later.
    #[error("password hashing is saturated")]
    Busy,
    #[error(transparent)]
    Unknown(#[from] anyhow::Error),
}

/// Password hashing: slow on purpose, so implementations run it off the async workers with
/// bounded concurrency.
#[async_trait]
pub trait PasswordHasher: Send + Sync {
    async fn hash(&self, password: &Password) -> Result<PasswordHash, HashingError>;
    /// Checks `password` against `hash`. With `None` (unknown account) it does the same amount
    /// of work against a dummy hash and answers `Mismatch`, so timing does not reveal whether
    /// an account exists.
    async fn verify(
        &self,
        password: &Password,
        hash: Option<&PasswordHash>,
    ) -> Result<Verification, HashingError>;
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid token")]
pub struct InvalidToken;

/// Signs and checks tokens (JWT in production). The codec checks signature, algorithm, issuer,
/// audience, expiry and kind; the services check that the subject still exists.
pub trait TokenCodec: Send + Sync {
    fn encode(&self, claims: &TokenClaims) -> anyhow::Result<String>;
    fn decode(&self, token: &str, expected: TokenKind) -> Result<TokenClaims, InvalidToken>;
}

/// Too many login attempts; try again after the given delay.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("too many login attempts")]
pub struct Throttled {
    pub retry_after: Duration,
}

/// A login attempt let through, and how long it waits before its password is checked (the
/// account is under attack: every attempt on it is slowed, the owner's included).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct LoginAdmission {
    pub delay: Duration,
}

/// Limits the credential operations that cost a password hash: logins per account and client
/// address, per client address, and (slowing, not refusing, while it can) per account;
/// registrations per client address. `client` is the client's address as the HTTP layer
/// counts it (its network prefix).
#[async_trait]
pub trait AuthThrottle: Send + Sync {
    /// Records a login attempt; `Err` when the account, the client or the pair is over its
    /// limit. Accounts are keyed on their address's skeleton, so look-alike addresses (one
    /// account) share one count.
    async fn login(
        &self,
        account: &EmailSkeleton,
        client: Option<IpAddr>,
    ) -> Result<LoginAdmission, Throttled>;
    /// The attempt had the right password: the account's run of failures ends, and the
    /// client becomes one the account is known to log in from.
    async fn login_succeeded(&self, account: &EmailSkeleton, client: Option<IpAddr>);
    /// Records a registration attempt; `Err` when the client is over its limit.
    async fn registration(&self, client: Option<IpAddr>) -> Result<(), Throttled>;
}
