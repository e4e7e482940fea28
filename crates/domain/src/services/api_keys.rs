use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use chrono::{DateTime, Duration, Utc};

use super::{ApiKeyCache, MAX_DRAWS};
use crate::crypto::ApiKeyHasher;
use crate::model::*;
use crate::ports::*;

/// `last_used_at` is updated at most this often per key, so a busy key does not turn every
/// request into a database write; updates are written in batches by
/// [`ApiKeyService::flush_last_used`].
const LAST_USED_GRANULARITY: Duration = Duration::seconds(60);

/// Creating, listing, revoking and checking API keys.
#[derive(Clone)]
pub struct ApiKeyService {
    keys: Arc<dyn ApiKeyRepository>,
    hasher: ApiKeyHasher,
    limits: ApiKeyLimits,
    cache: Option<Arc<ApiKeyCache>>,
    /// `last_used_at` values not yet written.
    pending_uses: Arc<Mutex<HashMap<ApiKeyId, DateTime<Utc>>>>,
}

/// The key a request was made with, and whose it is.
#[derive(Debug, Clone)]
pub struct ApiKeyPrincipal {
    pub key: ApiKey,
    /// The owner's share of the operator's rate limits.
    pub limit_multiplier: LimitMultiplier,
}

impl ApiKeyPrincipal {
    pub fn user_id(&self) -> UserId {
        self.key.user_id
    }
}

#[derive(Debug, thiserror::Error)]
pub enum CreateApiKeyError {
    #[error("You already have {0} active API keys; revoke one before creating another")]
    TooManyKeys(u64),
    /// Creations per user are limited per 24 hours, revoked keys included, so the cap on
    /// active keys cannot be reset by revoking and creating again.
    #[error(
        "You have created {limit} API keys in the last 24 hours, the most allowed \
         (MORPHEUS_KEY_CREATIONS_PER_DAY); try again later"
    )]
    TooManyToday {
        limit: u64,
        retry_after: std::time::Duration,
    },
    #[error(transparent)]
    Unknown(#[from] anyhow::Error),
}

#[derive(Debug, thiserror::Error)]
pub enum UpdateApiKeyError {
    #[error("API key not found")]
    NotFound,
    #[error(transparent)]
    Unknown(#[from] anyhow::Error),
}

#[derive(Debug, thiserror::Error)]
pub enum SetDefaultApiKeyError {
    #[error("API key not found or not owned by user")]
    NotFound,
    #[error(transparent)]
    Unknown(#[from] anyhow::Error),
}

#[derive(Debug, thiserror::Error)]
pub enum RevokeApiKeyError {
    #[error("API key not found")]
    NotFound,
    #[error(transparent)]
    Unknown(#[from] anyhow::Error),
}

#[derive(Debug, thiserror::Error)]
pub enum ApiKeyAuthError {
    #[error("Invalid API key format. Must start with sk-")]
    Malformed,
    /// Unknown prefix, wrong secret, revoked or expired key, inactive owner: one answer for
    /// all.
    #[error("Invalid API key")]
    Invalid,
    #[error(transparent)]
    Unknown(#[from] anyhow::Error),
}

impl ApiKeyService {
    pub const DEFAULT_MAX_ACTIVE_PER_USER: u64 = 100;
    pub const DEFAULT_CREATIONS_PER_DAY: u64 = 20;

    pub fn new(keys: Arc<dyn ApiKeyRepository>, hasher: ApiKeyHasher) -> Self {
        Self {
            keys,
            hasher,
            limits: ApiKeyLimits {
                max_active: Self::DEFAULT_MAX_ACTIVE_PER_USER,
                max_created_per_day: Self::DEFAULT_CREATIONS_PER_DAY,
            },
            cache: None,
            pending_uses: Arc::default(),
        }
    }

    /// Serves authentication from `cache` when it can (see [`ApiKeyCache`]).
    pub fn with_cache(mut self, cache: Arc<ApiKeyCache>) -> Self {
        self.cache = Some(cache);
        self
    }

    pub fn with_max_active_per_user(mut self, max: u64) -> Self {
        self.limits.max_active = max;
        self
    }

    /// Keys a user may create in any 24 hours, revoked ones included.
    pub fn with_creations_per_day(mut self, max: u64) -> Self {
        self.limits.max_created_per_day = max;
        self
    }

