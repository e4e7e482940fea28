//! Users in memory for a few seconds, so an access token is checked without a database round
//! trip on every request. What keeps it safe:
//! - a change on this replica (sign-out, password change, disabling, deletion) evicts the user
//!   at once;
//! - a change on another replica is seen here once the entry is older than its maximum age
//!   (`MORPHEUS_USER_CACHE_SECONDS`), the bound the README promises;
//! - a lookup that raced with an eviction is not cached (see [`UserCache::insert`]);
//! - a token newer than the cached user (issued by another replica after a sign-out) makes the
//!   caller read the user again instead of refusing it (see `AccountService::authenticate`).

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use crate::model::*;

/// Users kept at most; beyond, the least used are dropped (and read again when needed).
const CAPACITY: usize = 10_000;

#[derive(Clone)]
struct Cached {
    user: User,
    fetched: Instant,
}

pub struct UserCache {
    entries: quick_cache::sync::Cache<UserId, Cached>,
    /// `Duration::ZERO`: nothing is cached.
    max_age: Duration,
    /// Bumped by every eviction: a lookup that started before one may have read what was just
    /// changed.
    generation: AtomicU64,
}

impl UserCache {
    pub fn new(max_age: Duration) -> Self {
        Self {
            entries: quick_cache::sync::Cache::new(CAPACITY),
            max_age,
            generation: AtomicU64::new(0),
        }
    }

    pub(crate) fn get(&self, id: UserId) -> Option<User> {
        let cached = self.entries.get(&id)?;
        if cached.fetched.elapsed() >= self.max_age {
            self.entries.remove(&id);
            return None;
        }
        Some(cached.user)
    }

    /// The generation to pass to [`Self::insert`], read before the database lookup.
    pub(crate) fn generation(&self) -> u64 {
        self.generation.load(Ordering::Acquire)
    }

    /// Caches what a lookup found, unless an eviction happened since `generation` was read.
    pub(crate) fn insert(&self, generation: u64, user: User) {
        if self.max_age.is_zero() || self.generation() != generation {
            return;
        }
        let id = user.id;
        self.entries.insert(
            id,
            Cached {
                user,
                fetched: Instant::now(),
            },
        );
        // An eviction may have slipped in between the check and the insert.
        if self.generation() != generation {
            self.entries.remove(&id);
        }
    }

    pub(crate) fn evict(&self, id: UserId) {
        self.generation.fetch_add(1, Ordering::AcqRel);
        self.entries.remove(&id);
    }
}

#[cfg(test)]
mod tests {
    use chrono::Utc;

    use super::*;

    fn user(id: i64) -> User {
        User {
            id: UserId(id),
            email: Email::from_trusted(format!("u{id}@example.com")),
            name: None,
            password_hash: PasswordHash("$argon2id$x".into()),
            is_active: true,
            token_generation: 0,
            limit_multiplier: LimitMultiplier::ONE,
            created_at: Utc::now(),
            updated_at: Utc::now(),
        }
    }

    #[test]
    fn entries_expire_and_evictions_win_over_lookups_in_flight() {
        let cache = UserCache::new(Duration::from_millis(50));
        cache.insert(cache.generation(), user(1));
        assert!(cache.get(UserId(1)).is_some());
        std::thread::sleep(Duration::from_millis(60));
        assert!(cache.get(UserId(1)).is_none());

        let before = cache.generation();
        cache.evict(UserId(2));
        cache.insert(before, user(2));
        assert!(cache.get(UserId(2)).is_none(), "a stale read was cached");
    }

    #[test]
    fn a_zero_age_caches_nothing() {
        let cache = UserCache::new(Duration::ZERO);
        cache.insert(cache.generation(), user(1));
        assert!(cache.get(UserId(1)).is_none());
    }
}
