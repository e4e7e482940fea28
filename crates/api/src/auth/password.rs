use std::sync::Arc;
use std::time::Duration;

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
/// blocking thread and all memory; with it, excess logins wait briefly and then get a 503.
#[derive(Clone)]
pub struct Argon2Hasher {
    permits: Arc<Semaphore>,
    queue_timeout: Duration,
    /// Verified against when the account does not exist, so that case costs the same.
    dummy: Arc<String>,
}

impl Argon2Hasher {
    /// # Errors
    /// If hashing the dummy password fails (it cannot with valid parameters).
    pub fn new(concurrency: usize, queue_timeout: Duration) -> anyhow::Result<Self> {
        let dummy = hash_blocking("not a real password; used for timing parity")?;
        Ok(Self {
            permits: Arc::new(Semaphore::new(concurrency.max(1))),
            queue_timeout,
            dummy: Arc::new(dummy),
        })
    }

    async fn run<T: Send + 'static>(
        &self,
        work: impl FnOnce() -> anyhow::Result<T> + Send + 'static,
    ) -> Result<T, HashingError> {
        let permit = tokio::time::timeout(self.queue_timeout, self.permits.clone().acquire_owned())
            .await
            .map_err(|_| HashingError::Busy)?
            .map_err(|e| HashingError::Unknown(e.into()))?;
        let span = tracing::Span::current();
        tokio::task::spawn_blocking(move || {
            let _permit = permit;
            span.in_scope(work)
        })
        .await
        .map_err(|e| HashingError::Unknown(e.into()))?
        .map_err(HashingError::Unknown)
    }
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
    async fn a_saturated_hasher_answers_busy() {
        let h = Argon2Hasher::new(1, Duration::from_millis(1)).unwrap();
        let _held = h.permits.clone().acquire_owned().await.unwrap();
        assert!(matches!(
            h.hash(&pw("correct horse battery")).await,
            Err(HashingError::Busy)
        ));
    }
}