    /// Mints a key under `policy`. The secret is returned once, here; only its digest is
    /// stored.
    pub async fn create(
        &self,
        user: UserId,
        name: Option<String>,
        policy: KeyPolicy,
    ) -> Result<(ApiKey, ApiKeySecret), CreateApiKeyError> {
        for _ in 0..MAX_DRAWS {
            let secret = ApiKeySecret::generate();
            let new = NewApiKey {
                id: ApiKeyId::random(),
                user_id: user,
                prefix: secret.prefix().clone(),
                digest: self.hasher.digest(&secret),
                name: name.clone(),
                created_at: Utc::now(),
                policy: policy.clone(),
            };
            match self.keys.insert_api_key(new, self.limits).await {
                Ok(key) => return Ok((key, secret)),
                Err(InsertApiKeyError::Collision) => continue,
                Err(InsertApiKeyError::LimitReached) => {
                    return Err(CreateApiKeyError::TooManyKeys(self.limits.max_active));
                }
                Err(InsertApiKeyError::DailyLimitReached { retry_at }) => {
                    return Err(CreateApiKeyError::TooManyToday {
                        limit: self.limits.max_created_per_day,
                        retry_after: (retry_at - Utc::now())
                            .to_std()
                            .unwrap_or(std::time::Duration::ZERO),
                    });
                }
                Err(InsertApiKeyError::Unknown(e)) => return Err(e.into()),
            }
        }
        Err(anyhow::anyhow!("could not draw a free API key prefix").into())
    }

    /// The user's keys. `last_used_at` includes uses on this replica not yet written.
    /// One page of the user's keys, newest first, revoked ones included.
    pub async fn list(&self, user: UserId, page: Page) -> anyhow::Result<Vec<ApiKey>> {
        let mut keys = self.keys.list_api_keys(user, page).await?;
        let pending = self
            .pending_uses
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        for key in &mut keys {
            if let Some(at) = pending.get(&key.id) {
                key.last_used_at = key.last_used_at.max(Some(*at));
            }
        }
        Ok(keys)
    }

    /// Deactivates one of the user's keys. Someone else's key id is "not found", exactly like
    /// an id that does not exist.
    pub async fn revoke(&self, user: UserId, id: ApiKeyId) -> Result<ApiKey, RevokeApiKeyError> {
        let revoked = self
            .keys
            .deactivate_api_key(user, id)
            .await?
            .ok_or(RevokeApiKeyError::NotFound)?;
        // This replica refuses the key from the next request on; the others learn it from the
        // revocation log written with the deactivation.
        if let Some(cache) = &self.cache {
            cache.evict(&revoked.prefix);
        }
        Ok(revoked)
    }

    /// Makes one of the user's usable keys (active, not expired) their default, and no other.
    /// Someone else's key id, a revoked or an expired key is "not found".
    pub async fn set_default(
        &self,
        user: UserId,
        id: ApiKeyId,
    ) -> Result<ApiKey, SetDefaultApiKeyError> {
        self.keys
            .set_default_api_key(user, id, Utc::now())
            .await?
            .ok_or(SetDefaultApiKeyError::NotFound)
    }

    /// The user's default key: the one marked default while it is usable, else their oldest
    /// usable key; `None` when they have no usable key.
    pub async fn default_key(&self, user: UserId) -> anyhow::Result<Option<ApiKey>> {
        let now = Utc::now();
        match self.keys.marked_default_api_key(user, now).await? {
            Some(key) => Ok(Some(key)),
            None => self.keys.first_active_api_key(user, now).await,
        }
    }

    /// The user's oldest usable key (active, not expired).
    pub async fn first_key(&self, user: UserId) -> anyhow::Result<Option<ApiKey>> {
        self.keys.first_active_api_key(user, Utc::now()).await
    }

    /// Changes the name and policy of one of the user's keys. Someone else's key id, and a
    /// revoked key, are "not found", as for [`Self::revoke`]. The change holds from the next request on, on every
    /// replica (the key is evicted from this replica's cache, and logged for the others').
    pub async fn update(
        &self,
        user: UserId,
        id: ApiKeyId,
        change: ApiKeyChange,
    ) -> Result<ApiKey, UpdateApiKeyError> {
        let mut updated = self
            .keys
            .update_api_key(user, id, change)
            .await?
            .ok_or(UpdateApiKeyError::NotFound)?;
        if let Some(cache) = &self.cache {
            cache.evict(&updated.prefix);
        }
        if let Some(at) = self.pending_use(updated.id) {
            updated.last_used_at = updated.last_used_at.max(Some(at));
        }
        Ok(updated)
    }

