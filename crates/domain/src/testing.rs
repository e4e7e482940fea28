//! In-memory fakes of the ports, for unit tests of the services without HTTP or a database.
//! Available to this crate's tests and, with the `testing` feature, to other crates' tests
//! (`morpheus-domain = { …, features = ["testing"] }` under `[dev-dependencies]`).
//!
//! Each fake keeps what it was given in plain fields behind a mutex, so a test can arrange a
//! state, and read what the service did, without mocking expectations. Failures a test needs
//! (a hasher that is saturated, an id that collides) are switches on the fake.

use std::collections::{BTreeMap, HashMap};
use std::net::IpAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Mutex, MutexGuard};
use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, Utc};

use crate::model::*;
use crate::ports::*;

mod market;
pub use market::{FakeMarket, MemorySessions, SessionWorld};

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// Users, API keys, refresh tokens, wallet keys and the revocation log, in memory: one store
/// implementing the repository ports the account, key and wallet services use.
#[derive(Default)]
pub struct MemoryStore {
    pub users: Mutex<BTreeMap<UserId, User>>,
    pub api_keys: Mutex<Vec<StoredApiKey>>,
    pub refresh_tokens: Mutex<HashMap<String, RefreshRow>>,
    pub wallet_keys: Mutex<BTreeMap<UserId, StoredWalletKey>>,
    /// Key prefixes written to the revocation log, in order.
    pub revocations: Mutex<Vec<KeyPrefix>>,
    /// The next `n` user inserts report a colliding id.
    pub user_id_collisions: AtomicUsize,
    /// The next `n` user inserts report a duplicate email (a registration racing another).
    pub email_races: AtomicUsize,
    /// When set, `replace_wallet_key` reports the row as changed meanwhile.
    pub wallet_replaced_meanwhile: std::sync::atomic::AtomicBool,
    /// The `before` of every refresh-token purge.
    pub purged_before: Mutex<Vec<DateTime<Utc>>>,
}

/// A stored refresh token.
#[derive(Debug, Clone)]
pub struct RefreshRow {
    pub record: NewRefreshRecord,
    pub used: bool,
    pub revoked: bool,
}

impl MemoryStore {
    /// Stores an active user (as registration would) and returns it.
    pub fn add_user(&self, email: &str, password_hash: &str) -> User {
        let now = Utc::now();
        let user = User {
            id: UserId::random(),
            email: Email::parse(email).expect("a valid email"),
            name: None,
            password_hash: PasswordHash(password_hash.to_owned()),
            is_active: true,
            token_generation: 0,
            limit_multiplier: LimitMultiplier::ONE,
            created_at: now,
            updated_at: now,
        };
        lock(&self.users).insert(user.id, user.clone());
        user
    }

    pub fn user(&self, id: UserId) -> Option<User> {
        lock(&self.users).get(&id).cloned()
    }

    /// Stores an active API key of `user`.
    pub fn add_api_key(&self, user: UserId, prefix: &str) -> ApiKey {
        let key = ApiKey {
            id: ApiKeyId::random(),
            user_id: user,
            prefix: KeyPrefix::from_trusted(prefix.to_owned()),
            name: None,
            is_active: true,
            created_at: Utc::now(),
            last_used_at: None,
            policy: KeyPolicy::default(),
            is_default: false,
        };
        lock(&self.api_keys).push(StoredApiKey {
            key: key.clone(),
            digest: ApiKeyDigest(prefix.as_bytes().to_vec()),
            owner_active: true,
            owner_limit_multiplier: LimitMultiplier::ONE,
        });
        key
    }

    fn owner_active(&self, user: UserId) -> bool {
        lock(&self.users).get(&user).is_some_and(|u| u.is_active)
    }
}

