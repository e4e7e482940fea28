//! API keys in memory, so a request authenticated with a known key needs no database round
//! trip. What makes a cached key safe to use:
//! - a revocation on this replica evicts it at once;
//! - revocations on other replicas arrive through the storage's revocation log, which
//!   [`RevocationWatcher`] reads several times a second;
//! - if that log cannot be read for [`FEED_STALE_AFTER`], the cache is bypassed (a replica cut
//!   off from the database cannot keep honouring revoked keys);
//! - an entry is dropped after [`ApiKeyCacheOptions::max_age`] whatever happens;
//! - a lookup that raced with an eviction is not cached (see [`ApiKeyCache::insert`]).
//!
//! The cache holds stored digests, never secrets; each request's key is still verified on its
//! whole secret, in constant time.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use crate::model::*;
use crate::ports::RevocationLog;

/// Without a successful read of the revocation log for this long, cached keys are not used.
pub const FEED_STALE_AFTER: Duration = Duration::from_secs(2);

#[derive(Debug, Clone, Copy)]
pub struct ApiKeyCacheOptions {
    /// Most keys kept.
    pub capacity: usize,
    /// An entry is re-read from the database after this long in any case.
    pub max_age: Duration,
}

#[derive(Clone)]
struct Cached {
    stored: StoredApiKey,
    fetched: Instant,
}

pub struct ApiKeyCache {
    entries: quick_cache::sync::Cache<KeyPrefix, Cached>,
    options: ApiKeyCacheOptions,
    /// Bumped by every eviction: a lookup that started before one may have read what was just
    /// revoked.
    generation: AtomicU64,
    /// When the revocation log was last read successfully, in ms since `epoch`.
    fresh_at_ms: AtomicU64,
    epoch: Instant,
}

impl ApiKeyCache {
    pub fn new(options: ApiKeyCacheOptions) -> Arc<Self> {
        Arc::new(Self {
            entries: quick_cache::sync::Cache::new(options.capacity.max(1)),
            options,
            generation: AtomicU64::new(0),
            // Not fresh until the watcher has read the log once.
            fresh_at_ms: AtomicU64::new(u64::MAX),
            epoch: Instant::now(),
        })
    }

    fn now_ms(&self) -> u64 {
        u64::try_from(self.epoch.elapsed().as_millis()).unwrap_or(u64::MAX)
    }

    /// Whether cached keys may be used: the revocation log was read recently.
    fn trusted(&self) -> bool {
        let at = self.fresh_at_ms.load(Ordering::Acquire);
        at != u64::MAX && self.now_ms().saturating_sub(at) < FEED_STALE_AFTER.as_millis() as u64
    }

    pub(crate) fn mark_fresh(&self) {
        self.fresh_at_ms.store(self.now_ms(), Ordering::Release);
    }

    pub(crate) fn get(&self, prefix: &KeyPrefix) -> Option<StoredApiKey> {
        if !self.trusted() {
            return None;
        }
        let cached = self.entries.get(prefix)?;
        if cached.fetched.elapsed() >= self.options.max_age {
            self.entries.remove(prefix);
            return None;
        }
        Some(cached.stored)
    }

    /// The generation to pass to [`Self::insert`], read before the database lookup.
    pub(crate) fn generation(&self) -> u64 {
        self.generation.load(Ordering::Acquire)
    }

    /// Caches what a lookup found, unless an eviction happened since `generation` was read:
    /// the row may predate a revocation that has just been processed.
    pub(crate) fn insert(&self, generation: u64, stored: StoredApiKey) {
        if self.generation() != generation {
            return;
        }
        let prefix = stored.key.prefix.clone();
        self.entries.insert(
            prefix.clone(),
            Cached {
                stored,
                fetched: Instant::now(),
            },
        );
        // An eviction may have slipped in between the check and the insert.
        if self.generation() != generation {
            self.entries.remove(&prefix);
        }
    }

    /// Updates a cached key's `last_used_at` (the row is written later, in a batch).
    pub(crate) fn note_use(&self, prefix: &KeyPrefix, at: chrono::DateTime<chrono::Utc>) {
        if let Some(mut cached) = self.entries.peek(prefix) {
            cached.stored.key.last_used_at = Some(at);
            let _ = self.entries.replace(prefix.clone(), cached, true);
        }
    }