    fn pending_use(&self, id: ApiKeyId) -> Option<DateTime<Utc>> {
        self.pending_uses
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .get(&id)
            .copied()
    }

    /// Operators: revokes the key with this prefix, whoever holds it (as its holder would,
    /// revocation log included).
    pub async fn revoke_by_prefix(&self, prefix: &KeyPrefix) -> Result<ApiKey, RevokeApiKeyError> {
        let stored = self
            .keys
            .find_api_key_by_prefix(prefix)
            .await?
            .ok_or(RevokeApiKeyError::NotFound)?;
        self.revoke(stored.key.user_id, stored.key.id).await
    }

    /// Checks a presented key: its prefix finds the row, then the digest of the *whole* key is
    /// compared in constant time. Revoked and expired keys, and keys of inactive users, are
    /// refused. A cached key's expiry is checked on every request like the rest.
    ///
    /// A key its cached row accepts is let through at once. Every other outcome (not cached,
    /// unknown prefix, wrong secret, revoked key, inactive owner) does the same work: one HMAC
    /// against the cache's row (or against nothing), one database lookup, one HMAC against the
    /// row found (or against nothing). So a refusal takes as long whether its prefix exists or
    /// not, and timing does not tell a prober which prefixes are real keys.
    pub async fn authenticate(&self, presented: &str) -> Result<ApiKeyPrincipal, ApiKeyAuthError> {
        let secret = ApiKeySecret::parse(presented).map_err(|_| {
            if presented.starts_with("sk-") {
                ApiKeyAuthError::Invalid
            } else {
                ApiKeyAuthError::Malformed
            }
        })?;
        let now = Utc::now();
        let usable = |stored: &StoredApiKey| {
            stored.key.is_active && stored.owner_active && !stored.key.policy.is_expired_at(now)
        };
        let cached = self.cache.as_ref().and_then(|c| c.get(secret.prefix()));
        let verified = self
            .hasher
            .verify(&secret, cached.as_ref().map(|s| &s.digest));
        let stored = match cached {
            Some(stored) if verified && usable(&stored) => stored,
            _ => {
                let found = self.lookup(secret.prefix()).await?;
                let verified = self
                    .hasher
                    .verify(&secret, found.as_ref().map(|s| &s.digest));
                match found {
                    Some(stored) if verified && usable(&stored) => stored,
                    _ => return Err(ApiKeyAuthError::Invalid),
                }
            }
        };
        let stale = stored
            .key
            .last_used_at
            .is_none_or(|at| now - at >= LAST_USED_GRANULARITY);
        let limit_multiplier = stored.owner_limit_multiplier;
        let mut key = stored.key;
        if stale {
            self.pending_uses
                .lock()
                .unwrap_or_else(|poisoned| poisoned.into_inner())
                .insert(key.id, now);
            if let Some(cache) = &self.cache {
                cache.note_use(&key.prefix, now);
            }
            key.last_used_at = Some(now);
        }
        Ok(ApiKeyPrincipal {
            key,
            limit_multiplier,
        })
    }

    /// The key's row from the database, cached when it exists.
    async fn lookup(&self, prefix: &KeyPrefix) -> anyhow::Result<Option<StoredApiKey>> {
        let Some(cache) = &self.cache else {
            return self.keys.find_api_key_by_prefix(prefix).await;
        };
        let generation = cache.generation();
        let found = self.keys.find_api_key_by_prefix(prefix).await?;
        if let Some(stored) = &found {
            cache.insert(generation, stored.clone());
        }
        Ok(found)
    }