#[async_trait]
impl UserRepository for MemoryStore {
    async fn insert_user(&self, user: NewUser) -> Result<User, InsertUserError> {
        let take = |n: &AtomicUsize| {
            n.fetch_update(Ordering::SeqCst, Ordering::SeqCst, |v| v.checked_sub(1))
                .is_ok()
        };
        if take(&self.user_id_collisions) {
            return Err(InsertUserError::IdTaken);
        }
        let mut users = lock(&self.users);
        let skeleton = user.email.skeleton();
        if take(&self.email_races)
            || users
                .values()
                .any(|u| u.email == user.email || u.email.skeleton() == skeleton)
        {
            return Err(InsertUserError::DuplicateEmail);
        }
        let stored = User {
            id: user.id,
            email: user.email,
            name: user.name,
            password_hash: user.password_hash,
            is_active: true,
            token_generation: 0,
            limit_multiplier: LimitMultiplier::ONE,
            created_at: user.created_at,
            updated_at: user.created_at,
        };
        users.insert(stored.id, stored.clone());
        Ok(stored)
    }
    async fn find_user(&self, id: UserId) -> anyhow::Result<Option<User>> {
        Ok(self.user(id))
    }
    async fn find_user_by_email(&self, email: &Email) -> anyhow::Result<Option<User>> {
        let users = lock(&self.users);
        let skeleton = email.skeleton();
        Ok(users
            .values()
            .find(|u| &u.email == email)
            .or_else(|| users.values().find(|u| u.email.skeleton() == skeleton))
            .cloned())
    }
    async fn update_password_hash(&self, id: UserId, hash: PasswordHash) -> anyhow::Result<()> {
        if let Some(user) = lock(&self.users).get_mut(&id) {
            user.password_hash = hash;
        }
        Ok(())
    }
    async fn change_password(&self, id: UserId, hash: PasswordHash) -> anyhow::Result<bool> {
        let Some(user) = lock(&self.users).get_mut(&id).map(|user| {
            user.password_hash = hash;
            user.id
        }) else {
            return Ok(false);
        };
        self.end_sign_ins(user, RevokedRefreshTokens::All).await?;
        Ok(true)
    }
    async fn delete_user(&self, id: UserId) -> anyhow::Result<Option<AccountDeletion>> {
        if lock(&self.users).remove(&id).is_none() {
            return Ok(None);
        }
        let mut keys = lock(&self.api_keys);
        let owned: Vec<StoredApiKey> = keys
            .iter()
            .filter(|k| k.key.user_id == id)
            .cloned()
            .collect();
        lock(&self.revocations).extend(
            owned
                .iter()
                .filter(|k| k.key.is_active)
                .map(|k| k.key.prefix.clone()),
        );
        keys.retain(|k| k.key.user_id != id);
        lock(&self.refresh_tokens).retain(|_, row| row.record.user_id != id);
        let private_key = lock(&self.wallet_keys).remove(&id).is_some();
        Ok(Some(AccountDeletion {
            sessions: 0,
            api_keys: owned.len() as u64,
            private_key,
            automation_settings: false,
            delegations: 0,
        }))
    }
    async fn list_users(
        &self,
        email_contains: Option<&str>,
        limit: u32,
    ) -> anyhow::Result<Vec<User>> {
        let mut users: Vec<User> = lock(&self.users)
            .values()
            .filter(|u| email_contains.is_none_or(|t| u.email.as_str().contains(&t.to_lowercase())))
            .cloned()
            .collect();
        users.sort_by_key(|u| std::cmp::Reverse(u.created_at));
        users.truncate(limit as usize);
        Ok(users)
    }
    async fn set_user_active(&self, id: UserId, active: bool) -> anyhow::Result<Option<User>> {
        let updated = {
            let mut users = lock(&self.users);
            let Some(user) = users.get_mut(&id) else {
                return Ok(None);
            };
            user.is_active = active;
            user.updated_at = Utc::now();
            user.clone()
        };
        if !active {
            self.end_sign_ins(id, RevokedRefreshTokens::All).await?;
        }
        let updated = self.user(id).unwrap_or(updated);
        let mut keys = lock(&self.api_keys);
        for key in keys.iter_mut().filter(|k| k.key.user_id == id) {
            key.owner_active = active;
            if key.key.is_active {
                lock(&self.revocations).push(key.key.prefix.clone());
            }
        }
        Ok(Some(updated))
    }
    async fn set_limit_multiplier(
        &self,
        id: UserId,
        multiplier: LimitMultiplier,
    ) -> anyhow::Result<Option<User>> {
        let updated = {
            let mut users = lock(&self.users);
            let Some(user) = users.get_mut(&id) else {
                return Ok(None);
            };
            user.limit_multiplier = multiplier;
            user.clone()
        };
        for key in lock(&self.api_keys)
            .iter_mut()
            .filter(|k| k.key.user_id == id)
        {
            key.owner_limit_multiplier = multiplier;
            if key.key.is_active {
                lock(&self.revocations).push(key.key.prefix.clone());
            }
        }
        Ok(Some(updated))
    }
}

