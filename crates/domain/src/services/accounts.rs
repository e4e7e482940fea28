use std::net::IpAddr;
use std::sync::Arc;

use chrono::{DateTime, Duration, Utc};

use super::UserCache;

use super::MAX_DRAWS;
use crate::model::*;
use crate::ports::*;

/// Token lifetimes.
#[derive(Debug, Clone, Copy)]
pub struct TokenLifetimes {
    pub access: Duration,
    pub refresh: Duration,
}

/// How long after a sign-in an access token may delete its account without the password.
pub const DEFAULT_FRESH_SIGN_IN: Duration = Duration::seconds(300);

/// Registration, login, token refresh, sign-out, password change and account deletion.
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
    /// Users behind access tokens (nothing cached unless configured).
    user_cache: Arc<UserCache>,
    /// A sign-in this recent lets its tokens delete the account without the password.
    fresh_sign_in: Duration,
}

/// The user behind a valid access token, and what the token says.
#[derive(Debug, Clone)]
pub struct SignedIn {
    pub user: User,
    pub token: TokenClaims,
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
    /// No password was given and the token's sign-in is not recent enough.
    #[error("a recent sign-in or the current password is required")]
    RecentSignInRequired,
    #[error("Incorrect password")]
    IncorrectPassword,
    #[error("too many password attempts")]
    Throttled(Throttled),
    #[error("the server is busy hashing passwords")]
    Busy,
    #[error(transparent)]
    Unknown(#[from] anyhow::Error),
}

#[derive(Debug, thiserror::Error)]
pub enum ChangePasswordError {
    #[error("Incorrect password")]
    IncorrectPassword,
    #[error("too many password attempts")]
    Throttled(Throttled),
    #[error("the server is busy hashing passwords")]
    Busy,
    /// The account went away meanwhile.
    #[error("Could not validate credentials")]
    Gone,
    #[error(transparent)]
    Unknown(#[from] anyhow::Error),
}

/// Why the current password did not confirm who the caller is.
#[derive(Debug)]
enum Reauthentication {
    Incorrect,
    Throttled(Throttled),
    Busy,
    Unknown(anyhow::Error),
}

impl From<HashingError> for Reauthentication {
    fn from(e: HashingError) -> Self {
        match e {
            HashingError::Busy => Self::Busy,
            HashingError::Unknown(e) => Self::Unknown(e),
        }
    }
}

impl From<Reauthentication> for ChangePasswordError {
    fn from(e: Reauthentication) -> Self {
        match e {
            Reauthentication::Incorrect => Self::IncorrectPassword,
            Reauthentication::Throttled(t) => Self::Throttled(t),
            Reauthentication::Busy => Self::Busy,
            Reauthentication::Unknown(e) => Self::Unknown(e),
        }
    }
}

impl From<Reauthentication> for DeleteAccountError {
    fn from(e: Reauthentication) -> Self {
        match e {
            Reauthentication::Incorrect => Self::IncorrectPassword,
            Reauthentication::Throttled(t) => Self::Throttled(t),
            Reauthentication::Busy => Self::Busy,
            Reauthentication::Unknown(e) => Self::Unknown(e),
        }
    }
}

impl From<HashingError> for ChangePasswordError {
    fn from(e: HashingError) -> Self {
        Reauthentication::from(e).into()
    }
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
            user_cache: Arc::new(UserCache::new(std::time::Duration::ZERO)),
            fresh_sign_in: DEFAULT_FRESH_SIGN_IN,
        }
    }

    pub fn with_api_key_cache(mut self, cache: Arc<super::ApiKeyCache>) -> Self {
        self.api_key_cache = Some(cache);
        self
    }

    /// Access tokens are checked against users read at most `max_age` ago (zero: always
    /// read); changes made on another replica are seen within it.
    pub fn with_user_cache(mut self, max_age: std::time::Duration) -> Self {
        self.user_cache = Arc::new(UserCache::new(max_age));
        self
    }