    pub fn evict(&self, prefix: &KeyPrefix) {
        self.generation.fetch_add(1, Ordering::AcqRel);
        self.entries.remove(prefix);
    }

    /// Every cached key of the user (account deleted).
    pub fn evict_user(&self, user: UserId) {
        self.generation.fetch_add(1, Ordering::AcqRel);
        self.entries
            .retain(|_, cached| cached.stored.key.user_id != user);
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }
}

/// Reads the revocation log and evicts what it names. Run [`Self::poll`] every few hundred
/// milliseconds.
pub struct RevocationWatcher {
    log: Arc<dyn RevocationLog>,
    cache: Arc<ApiKeyCache>,
    /// The highest sequence number processed.
    cursor: Option<i64>,
    /// Sequence numbers processed within the overlap window.
    seen: BTreeSet<i64>,
}

/// Each read goes this many sequence numbers back: with PostgreSQL, a revocation can commit
/// after one with a higher number, and must not be skipped.
const OVERLAP: i64 = 100;
const BATCH: i64 = 1_000;

impl RevocationWatcher {
    pub fn new(log: Arc<dyn RevocationLog>, cache: Arc<ApiKeyCache>) -> Self {
        Self {
            log,
            cache,
            cursor: None,
            seen: BTreeSet::new(),
        }
    }

    /// Drops log entries older than a day: a replica that starts reads from the end of the
    /// log, and a running one is never that far behind.
    ///
    /// # Errors
    /// When the database fails.
    pub async fn purge_old(&self) -> anyhow::Result<u64> {
        self.log
            .purge_revocations(chrono::Utc::now() - chrono::Duration::days(1))
            .await
    }