#[async_trait]
impl ApiKeyRepository for MemoryStore {
    async fn insert_api_key(
        &self,
        key: NewApiKey,
        limits: ApiKeyLimits,
    ) -> Result<ApiKey, InsertApiKeyError> {
        let owner_active = self.owner_active(key.user_id);
        let mut keys = lock(&self.api_keys);
        if keys
            .iter()
            .any(|k| k.key.prefix == key.prefix || k.key.id == key.id)
        {
            return Err(InsertApiKeyError::Collision);
        }
        let active = keys
            .iter()
            .filter(|k| k.key.user_id == key.user_id && k.key.is_active)
            .count() as u64;
        if active >= limits.max_active {
            return Err(InsertApiKeyError::LimitReached);
        }
        let since = key.created_at - chrono::Duration::days(1);
        let mut today: Vec<DateTime<Utc>> = keys
            .iter()
            .filter(|k| k.key.user_id == key.user_id && k.key.created_at > since)
            .map(|k| k.key.created_at)
            .collect();
        if today.len() as u64 >= limits.max_created_per_day {
            today.sort();
            let freed = today.len() - usize::try_from(limits.max_created_per_day).unwrap_or(0);
            return Err(InsertApiKeyError::DailyLimitReached {
                retry_at: today[freed] + chrono::Duration::days(1),
            });
        }
        let api_key = ApiKey {
            id: key.id,
            user_id: key.user_id,
            prefix: key.prefix,
            name: key.name,
            is_active: true,
            created_at: key.created_at,
            last_used_at: None,
            policy: key.policy,
            is_default: false,
        };
        let owner_limit_multiplier = lock(&self.users)
            .get(&api_key.user_id)
            .map_or(LimitMultiplier::ONE, |u| u.limit_multiplier);
        keys.push(StoredApiKey {
            key: api_key.clone(),
            digest: key.digest,
            owner_active,
            owner_limit_multiplier,
        });
        Ok(api_key)
    }
    async fn list_api_keys(&self, user: UserId, page: Page) -> anyhow::Result<Vec<ApiKey>> {
        let mut keys: Vec<ApiKey> = lock(&self.api_keys)
            .iter()
            .filter(|k| k.key.user_id == user)
            .map(|k| k.key.clone())
            .collect();
        keys.sort_by_key(|k| std::cmp::Reverse(k.created_at));
        Ok(keys
            .into_iter()
            .skip(page.skip as usize)
            .take(page.limit as usize)
            .collect())
    }
    async fn deactivate_api_key(
        &self,
        user: UserId,
        id: ApiKeyId,
    ) -> anyhow::Result<Option<ApiKey>> {
        let mut keys = lock(&self.api_keys);
        let Some(key) = keys
            .iter_mut()
            .find(|k| k.key.id == id && k.key.user_id == user)
        else {
            return Ok(None);
        };
        key.key.is_active = false;
        key.key.is_default = false;
        lock(&self.revocations).push(key.key.prefix.clone());
        Ok(Some(key.key.clone()))
    }
    async fn set_default_api_key(
        &self,
        user: UserId,
        id: ApiKeyId,
        now: DateTime<Utc>,
    ) -> anyhow::Result<Option<ApiKey>> {
        let mut keys = lock(&self.api_keys);
        if !keys
            .iter()
            .any(|k| k.key.id == id && k.key.user_id == user && k.key.is_usable_at(now))
        {
            return Ok(None);
        }
        let mut marked = None;
        for k in keys.iter_mut().filter(|k| k.key.user_id == user) {
            k.key.is_default = k.key.id == id;
            if k.key.is_default {
                marked = Some(k.key.clone());
            }
        }
        Ok(marked)
    }
    async fn marked_default_api_key(
        &self,
        user: UserId,
        now: DateTime<Utc>,
    ) -> anyhow::Result<Option<ApiKey>> {
        Ok(lock(&self.api_keys)
            .iter()
            .map(|k| &k.key)
            .find(|k| k.user_id == user && k.is_default && k.is_usable_at(now))
            .cloned())
    }
    async fn first_active_api_key(
        &self,
        user: UserId,
        now: DateTime<Utc>,
    ) -> anyhow::Result<Option<ApiKey>> {
        Ok(lock(&self.api_keys)
            .iter()
            .map(|k| &k.key)
            .filter(|k| k.user_id == user && k.is_usable_at(now))
            .min_by_key(|k| (k.created_at, k.id.0))
            .cloned())
    }
    async fn update_api_key(
        &self,
        user: UserId,
        id: ApiKeyId,
        change: ApiKeyChange,
    ) -> anyhow::Result<Option<ApiKey>> {
        let mut keys = lock(&self.api_keys);
        let Some(key) = keys
            .iter_mut()
            .find(|k| k.key.id == id && k.key.user_id == user)
        else {
            return Ok(None);
        };
        let k = &mut key.key;
        if let Change::Set(v) = change.name {
            k.name = v;
        }
        if let Change::Set(v) = change.expires_at {
            k.policy.expires_at = v;
        }
        if let Change::Set(v) = change.allowed_models {
            k.policy.allowed_models = v;
        }
        if let Change::Set(v) = change.rpm {
            k.policy.rpm = v;
        }
        if let Change::Set(v) = change.tpm {
            k.policy.tpm = v;
        }
        if let Change::Set(v) = change.budgets {
            k.policy.budgets = v;
        }
        lock(&self.revocations).push(k.prefix.clone());
        Ok(Some(k.clone()))
    }
    async fn find_api_key_by_prefix(
        &self,
        prefix: &KeyPrefix,
    ) -> anyhow::Result<Option<StoredApiKey>> {
        Ok(lock(&self.api_keys)
            .iter()
            .find(|k| &k.key.prefix == prefix)
            .cloned())
    }
    async fn touch_api_keys(&self, uses: Vec<(ApiKeyId, DateTime<Utc>)>) -> anyhow::Result<()> {
        let mut keys = lock(&self.api_keys);
        for (id, at) in uses {
            if let Some(key) = keys.iter_mut().find(|k| k.key.id == id) {
                key.key.last_used_at = Some(at);
            }
        }
        Ok(())
    }
}

