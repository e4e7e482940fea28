use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use argon2::password_hash::rand_core::OsRng;
use argon2::password_hash::{
    PasswordHash as Phc, PasswordHasher as _, PasswordVerifier, SaltString,
};
use argon2::{Algorithm, Argon2, Params, Version};
use async_trait::async_trait;
use morpheus_domain::ports::{HashingError, PasswordHasher, Verification};
use morpheus_domain::{Password, PasswordHash};
use tokio::sync::Semaphore;

/// OWASP's minimum for argon2id: 19 MiB, two passes, one lane.
const MEMORY_KIB: u32 = 19_456;
const ITERATIONS: u32 = 2;
const LANES: u32 = 1;

/// argon2id on the blocking pool, at most `concurrency` hashes at a time. Each hash costs tens
/// of milliseconds of CPU and 19 MiB: without the bound, a login storm would occupy every
/// blocking thread and all memory; with it, excess logins wait briefly and then get a 503 —
/// at once when the queue ahead of them is already longer than the slots can clear within
/// the queue timeout (they would get the 503 anyway, only seconds later, holding a
/// connection all along).
#[derive(Clone)]
pub struct Argon2Hasher {
    permits: Arc<Semaphore>,
    concurrency: u64,
    queue_timeout: Duration,
    /// Requests waiting for a slot.
    waiting: Arc<AtomicU64>,
    /// How long one hash takes here, smoothed (µs), to know how long a queue is.
    hash_micros: Arc<AtomicU64>,
    /// Verified against when the account does not exist, so that case costs the same.
    dummy: Arc<String>,
}

impl Argon2Hasher {
    /// # Errors
    /// If hashing the dummy password fails (it cannot with valid parameters).
    pub fn new(concurrency: usize, queue_timeout: Duration) -> anyhow::Result<Self> {
        let started = Instant::now();
        let dummy = hash_blocking("not a real password; used for timing parity")?;
        let concurrency = concurrency.max(1);
        Ok(Self {
            permits: Arc::new(Semaphore::new(concurrency)),
            concurrency: concurrency as u64,
            queue_timeout,
            waiting: Arc::new(AtomicU64::new(0)),
            hash_micros: Arc::new(AtomicU64::new(micros(started.elapsed()))),
            dummy: Arc::new(dummy),
        })
    }

    /// Whether `ahead` requests already waiting would take longer than the queue timeout.
    fn hopeless(&self, ahead: u64) -> bool {
        let clears_in = self.hash_micros.load(Ordering::Relaxed) * (ahead / self.concurrency);
        Duration::from_micros(clears_in) > self.queue_timeout
    }

    async fn run<T: Send + 'static>(
        &self,
        work: impl FnOnce() -> anyhow::Result<T> + Send + 'static,
    ) -> Result<T, HashingError> {
        let ahead = self.waiting.fetch_add(1, Ordering::AcqRel);
        let queued = Queued(&self.waiting);
        if self.hopeless(ahead) {
            return Err(HashingError::Busy);
        }
        let permit = tokio::time::timeout(self.queue_timeout, self.permits.clone().acquire_owned())
            .await
            .map_err(|_| HashingError::Busy)?
            .map_err(|e| HashingError::Unknown(e.into()))?;
        drop(queued);
        let span = tracing::Span::current();
        let hash_micros = self.hash_micros.clone();
        tokio::task::spawn_blocking(move || {
            let _permit = permit;
            let started = Instant::now();
            let done = span.in_scope(work);
            let took = micros(started.elapsed());
            // An average over about eight hashes follows the machine's load.
            let _ = hash_micros.fetch_update(Ordering::Relaxed, Ordering::Relaxed, |avg| {
                Some(avg - avg / 8 + took / 8)
            });
            done
        })
        .await
        .map_err(|e| HashingError::Unknown(e.into()))?
        .map_err(HashingError::Unknown)
    }
}

/// A place in the queue for a hashing slot, given up when dropped.
struct Queued<'a>(&'a AtomicU64);

impl Drop for Queued<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::AcqRel);
    }
}

fn micros(d: Duration) -> u64 {
    u64::try_from(d.as_micros()).unwrap_or(u64::MAX)
}

fn argon2() -> Argon2<'static> {
    let params = Params::new(MEMORY_KIB, ITERATIONS, LANES, None).expect("valid argon2 parameters");
    Argon2::new(Algorithm::Argon2id, Version::V0x13, params)
}

fn hash_blocking(password: &str) -> anyhow::Result<String> {
    let salt = SaltString::generate(&mut OsRng);
    argon2()
        .hash_password(password.as_bytes(), &salt)
        .map(|h| h.to_string())
        .map_err(|e| anyhow::anyhow!("argon2 hashing failed: {e}"))
}

