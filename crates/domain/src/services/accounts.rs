use std::net::IpAddr;
use std::sync::Arc;

use chrono::{Duration, Utc};

use super::MAX_DRAWS;
use crate::model::*;
use crate::ports::*;

/// Token lifetimes.
#[derive(Debug, Clone, Copy)]
pub struct TokenLifetimes {
    pub access: Duration,
    pub refresh: Duration,
}

/// Registration, login, token refresh and account deletion.
#[derive(Clone)]
pub struct AccountService {
    users: Arc<dyn UserRepository>,
    refresh_tokens: Arc<dyn RefreshTokenRepository>,
    hasher: Arc<dyn PasswordHasher>,
    tokens: Arc<dyn TokenCodec>,
    throttle: Arc<dyn AuthThrottle>,
    lifetimes: TokenLifetimes,
    /// Forgets a deleted user's keys at once on this replica.
    api_key_cache: Option<Arc<super::ApiKeyCache>>,
}

#[derive(Debug, thiserror::Error)]
pub enum RegisterError {
    #[error("User with this email already exists")]
    EmailTaken,
    #[error("too many registrations")]
    Throttled(Throttled),
    #[error("the server is busy hashing passwords")]
    Busy,
    #[error(transparent)]
    Unknown(#[from] anyhow::Error),
}

#[derive(Debug, thiserror::Error)]
pub enum LoginError {
    /// Unknown email, wrong password and inactive account all look the same.
    #[error("Incorrect email or password")]
    InvalidCredentials,
    #[error("too many login attempts")]
    Throttled(Throttled),
    #[error("the server is busy hashing passwords")]
    Busy,
    #[error(transparent)]
    Unknown(#[from] anyhow::Error),
}

#[derive(Debug, thiserror::Error)]
pub enum RefreshError {
    /// Bad signature, expired, not a refresh token, already used, revoked, or its user is gone.
    #[error("Could not validate credentials")]
    Invalid,
    #[error(transparent)]
    Unknown(#[from] anyhow::Error),
}

#[derive(Debug, thiserror::Error)]
pub enum AuthenticateError {
    #[error("Could not validate credentials")]
    Invalid,
    #[error(transparent)]
    Unknown(#[from] anyhow::Error),
}

#[derive(Debug, thiserror::Error)]
pub enum SetUserActiveError {
    #[error("User not found")]
    NotFound,
    #[error(transparent)]
    Unknown(#[from] anyhow::Error),
}

#[derive(Debug, thiserror::Error)]
pub enum DeleteAccountError {
    #[error("User not found")]
    NotFound,
    #[error(transparent)]
    Unknown(#[from] anyhow::Error),
}

impl From<HashingError> for RegisterError {
    fn from(e: HashingError) -> Self {
        match e {
            HashingError::Busy => Self::Busy,
            HashingError::Unknown(e) => Self::Unknown(e),
        }
    }
}

impl From<HashingError> for LoginError {
    fn from(e: HashingError) -> Self {
        match e {
            HashingError::Busy => Self::Busy,
            HashingError::Unknown(e) => Self::Unknown(e),
        }
    }
}

impl AccountService {
    pub fn new(
        users: Arc<dyn UserRepository>,
        refresh_tokens: Arc<dyn RefreshTokenRepository>,
        hasher: Arc<dyn PasswordHasher>,
        tokens: Arc<dyn TokenCodec>,
        throttle: Arc<dyn AuthThrottle>,
        lifetimes: TokenLifetimes,
    ) -> Self {
        Self {
            users,
            refresh_tokens,
            hasher,
            tokens,
            throttle,
            lifetimes,
            api_key_cache: None,
        }
    }

    pub fn with_api_key_cache(mut self, cache: Arc<super::ApiKeyCache>) -> Self {
        self.api_key_cache = Some(cache);
        self
    }