#[async_trait]
impl RefreshTokenRepository for MemoryStore {
    async fn insert_refresh_token(&self, record: NewRefreshRecord) -> anyhow::Result<()> {
        lock(&self.refresh_tokens).insert(
            record.token_id.clone(),
            RefreshRow {
                record,
                used: false,
                revoked: false,
            },
        );
        Ok(())
    }
    async fn rotate_refresh_token(
        &self,
        token_id: &str,
        _at: DateTime<Utc>,
        successor: NewRefreshRecord,
    ) -> anyhow::Result<RefreshConsumption> {
        let mut rows = lock(&self.refresh_tokens);
        let Some(row) = rows.get_mut(token_id) else {
            return Ok(RefreshConsumption::Unknown);
        };
        if row.revoked {
            return Ok(RefreshConsumption::Revoked);
        }
        if row.used {
            return Ok(RefreshConsumption::Reused);
        }
        row.used = true;
        rows.insert(
            successor.token_id.clone(),
            RefreshRow {
                record: successor,
                used: false,
                revoked: false,
            },
        );
        Ok(RefreshConsumption::Consumed)
    }
    async fn end_sign_ins(
        &self,
        user: UserId,
        revoked: RevokedRefreshTokens,
    ) -> anyhow::Result<u64> {
        let mut count = 0;
        for row in lock(&self.refresh_tokens).values_mut().filter(|r| {
            r.record.user_id == user
                && !r.revoked
                && match &revoked {
                    RevokedRefreshTokens::Family(family) => r.record.family_id == *family,
                    RevokedRefreshTokens::All => true,
                    RevokedRefreshTokens::None => false,
                }
        }) {
            row.revoked = true;
            count += 1;
        }
        if let Some(user) = lock(&self.users).get_mut(&user) {
            user.token_generation += 1;
        }
        Ok(count)
    }
    async fn purge_refresh_tokens(&self, before: DateTime<Utc>) -> anyhow::Result<u64> {
        lock(&self.purged_before).push(before);
        let mut rows = lock(&self.refresh_tokens);
        let count = rows.len();
        rows.retain(|_, r| r.record.expires_at >= before);
        Ok((count - rows.len()) as u64)
    }
}