/// Whether a stored hash is weaker than what we would write today.
fn is_outdated(phc: &Phc<'_>) -> bool {
    if phc.algorithm.as_str() != "argon2id" {
        return true;
    }
    match Params::try_from(phc) {
        Ok(p) => p.m_cost() < MEMORY_KIB || p.t_cost() < ITERATIONS,
        Err(_) => true,
    }
}

#[async_trait]
impl PasswordHasher for Argon2Hasher {
    async fn hash(&self, password: &Password) -> Result<PasswordHash, HashingError> {
        let password = password.clone();
        self.run(move || hash_blocking(password.expose()).map(PasswordHash))
            .await
    }

    async fn verify(
        &self,
        password: &Password,
        hash: Option<&PasswordHash>,
    ) -> Result<Verification, HashingError> {
        let password = password.clone();
        let (stored, real) = match hash {
            Some(h) => (h.0.clone(), true),
            None => (self.dummy.as_str().to_owned(), false),
        };
        self.run(move || {
            // A stored value that is not a PHC string cannot match anything.
            let Ok(phc) = Phc::new(&stored) else {
                return Ok(Verification::Mismatch);
            };
            let matches = argon2()
                .verify_password(password.expose().as_bytes(), &phc)
                .is_ok();
            Ok(if matches && real {
                Verification::Match {
                    needs_rehash: is_outdated(&phc),
                }
            } else {
                Verification::Mismatch
            })
        })
        .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pw(s: &str) -> Password {
        Password::parse(s.to_owned()).unwrap()
    }

    #[tokio::test]
    async fn hashes_are_argon2id_with_owasp_parameters_and_verify() {
        let h = Argon2Hasher::new(2, Duration::from_secs(5)).unwrap();
        let hash = h.hash(&pw("correct horse battery")).await.unwrap();
        assert!(
            hash.0.starts_with("$argon2id$v=19$m=19456,t=2,p=1$"),
            "{}",
            hash.0
        );
        assert_eq!(
            h.verify(&pw("correct horse battery"), Some(&hash))
                .await
                .unwrap(),
            Verification::Match {
                needs_rehash: false
            }
        );
        assert_eq!(
            h.verify(&pw("correct horse battery!"), Some(&hash))
                .await
                .unwrap(),
            Verification::Mismatch
        );
        assert_eq!(
            h.verify(&pw("correct horse battery"), None).await.unwrap(),
            Verification::Mismatch
        );
    }

    #[tokio::test]
    async fn long_passwords_are_not_truncated() {
        let h = Argon2Hasher::new(2, Duration::from_secs(5)).unwrap();
        let a = format!("{}a{}", "x".repeat(89), "y".repeat(10));
        let b = format!("{}b{}", "x".repeat(89), "y".repeat(10));
        let hash = h.hash(&pw(&a)).await.unwrap();
        assert_eq!(
            h.verify(&pw(&b), Some(&hash)).await.unwrap(),
            Verification::Mismatch
        );
    }

    #[tokio::test]
    async fn weaker_hashes_are_flagged_for_rehash() {
        let weak = {
            let params = Params::new(8, 1, 1, None).unwrap();
            let salt = SaltString::generate(&mut OsRng);
            Argon2::new(Algorithm::Argon2id, Version::V0x13, params)
                .hash_password(b"correct horse battery", &salt)
                .unwrap()
                .to_string()
        };
        let h = Argon2Hasher::new(1, Duration::from_secs(5)).unwrap();
        assert_eq!(
            h.verify(&pw("correct horse battery"), Some(&PasswordHash(weak)))
                .await
                .unwrap(),
            Verification::Match { needs_rehash: true }
        );
    }

    #[tokio::test]
    async fn a_queue_longer_than_the_timeout_is_refused_at_once() {
        let h = Argon2Hasher::new(1, Duration::from_millis(100)).unwrap();
        h.hash_micros.store(25_000, Ordering::Relaxed);
        assert!(!h.hopeless(0));
        assert!(!h.hopeless(4), "4 × 25 ms is within 100 ms");
        assert!(h.hopeless(5));
        let _held = h.permits.clone().acquire_owned().await.unwrap();
        h.waiting.store(10, Ordering::Relaxed);
        let started = Instant::now();
        assert!(matches!(
            h.hash(&pw("correct horse battery")).await,
            Err(HashingError::Busy)
        ));
        assert!(
            started.elapsed() < Duration::from_millis(50),
            "not after the timeout"
        );
        assert_eq!(
            h.waiting.load(Ordering::Relaxed),
            10,
            "its place is given up"
        );
    }

    #[tokio::test]
    async fn a_saturated_hasher_answers_busy() {
        let h = Argon2Hasher::new(1, Duration::from_millis(1)).unwrap();
        let _held = h.permits.clone().acquire_owned().await.unwrap();
        assert!(matches!(
            h.hash(&pw("correct horse battery")).await,
            Err(HashingError::Busy)
        ));
    }
}