    /// One read of the log. The first only finds where the log ends (the cache is empty then).
    ///
    /// # Errors
    /// When the log cannot be read; the cache then stops being trusted after a while.
    pub async fn poll(&mut self) -> anyhow::Result<usize> {
        let Some(cursor) = self.cursor else {
            // The cache is empty now, so what the log holds needs no eviction; it is only
            // marked seen. A revocation committing later with a lower number is still caught.
            let latest = self.log.latest_revocation().await?;
            let recent = self.log.revocations_after(latest - OVERLAP, BATCH).await?;
            self.seen = recent.iter().map(|r| r.seq).collect();
            self.cursor = Some(latest);
            self.cache.mark_fresh();
            return Ok(0);
        };
        let mut evicted = 0;
        let mut from = cursor - OVERLAP;
        loop {
            let batch = self.log.revocations_after(from, BATCH).await?;
            let full = batch.len() as i64 == BATCH;
            for revocation in &batch {
                from = from.max(revocation.seq);
                if revocation.seq > cursor - OVERLAP && self.seen.insert(revocation.seq) {
                    self.cache.evict(&revocation.prefix);
                    evicted += 1;
                }
            }
            if !full {
                break;
            }
        }
        let cursor = cursor.max(from);
        self.cursor = Some(cursor);
        let keep_from = cursor - OVERLAP;
        self.seen = self.seen.split_off(&keep_from);
        self.cache.mark_fresh();
        Ok(evicted)
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Mutex;

    use async_trait::async_trait;
    use chrono::{DateTime, Utc};

    use super::*;
    use crate::ports::Revocation;

    const OPTIONS: ApiKeyCacheOptions = ApiKeyCacheOptions {
        capacity: 100,
        max_age: Duration::from_secs(60),
    };

    #[derive(Default)]
    struct Log(Mutex<Vec<Revocation>>);

    impl Log {
        fn push(&self, seq: i64, prefix: &KeyPrefix) {
            self.0.lock().unwrap().push(Revocation {
                seq,
                prefix: prefix.clone(),
            });
        }
    }

    #[async_trait]
    impl RevocationLog for Log {
        async fn revocations_after(
            &self,
            after: i64,
            limit: i64,
        ) -> anyhow::Result<Vec<Revocation>> {
            let mut found: Vec<_> = self
                .0
                .lock()
                .unwrap()
                .iter()
                .filter(|r| r.seq > after)
                .cloned()
                .collect();
            found.sort_by_key(|r| r.seq);
            found.truncate(limit as usize);
            Ok(found)
        }
        async fn latest_revocation(&self) -> anyhow::Result<i64> {
            Ok(self
                .0
                .lock()
                .unwrap()
                .iter()
                .map(|r| r.seq)
                .max()
                .unwrap_or(0))
        }
        async fn purge_revocations(&self, _: DateTime<Utc>) -> anyhow::Result<u64> {
            Ok(0)
        }
    }

    fn stored(prefix: &str, user: i64) -> StoredApiKey {
        StoredApiKey {
            key: ApiKey {
                id: ApiKeyId(user * 10),
                user_id: UserId(user),
                prefix: KeyPrefix::from_trusted(prefix.to_owned()),
                name: None,
                is_active: true,
                created_at: Utc::now(),
                last_used_at: None,
                policy: KeyPolicy::default(),
                is_default: false,
            },
            digest: ApiKeyDigest(vec![1, 2, 3]),
            owner_active: true,
            owner_limit_multiplier: LimitMultiplier::ONE,
        }
    }

    #[tokio::test]
    async fn nothing_is_served_before_the_log_has_been_read() {
        let cache = ApiKeyCache::new(OPTIONS);
        let key = stored("sk-aaaaaa", 1);
        let prefix = key.key.prefix.clone();
        cache.insert(cache.generation(), key);
        assert!(
            cache.get(&prefix).is_none(),
            "untrusted until the first read"
        );
        let mut watcher = RevocationWatcher::new(Arc::new(Log::default()), cache.clone());
        watcher.poll().await.unwrap();
        assert!(cache.get(&prefix).is_some());
    }

    #[tokio::test]
    async fn a_logged_revocation_evicts_the_key_and_only_once() {
        let log = Arc::new(Log::default());
        let cache = ApiKeyCache::new(OPTIONS);
        let mut watcher = RevocationWatcher::new(log.clone(), cache.clone());
        let earlier = KeyPrefix::from_trusted("sk-zzzzzz".to_owned());
        log.push(7, &earlier);
        watcher.poll().await.unwrap(); // finds the end of the log: 7

        let (a, b) = (stored("sk-aaaaaa", 1), stored("sk-bbbbbb", 2));
        let (pa, pb) = (a.key.prefix.clone(), b.key.prefix.clone());
        cache.insert(cache.generation(), a);
        cache.insert(cache.generation(), b);
        // Another replica revokes `a`; a later commit with a lower number (PostgreSQL) too.
        log.push(9, &pa);
        assert_eq!(watcher.poll().await.unwrap(), 1);
        assert!(cache.get(&pa).is_none());
        assert!(cache.get(&pb).is_some());
        log.push(8, &pb);
        assert_eq!(
            watcher.poll().await.unwrap(),
            1,
            "a late lower number is not skipped"
        );
        assert!(cache.get(&pb).is_none());
        // Already processed entries evict nothing again.
        cache.insert(cache.generation(), stored("sk-bbbbbb", 2));
        assert_eq!(watcher.poll().await.unwrap(), 0);
        assert!(cache.get(&pb).is_some());
    }

    #[tokio::test]
    async fn a_lookup_that_raced_with_an_eviction_is_not_cached() {
        let cache = ApiKeyCache::new(OPTIONS);
        RevocationWatcher::new(Arc::new(Log::default()), cache.clone())
            .poll()
            .await
            .unwrap();
        let key = stored("sk-aaaaaa", 1);
        let prefix = key.key.prefix.clone();
        let before_lookup = cache.generation();
        cache.evict(&prefix); // revoked while the row was being read
        cache.insert(before_lookup, key);
        assert!(cache.get(&prefix).is_none());
    }

    #[tokio::test]
    async fn old_entries_and_deleted_users_are_dropped() {
        let cache = ApiKeyCache::new(ApiKeyCacheOptions {
            capacity: 10,
            max_age: Duration::from_millis(50),
        });
        RevocationWatcher::new(Arc::new(Log::default()), cache.clone())
            .poll()
            .await
            .unwrap();
        let (a, b) = (stored("sk-aaaaaa", 1), stored("sk-bbbbbb", 2));
        let (pa, pb) = (a.key.prefix.clone(), b.key.prefix.clone());
        cache.insert(cache.generation(), a);
        cache.insert(cache.generation(), b);
        cache.evict_user(UserId(1));
        assert!(cache.get(&pa).is_none());
        assert!(cache.get(&pb).is_some());
        tokio::time::sleep(Duration::from_millis(60)).await;
        assert!(cache.get(&pb).is_none(), "past max_age");
    }
}