#[async_trait]
impl WalletKeyRepository for MemoryStore {
    async fn upsert_wallet_key(
        &self,
        user: UserId,
        sealed: SealedWalletKey,
        at: DateTime<Utc>,
    ) -> anyhow::Result<StoredWalletKey> {
        let mut keys = lock(&self.wallet_keys);
        let created_at = keys.get(&user).map_or(at, |k| k.created_at);
        let stored = StoredWalletKey {
            user_id: user,
            sealed,
            created_at,
            updated_at: at,
        };
        keys.insert(user, stored.clone());
        Ok(stored)
    }
    async fn find_wallet_key(&self, user: UserId) -> anyhow::Result<Option<StoredWalletKey>> {
        Ok(lock(&self.wallet_keys).get(&user).cloned())
    }
    async fn delete_wallet_key(&self, user: UserId) -> anyhow::Result<bool> {
        Ok(lock(&self.wallet_keys).remove(&user).is_some())
    }
    async fn list_wallet_keys(
        &self,
        after: Option<UserId>,
        limit: u32,
    ) -> anyhow::Result<Vec<StoredWalletKey>> {
        Ok(lock(&self.wallet_keys)
            .values()
            .filter(|k| after.is_none_or(|a| k.user_id > a))
            .take(limit as usize)
            .cloned()
            .collect())
    }
    async fn replace_wallet_key(
        &self,
        user: UserId,
        expected: SealedWalletKey,
        replacement: SealedWalletKey,
        at: DateTime<Utc>,
    ) -> anyhow::Result<bool> {
        if self.wallet_replaced_meanwhile.load(Ordering::SeqCst) {
            return Ok(false);
        }
        let mut keys = lock(&self.wallet_keys);
        match keys.get_mut(&user) {
            Some(stored) if stored.sealed == expected => {
                stored.sealed = replacement;
                stored.updated_at = at;
                Ok(true)
            }
            _ => Ok(false),
        }
    }
}

/// A password "hash" that is the password with a prefix: `fake$<password>` (or
/// `weak$<password>`, which verifies but asks to be rehashed). Counts its calls.
#[derive(Default)]
pub struct FakeHasher {
    /// Every call answers `Busy` while set.
    pub busy: std::sync::atomic::AtomicBool,
    pub hashes: AtomicUsize,
    /// Verifications, `None`-hash (unknown account) ones included.
    pub verifications: AtomicUsize,
    pub dummy_verifications: AtomicUsize,
}

impl FakeHasher {
    pub fn hash_of(password: &str) -> String {
        format!("fake${password}")
    }
}