    pub async fn register(
        &self,
        email: Email,
        password: Password,
        name: Option<UserName>,
        client: Option<IpAddr>,
    ) -> Result<User, RegisterError> {
        self.throttle
            .registration(client)
            .map_err(RegisterError::Throttled)?;
        // Checked first so a duplicate does not cost a hash; the unique indexes still decide
        // races between two registrations of one address. A look-alike address (the same
        // skeleton) is the same account, so it is taken too.
        if self.users.find_user_by_email(&email).await?.is_some() {
            return Err(RegisterError::EmailTaken);
        }
        let password_hash = self.hasher.hash(&password).await?;
        for _ in 0..MAX_DRAWS {
            let new = NewUser {
                id: UserId::random(),
                email: email.clone(),
                name: name.clone(),
                password_hash: password_hash.clone(),
                created_at: Utc::now(),
            };
            match self.users.insert_user(new).await {
                Ok(user) => return Ok(user),
                Err(InsertUserError::IdTaken) => continue,
                Err(InsertUserError::DuplicateEmail) => return Err(RegisterError::EmailTaken),
                Err(InsertUserError::Unknown(e)) => return Err(e.into()),
            }
        }
        Err(anyhow::anyhow!("could not draw a free user id").into())
    }

    pub async fn login(
        &self,
        email: Email,
        password: Password,
        client: Option<IpAddr>,
    ) -> Result<TokenPair, LoginError> {
        // Keyed on the skeleton: look-alike addresses are one account, with one count.
        let account = email.skeleton();
        let admission = self
            .throttle
            .login(&account, client)
            .map_err(LoginError::Throttled)?;
        // Before the hash, so an account under attack answers no guess sooner than this.
        if !admission.delay.is_zero() {
            tokio::time::sleep(admission.delay).await;
        }
        let user = self.users.find_user_by_email(&email).await?;
        // Always verify, against a dummy hash when there is no user, so an unknown address
        // takes as long as a wrong password.
        let verdict = self
            .hasher
            .verify(&password, user.as_ref().map(|u| &u.password_hash))
            .await?;
        let user = match (user, verdict) {
            (Some(user), Verification::Match { needs_rehash }) if user.is_active => {
                if needs_rehash {
                    self.upgrade_hash(&user, &password).await;
                }
                user
            }
            _ => return Err(LoginError::InvalidCredentials),
        };
        self.throttle.login_succeeded(&account, client);
        let family = uuid::Uuid::new_v4().to_string();
        Ok(self.issue_pair(user.id, family).await?)
    }

    /// Re-hashes a password stored with weaker parameters. Failing here must not fail the
    /// login: the old hash is still valid.
    async fn upgrade_hash(&self, user: &User, password: &Password) {
        if let Ok(hash) = self.hasher.hash(password).await {
            let _ = self.users.update_password_hash(user.id, hash).await;
        }
    }

    pub async fn refresh(&self, refresh_token: &str) -> Result<TokenPair, RefreshError> {
        let claims = self
            .tokens
            .decode(refresh_token, TokenKind::Refresh)
            .map_err(|_| RefreshError::Invalid)?;
        let family = claims.family_id.clone().ok_or(RefreshError::Invalid)?;
        let user = match self.users.find_user(claims.user_id).await? {
            Some(user) if user.is_active => user,
            _ => return Err(RefreshError::Invalid),
        };
        let (pair, successor) = self.mint_pair(user.id, family.clone())?;
        match self
            .refresh_tokens
            .rotate_refresh_token(&claims.token_id, Utc::now(), successor)
            .await?
        {
            RefreshConsumption::Consumed => Ok(pair),
            RefreshConsumption::Reused => {
                // Either the thief or the victim is replaying; we cannot tell which, so the
                // whole family dies and the user signs in again.
                self.refresh_tokens.revoke_refresh_family(&family).await?;
                Err(RefreshError::Invalid)
            }
            RefreshConsumption::Unknown => Err(RefreshError::Invalid),
        }
    }

