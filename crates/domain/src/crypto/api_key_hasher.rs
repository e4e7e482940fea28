use ring::hmac;

use crate::model::{ApiKeyDigest, ApiKeySecret};

/// HMAC-SHA256 under a server-side pepper. A database dump alone cannot be used to test key
/// guesses offline: the pepper lives in configuration, not in the database.
#[derive(Clone)]
pub struct ApiKeyHasher {
    key: hmac::Key,
    /// Verifications made (unit tests check that every refusal path makes one).
    #[cfg(test)]
    pub(crate) verifications: std::sync::Arc<std::sync::atomic::AtomicUsize>,
}

impl std::fmt::Debug for ApiKeyHasher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ApiKeyHasher(..)")
    }
}

impl ApiKeyHasher {
    pub const MIN_PEPPER_LEN: usize = 32;

    /// # Errors
    /// When the pepper is shorter than 32 bytes.
    pub fn new(pepper: &[u8]) -> anyhow::Result<Self> {
        anyhow::ensure!(
            pepper.len() >= Self::MIN_PEPPER_LEN,
            "the API key pepper must be at least {} bytes",
            Self::MIN_PEPPER_LEN
        );
        Ok(Self {
            key: hmac::Key::new(hmac::HMAC_SHA256, pepper),
            #[cfg(test)]
            verifications: Default::default(),
        })
    }

    /// The digest of the whole key, prefix included.
    pub fn digest(&self, key: &ApiKeySecret) -> ApiKeyDigest {
        ApiKeyDigest(
            hmac::sign(&self.key, key.expose().as_bytes())
                .as_ref()
                .to_vec(),
        )
    }

    /// Constant-time comparison of a presented key with a stored digest. Without one (an
    /// unknown prefix) the key's HMAC is still computed, against a digest nothing matches, so
    /// an unknown prefix costs what a wrong secret costs.
    pub fn verify(&self, key: &ApiKeySecret, stored: Option<&ApiKeyDigest>) -> bool {
        #[cfg(test)]
        self.verifications
            .fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        const NOTHING: [u8; 32] = [0; 32];
        let digest = stored.map_or(&NOTHING[..], |d| &d.0);
        hmac::verify(&self.key, key.expose().as_bytes(), digest).is_ok() && stored.is_some()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hasher() -> ApiKeyHasher {
        ApiKeyHasher::new(&[7u8; 32]).unwrap()
    }

    #[test]
    fn a_short_pepper_is_refused() {
        assert!(ApiKeyHasher::new(&[0u8; 31]).is_err());
    }

    #[test]
    fn only_the_whole_key_verifies() {
        let h = hasher();
        let key = ApiKeySecret::generate();
        let digest = h.digest(&key);
        assert!(h.verify(&key, Some(&digest)));

        // Same prefix, different secret: the original gateway accepted this.
        let impostor = ApiKeySecret::with_prefix(key.prefix().clone());
        assert!(!h.verify(&impostor, Some(&digest)));
        assert!(!h.verify(&key, None));

        // A key differing in one character cannot even be presented: its checksum fails.
        let mut s = key.expose().to_owned();
        let last = s.pop().unwrap();
        s.push(if last == 'a' { 'b' } else { 'a' });
        assert!(ApiKeySecret::parse(&s).is_err());
    }

    #[test]
    fn the_pepper_matters() {
        let key = ApiKeySecret::generate();
        let other = ApiKeyHasher::new(&[8u8; 32]).unwrap();
        assert!(!other.verify(&key, Some(&hasher().digest(&key))));
    }
}