    /// Writes the `last_used_at` values gathered since the last call, in one batch. Run it
    /// periodically and at shutdown. On failure the values are kept for the next call.
    ///
    /// # Errors
    /// When the database write fails.
    pub async fn flush_last_used(&self) -> anyhow::Result<usize> {
        let batch: Vec<_> = std::mem::take(
            &mut *self
                .pending_uses
                .lock()
                .unwrap_or_else(|poisoned| poisoned.into_inner()),
        )
        .into_iter()
        .collect();
        if batch.is_empty() {
            return Ok(0);
        }
        let count = batch.len();
        if let Err(error) = self.keys.touch_api_keys(batch.clone()).await {
            let mut pending = self
                .pending_uses
                .lock()
                .unwrap_or_else(|poisoned| poisoned.into_inner());
            for (id, at) in batch {
                // A newer use recorded meanwhile wins.
                pending.entry(id).or_insert(at);
            }
            return Err(error);
        }
        Ok(count)
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Mutex;
    use std::sync::atomic::{AtomicUsize, Ordering};

    use async_trait::async_trait;

    use super::*;

    /// Holds one key and counts how often the store is asked for a key.
    #[derive(Default)]
    struct OneKey {
        stored: Mutex<Option<StoredApiKey>>,
        lookups: AtomicUsize,
        touches: AtomicUsize,
    }

    #[async_trait]
    impl ApiKeyRepository for OneKey {
        async fn insert_api_key(
            &self,
            key: NewApiKey,
            _: ApiKeyLimits,
        ) -> Result<ApiKey, InsertApiKeyError> {
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
            *self.stored.lock().unwrap() = Some(StoredApiKey {
                key: api_key.clone(),
                digest: key.digest,
                owner_active: true,
                owner_limit_multiplier: LimitMultiplier::ONE,
            });
            Ok(api_key)
        }
        async fn update_api_key(
            &self,
            _: UserId,
            _: ApiKeyId,
            change: ApiKeyChange,
        ) -> anyhow::Result<Option<ApiKey>> {
            let mut stored = self.stored.lock().unwrap();
            let Some(stored) = stored.as_mut() else {
                return Ok(None);
            };
            if let Change::Set(at) = change.expires_at {
                stored.key.policy.expires_at = at;
            }
            Ok(Some(stored.key.clone()))
        }
        async fn list_api_keys(&self, _: UserId, _: Page) -> anyhow::Result<Vec<ApiKey>> {
            Ok(vec![])
        }
        async fn set_default_api_key(
            &self,
            _: UserId,
            _: ApiKeyId,
            _: DateTime<Utc>,
        ) -> anyhow::Result<Option<ApiKey>> {
            Ok(None)
        }
        async fn marked_default_api_key(
            &self,
            _: UserId,
            _: DateTime<Utc>,
        ) -> anyhow::Result<Option<ApiKey>> {
            Ok(None)
        }
        async fn first_active_api_key(
            &self,
            _: UserId,
            _: DateTime<Utc>,
        ) -> anyhow::Result<Option<ApiKey>> {
            Ok(None)
        }
        async fn deactivate_api_key(
            &self,
            _: UserId,
            _: ApiKeyId,
        ) -> anyhow::Result<Option<ApiKey>> {
            Ok(None)
        }
        async fn find_api_key_by_prefix(
            &self,
            prefix: &KeyPrefix,
        ) -> anyhow::Result<Option<StoredApiKey>> {
            self.lookups.fetch_add(1, Ordering::SeqCst);
            Ok(self
                .stored
                .lock()
                .unwrap()
                .clone()
                .filter(|s| &s.key.prefix == prefix))
        }
        async fn touch_api_keys(&self, uses: Vec<(ApiKeyId, DateTime<Utc>)>) -> anyhow::Result<()> {
            self.touches.fetch_add(uses.len(), Ordering::SeqCst);
            Ok(())
        }
    }

    #[tokio::test]
    async fn a_mistyped_key_is_refused_without_a_lookup_and_an_impostor_after_one() {
        let repo = Arc::new(OneKey::default());
        let service = ApiKeyService::new(repo.clone(), ApiKeyHasher::new(&[3u8; 32]).unwrap());
        let (_, key) = service
            .create(UserId(1), None, KeyPolicy::default())
            .await
            .unwrap();
        assert!(service.authenticate(key.expose()).await.is_ok());
        assert_eq!(repo.lookups.load(Ordering::SeqCst), 1);

        let mut typo = key.expose().to_owned();
        let c = typo.remove(20);
        typo.insert(20, if c == 'x' { 'y' } else { 'x' });
        assert!(matches!(
            service.authenticate(&typo).await,
            Err(ApiKeyAuthError::Invalid)
        ));
        assert_eq!(
            repo.lookups.load(Ordering::SeqCst),
            1,
            "no lookup for a bad checksum"
        );

        // Same prefix, valid checksum, other secret: found by prefix, refused by the digest.
        let impostor = ApiKeySecret::with_prefix(key.prefix().clone());
        assert!(matches!(
            service.authenticate(impostor.expose()).await,
            Err(ApiKeyAuthError::Invalid)
        ));
        assert_eq!(repo.lookups.load(Ordering::SeqCst), 2);
    }

    #[tokio::test]
    async fn an_unknown_prefix_and_a_wrong_secret_do_the_same_work() {
        let repo = Arc::new(OneKey::default());
        let hasher = ApiKeyHasher::new(&[3u8; 32]).unwrap();
        let verifications = hasher.verifications.clone();
        let cache = ApiKeyCache::new(crate::services::ApiKeyCacheOptions {
            capacity: 16,
            max_age: std::time::Duration::from_secs(60),
        });
        cache.mark_fresh();
        let service = ApiKeyService::new(repo.clone(), hasher).with_cache(cache);
        let (_, key) = service
            .create(UserId(1), None, KeyPolicy::default())
            .await
            .unwrap();
        // The right key: looked up once, then accepted from the cache with one HMAC.
        assert!(service.authenticate(key.expose()).await.is_ok());
        let work = || {
            (
                repo.lookups.load(Ordering::SeqCst),
                verifications.load(Ordering::SeqCst),
            )
        };
        let before = work();
        assert!(service.authenticate(key.expose()).await.is_ok());
        assert_eq!(
            work(),
            (before.0, before.1 + 1),
            "cached: no lookup, one HMAC"
        );

        // Each refusal: one HMAC against the cache, one lookup, one HMAC against the row, be
        // the prefix known (and its row cached) or not.
        let cost = async |presented: &ApiKeySecret| {
            let before = work();
            assert!(matches!(
                service.authenticate(presented.expose()).await,
                Err(ApiKeyAuthError::Invalid)
            ));
            let after = work();
            (after.0 - before.0, after.1 - before.1)
        };
        let wrong_secret = ApiKeySecret::with_prefix(key.prefix().clone());
        let unknown_prefix = ApiKeySecret::generate();
        assert_eq!(cost(&wrong_secret).await, (1, 2));
        assert_eq!(cost(&unknown_prefix).await, (1, 2));
    }

    #[tokio::test]
    async fn an_operator_revokes_a_key_by_its_prefix_as_its_holder_would() {
        let store = Arc::new(crate::testing::MemoryStore::default());
        let user = store.add_user("ada@example.com", "fake$x");
        let service = ApiKeyService::new(store.clone(), ApiKeyHasher::new(&[3u8; 32]).unwrap());
        let (created, _) = service
            .create(user.id, None, KeyPolicy::default())
            .await
            .unwrap();
        let revoked = service.revoke_by_prefix(&created.prefix).await.unwrap();
        assert!(!revoked.is_active);
        assert_eq!(
            *store.revocations.lock().unwrap(),
            std::slice::from_ref(&created.prefix)
        );
        let unknown = KeyPrefix::from_trusted("sk-zzzzzz".into());
        assert!(matches!(
            service.revoke_by_prefix(&unknown).await,
            Err(RevokeApiKeyError::NotFound)
        ));
    }

    #[tokio::test]
    async fn a_cached_key_is_refused_once_it_expires_and_a_change_evicts_it() {
        let repo = Arc::new(OneKey::default());
        let cache = ApiKeyCache::new(crate::services::ApiKeyCacheOptions {
            capacity: 16,
            max_age: std::time::Duration::from_secs(60),
        });
        cache.mark_fresh();
        let service = ApiKeyService::new(repo.clone(), ApiKeyHasher::new(&[3u8; 32]).unwrap())
            .with_cache(cache.clone());
        let (created, key) = service
            .create(UserId(1), None, KeyPolicy::default())
            .await
            .unwrap();
        assert!(service.authenticate(key.expose()).await.is_ok());

        // The row the cache holds has passed its expiry (as a cached row does while it ages).
        let mut expired = repo.stored.lock().unwrap().clone().unwrap();
        expired.key.policy.expires_at = Some(Utc::now() - Duration::seconds(1));
        repo.stored.lock().unwrap().replace(expired.clone());
        cache.insert(cache.generation(), expired);
        assert!(matches!(
            service.authenticate(key.expose()).await,
            Err(ApiKeyAuthError::Invalid)
        ));

        // Moving the expiry into the future is seen at once, though the row was cached.
        let change = ApiKeyChange {
            expires_at: Change::Set(Some(Utc::now() + Duration::hours(1))),
            ..ApiKeyChange::default()
        };
        service.update(UserId(1), created.id, change).await.unwrap();
        assert!(service.authenticate(key.expose()).await.is_ok());
    }
}