#[async_trait]
impl PasswordHasher for FakeHasher {
    async fn hash(&self, password: &Password) -> Result<PasswordHash, HashingError> {
        if self.busy.load(Ordering::SeqCst) {
            return Err(HashingError::Busy);
        }
        self.hashes.fetch_add(1, Ordering::SeqCst);
        Ok(PasswordHash(Self::hash_of(password.expose())))
    }
    async fn verify(
        &self,
        password: &Password,
        hash: Option<&PasswordHash>,
    ) -> Result<Verification, HashingError> {
        if self.busy.load(Ordering::SeqCst) {
            return Err(HashingError::Busy);
        }
        self.verifications.fetch_add(1, Ordering::SeqCst);
        let Some(hash) = hash else {
            self.dummy_verifications.fetch_add(1, Ordering::SeqCst);
            return Ok(Verification::Mismatch);
        };
        Ok(if hash.0 == Self::hash_of(password.expose()) {
            Verification::Match {
                needs_rehash: false,
            }
        } else if hash.0 == format!("weak${}", password.expose()) {
            Verification::Match { needs_rehash: true }
        } else {
            Verification::Mismatch
        })
    }
}

/// Tokens that are their claims, readable:
/// `kind|user|token_id|family|expires_unix|generation|authenticated_unix`. A token whose expiry
/// has passed, or of the other kind, is refused, as the JWT codec does.
#[derive(Default)]
pub struct FakeTokens;

impl TokenCodec for FakeTokens {
    fn encode(&self, c: &TokenClaims) -> anyhow::Result<String> {
        Ok(format!(
            "{}|{}|{}|{}|{}|{}|{}",
            c.kind.as_str(),
            c.user_id.0,
            c.token_id,
            c.family_id.as_deref().unwrap_or(""),
            c.expires_at.timestamp(),
            c.generation,
            c.authenticated_at
                .map(|at| at.timestamp().to_string())
                .unwrap_or_default(),
        ))
    }
    fn decode(&self, token: &str, expected: TokenKind) -> Result<TokenClaims, InvalidToken> {
        let parts: Vec<&str> = token.split('|').collect();
        let [
            kind,
            user,
            token_id,
            family,
            expires,
            generation,
            authenticated,
        ] = parts[..]
        else {
            return Err(InvalidToken);
        };
        if kind != expected.as_str() {
            return Err(InvalidToken);
        }
        let expires_at = DateTime::from_timestamp(expires.parse().map_err(|_| InvalidToken)?, 0)
            .ok_or(InvalidToken)?;
        if expires_at <= Utc::now() {
            return Err(InvalidToken);
        }
        Ok(TokenClaims {
            user_id: UserId(user.parse().map_err(|_| InvalidToken)?),
            kind: expected,
            token_id: token_id.to_owned(),
            family_id: (!family.is_empty()).then(|| family.to_owned()),
            generation: generation.parse().map_err(|_| InvalidToken)?,
            authenticated_at: match authenticated {
                "" => None,
                at => Some(
                    DateTime::from_timestamp(at.parse().map_err(|_| InvalidToken)?, 0)
                        .ok_or(InvalidToken)?,
                ),
            },
            issued_at: Utc::now(),
            expires_at,
        })
    }
}

/// A throttle that lets everything through unless told otherwise, and counts.
#[derive(Default)]
pub struct FakeThrottle {
    pub refuse_logins: std::sync::atomic::AtomicBool,
    pub refuse_registrations: std::sync::atomic::AtomicBool,
    pub logins: AtomicUsize,
    pub successes: AtomicUsize,
}

#[async_trait]
impl AuthThrottle for FakeThrottle {
    async fn login(
        &self,
        _: &EmailSkeleton,
        _: Option<IpAddr>,
    ) -> Result<LoginAdmission, Throttled> {
        self.logins.fetch_add(1, Ordering::SeqCst);
        if self.refuse_logins.load(Ordering::SeqCst) {
            return Err(Throttled {
                retry_after: Duration::from_secs(42),
            });
        }
        Ok(LoginAdmission {
            delay: Duration::ZERO,
        })
    }
    async fn login_succeeded(&self, _: &EmailSkeleton, _: Option<IpAddr>) {
        self.successes.fetch_add(1, Ordering::SeqCst);
    }
    async fn registration(&self, _: Option<IpAddr>) -> Result<(), Throttled> {
        if self.refuse_registrations.load(Ordering::SeqCst) {
            return Err(Throttled {
                retry_after: Duration::from_secs(60),
            });
        }
        Ok(())
    }
}