    /// How recent a sign-in must be for its tokens to delete the account without the
    /// password.
    pub fn with_fresh_sign_in(mut self, window: Duration) -> Self {
        self.fresh_sign_in = window;
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
            .await
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
            .await
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
        self.throttle.login_succeeded(&account, client).await;
        Ok(self.issue_pair(&user, Utc::now()).await?)
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
        let (pair, successor) = self.mint_pair(&user, family.clone(), claims.authenticated_at)?;
        match self
            .refresh_tokens
            .rotate_refresh_token(&claims.token_id, Utc::now(), successor)
            .await?
        {
            RefreshConsumption::Consumed => Ok(pair),
            RefreshConsumption::Reused => {
                // Either the thief or the victim is replaying; we cannot tell which, so the
                // whole family dies (and the access tokens with it) and the user signs in
                // again.
                self.end_sign_ins(user.id, RevokedRefreshTokens::Family(family))
                    .await?;
                Err(RefreshError::Invalid)
            }
            // Nothing left to revoke: ending the access tokens again would only let whoever
            // holds an old token sign the user's other devices out at will.
            RefreshConsumption::Revoked | RefreshConsumption::Unknown => Err(RefreshError::Invalid),
        }
    }

    /// Forgets refresh-token records whose tokens have expired, so the table holds only what
    /// rotation and reuse detection still need.
    pub async fn purge_expired_refresh_tokens(&self) -> anyhow::Result<u64> {
        self.refresh_tokens.purge_refresh_tokens(Utc::now()).await
    }

    /// Resolves an access token to its (existing, active) user, whose sign-ins have not ended
    /// since the token was issued.
    pub async fn authenticate(&self, access_token: &str) -> Result<SignedIn, AuthenticateError> {
        let claims = self
            .tokens
            .decode(access_token, TokenKind::Access)
            .map_err(|_| AuthenticateError::Invalid)?;
        let generation = self.user_cache.generation();
        let user = match self.user_cache.get(claims.user_id) {
            // A token of a later generation than the cached user was issued after a sign-out
            // that this replica has not seen yet: read the user again rather than refuse it.
            Some(user) if claims.generation <= user.token_generation => Some(user),
            _ => {
                let found = self.users.find_user(claims.user_id).await?;
                if let Some(user) = &found {
                    self.user_cache.insert(generation, user.clone());
                }
                found
            }
        };
        match user {
            Some(user) if user.is_active && user.token_generation == claims.generation => {
                Ok(SignedIn {
                    user,
                    token: claims,
                })
            }
            _ => Err(AuthenticateError::Invalid),
        }
    }

    /// Signs the caller out: revokes the presented refresh token's family when it is theirs
    /// (every family with `everywhere`), and ends all their access tokens. Whatever the token
    /// is (another user's, expired, forged), the outcome looks the same to the caller.
    pub async fn logout(
        &self,
        user: UserId,
        refresh_token: &str,
        everywhere: bool,
    ) -> anyhow::Result<()> {
        let revoked = if everywhere {
            RevokedRefreshTokens::All
        } else {
            match self.tokens.decode(refresh_token, TokenKind::Refresh) {
                Ok(TokenClaims {
                    user_id,
                    family_id: Some(family),
                    ..
                }) if user_id == user => RevokedRefreshTokens::Family(family),
                _ => RevokedRefreshTokens::None,
            }
        };
        self.end_sign_ins(user, revoked).await
    }

    /// Replaces the caller's password after checking the current one (throttled like a
    /// login); every sign-in ends, and the caller gets a new token pair.
    pub async fn change_password(
        &self,
        user: &User,
        current: Password,
        new: Password,
        client: Option<IpAddr>,
    ) -> Result<TokenPair, ChangePasswordError> {
        self.check_password(user, &current, client).await?;
        let hash = self.hasher.hash(&new).await?;
        let changed = self.users.change_password(user.id, hash).await;
        self.user_cache.evict(user.id);
        if !changed? {
            return Err(ChangePasswordError::Gone);
        }
        let user = self
            .users
            .find_user(user.id)
            .await?
            .ok_or(ChangePasswordError::Gone)?;
        Ok(self.issue_pair(&user, Utc::now()).await?)
    }

    /// Deletes the caller's account, if they signed in recently or give their password.
    pub async fn delete_own_account(
        &self,
        signed_in: &SignedIn,
        password: Option<Password>,
        client: Option<IpAddr>,
    ) -> Result<AccountDeletion, DeleteAccountError> {
        match password {
            Some(password) => {
                self.check_password(&signed_in.user, &password, client)
                    .await?
            }
            None if self.signed_in_recently(&signed_in.token) => {}
            None => return Err(DeleteAccountError::RecentSignInRequired),
        }
        self.delete_account(signed_in.user.id).await
    }

