//! One async lock per key (a user, …), made on first use and forgotten when nobody holds it.

use std::collections::HashMap;
use std::hash::Hash;
use std::sync::{Arc, Mutex, Weak};

/// The lock of one key.
pub type KeyLock = Arc<tokio::sync::Mutex<()>>;

/// The locks in use, and the size at which the unused ones are next swept out.
type Locks<K> = (HashMap<K, Weak<tokio::sync::Mutex<()>>>, usize);

pub struct KeyedLocks<K> {
    inner: Mutex<Locks<K>>,
}

impl<K> Default for KeyedLocks<K> {
    fn default() -> Self {
        Self {
            inner: Mutex::new((HashMap::new(), MIN_SWEEP)),
        }
    }
}

/// The map is swept when it reaches this size, then twice the size it was left at.
const MIN_SWEEP: usize = 64;

impl<K: Hash + Eq> KeyedLocks<K> {
    /// The key's lock: the same one for everybody who asks while somebody holds it.
    pub fn of(&self, key: K) -> KeyLock {
        let mut inner = self
            .inner
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let (locks, sweep_at) = &mut *inner;
        if locks.len() >= *sweep_at {
            locks.retain(|_, lock| lock.strong_count() > 0);
            *sweep_at = (locks.len() * 2).max(MIN_SWEEP);
        }
        if let Some(lock) = locks.get(&key).and_then(Weak::upgrade) {
            return lock;
        }
        let fresh = KeyLock::default();
        locks.insert(key, Arc::downgrade(&fresh));
        fresh
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_key_has_one_lock_while_it_is_held_and_unused_ones_are_swept() {
        let locks = KeyedLocks::<u32>::default();
        let a = locks.of(1);
        assert!(Arc::ptr_eq(&a, &locks.of(1)));
        assert!(!Arc::ptr_eq(&a, &locks.of(2)));
        drop(a);
        for key in 0..1_000 {
            drop(locks.of(key));
        }
        let size = locks.inner.lock().unwrap().0.len();
        assert!(size <= 2 * MIN_SWEEP, "unused locks pile up: {size}");
    }
}