    /// Forgets refresh-token records whose tokens have expired, so the table holds only what
    /// rotation and reuse detection still need.
    pub async fn purge_expired_refresh_tokens(&self) -> anyhow::Result<u64> {
        self.refresh_tokens.purge_refresh_tokens(Utc::now()).await
    }

    /// Resolves an access token to its (existing, active) user.
    pub async fn authenticate(&self, access_token: &str) -> Result<User, AuthenticateError> {
        let claims = self
            .tokens
            .decode(access_token, TokenKind::Access)
            .map_err(|_| AuthenticateError::Invalid)?;
        match self.users.find_user(claims.user_id).await? {
            Some(user) if user.is_active => Ok(user),
            _ => Err(AuthenticateError::Invalid),
        }
    }

    pub async fn delete_account(
        &self,
        user: UserId,
    ) -> Result<AccountDeletion, DeleteAccountError> {
        let deleted = self
            .users
            .delete_user(user)
            .await?
            .ok_or(DeleteAccountError::NotFound)?;
        if let Some(cache) = &self.api_key_cache {
            cache.evict_user(user);
        }
        Ok(deleted)
    }

    /// Operators: a user by id.
    pub async fn find_user(&self, id: UserId) -> anyhow::Result<Option<User>> {
        self.users.find_user(id).await
    }

    /// Operators: a user by email.
    pub async fn find_user_by_email(&self, email: &Email) -> anyhow::Result<Option<User>> {
        self.users.find_user_by_email(email).await
    }

    /// Operators: users, newest first.
    pub async fn list_users(
        &self,
        email_contains: Option<&str>,
        limit: u32,
    ) -> anyhow::Result<Vec<User>> {
        self.users.list_users(email_contains, limit).await
    }

    /// Operators: enables or disables an account. A disabled user's tokens and API keys are
    /// refused from the next request on: at once on this replica, and on the others within
    /// the revocation log's delay (the keys' revocations are logged with the change).
    pub async fn set_active(&self, user: UserId, active: bool) -> Result<User, SetUserActiveError> {
        let updated = self
            .users
            .set_user_active(user, active)
            .await?
            .ok_or(SetUserActiveError::NotFound)?;
        // Cached keys carry their owner's state: read it again.
        if let Some(cache) = &self.api_key_cache {
            cache.evict_user(user);
        }
        Ok(updated)
    }

    async fn issue_pair(&self, user: UserId, family: String) -> anyhow::Result<TokenPair> {
        let (pair, record) = self.mint_pair(user, family)?;
        self.refresh_tokens.insert_refresh_token(record).await?;
        Ok(pair)
    }

    /// Signs a new access and refresh token, and describes the refresh token's record; the
    /// tokens are valid only once that record is stored.
    fn mint_pair(
        &self,
        user: UserId,
        family: String,
    ) -> anyhow::Result<(TokenPair, NewRefreshRecord)> {
        let now = Utc::now();
        let access = TokenClaims {
            user_id: user,
            kind: TokenKind::Access,
            token_id: uuid::Uuid::new_v4().to_string(),
            family_id: None,
            issued_at: now,
            expires_at: now + self.lifetimes.access,
        };
        let refresh = TokenClaims {
            user_id: user,
            kind: TokenKind::Refresh,
            token_id: uuid::Uuid::new_v4().to_string(),
            family_id: Some(family.clone()),
            issued_at: now,
            expires_at: now + self.lifetimes.refresh,
        };
        let pair = TokenPair {
            access_token: self.tokens.encode(&access)?,
            refresh_token: self.tokens.encode(&refresh)?,
        };
        let record = NewRefreshRecord {
            token_id: refresh.token_id,
            family_id: family,
            user_id: user,
            issued_at: now,
            expires_at: refresh.expires_at,
        };
        Ok((pair, record))
    }
}

#[cfg(test)]
mod tests;