    fn signed_in_recently(&self, token: &TokenClaims) -> bool {
        token
            .authenticated_at
            .is_some_and(|at| Utc::now() - at <= self.fresh_sign_in)
    }

    /// Confirms the caller knows the account's password. Throttled as a login of that account
    /// from that client, so a stolen access token is no faster a way to guess it.
    async fn check_password(
        &self,
        user: &User,
        password: &Password,
        client: Option<IpAddr>,
    ) -> Result<(), Reauthentication> {
        let account = user.email.skeleton();
        let admission = self
            .throttle
            .login(&account, client)
            .await
            .map_err(Reauthentication::Throttled)?;
        if !admission.delay.is_zero() {
            tokio::time::sleep(admission.delay).await;
        }
        match self
            .hasher
            .verify(password, Some(&user.password_hash))
            .await?
        {
            Verification::Match { .. } => {
                self.throttle.login_succeeded(&account, client).await;
                Ok(())
            }
            Verification::Mismatch => Err(Reauthentication::Incorrect),
        }
    }

    /// Operators and the account's owner: deletes the account and what it owns.
    pub async fn delete_account(
        &self,
        user: UserId,
    ) -> Result<AccountDeletion, DeleteAccountError> {
        let deleted = self.users.delete_user(user).await;
        self.user_cache.evict(user);
        let deleted = deleted?.ok_or(DeleteAccountError::NotFound)?;
        if let Some(cache) = &self.api_key_cache {
            cache.evict_user(user);
        }
        Ok(deleted)
    }

    /// Revokes refresh tokens and ends every access token of the user; at once on this
    /// replica, within the user cache's age on the others.
    async fn end_sign_ins(
        &self,
        user: UserId,
        revoked: RevokedRefreshTokens,
    ) -> anyhow::Result<()> {
        let ended = self.refresh_tokens.end_sign_ins(user, revoked).await;
        self.user_cache.evict(user);
        ended.map(drop)
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
        let updated = self.users.set_user_active(user, active).await;
        self.user_cache.evict(user);
        let updated = updated?.ok_or(SetUserActiveError::NotFound)?;
        // Cached keys carry their owner's state: read it again.
        if let Some(cache) = &self.api_key_cache {
            cache.evict_user(user);
        }
        Ok(updated)
    }

    /// Operators: the user's share of the operator's rate limits. Their cached keys carry it:
    /// at once on this replica, on the others within the revocation log's delay.
    pub async fn set_limit_multiplier(
        &self,
        user: UserId,
        multiplier: LimitMultiplier,
    ) -> Result<User, SetUserActiveError> {
        let updated = self.users.set_limit_multiplier(user, multiplier).await;
        self.user_cache.evict(user);
        let updated = updated?.ok_or(SetUserActiveError::NotFound)?;
        if let Some(cache) = &self.api_key_cache {
            cache.evict_user(user);
        }
        Ok(updated)
    }

    /// A new login (a new refresh family) for a user who has just proved who they are.
    async fn issue_pair(
        &self,
        user: &User,
        authenticated_at: DateTime<Utc>,
    ) -> anyhow::Result<TokenPair> {
        let family = uuid::Uuid::new_v4().to_string();
        let (pair, record) = self.mint_pair(user, family, Some(authenticated_at))?;
        self.refresh_tokens.insert_refresh_token(record).await?;
        Ok(pair)
    }

    /// Signs a new access and refresh token, and describes the refresh token's record; the
    /// tokens are valid only once that record is stored.
    fn mint_pair(
        &self,
        user: &User,
        family: String,
        authenticated_at: Option<DateTime<Utc>>,
    ) -> anyhow::Result<(TokenPair, NewRefreshRecord)> {
        let now = Utc::now();
        let access = TokenClaims {
            user_id: user.id,
            kind: TokenKind::Access,
            token_id: uuid::Uuid::new_v4().to_string(),
            family_id: None,
            generation: user.token_generation,
            authenticated_at,
            issued_at: now,
            expires_at: now + self.lifetimes.access,
        };
        let refresh = TokenClaims {
            user_id: user.id,
            kind: TokenKind::Refresh,
            token_id: uuid::Uuid::new_v4().to_string(),
            family_id: Some(family.clone()),
            generation: user.token_generation,
            authenticated_at,
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
            user_id: user.id,
            issued_at: now,
            expires_at: refresh.expires_at,
        };
        Ok((pair, record))
    }
}

#[cfg(test)]
mod tests;
