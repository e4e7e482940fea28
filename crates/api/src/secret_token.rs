//! Bearer tokens from the settings, compared without leaking their contents through timing.

/// A configured bearer token (the metrics token, the operator token), kept as an HMAC tag under
/// a per-process random key, so the check is constant-time and the token itself is not kept in
/// memory.
#[derive(Clone)]
pub struct SecretToken {
    key: ring::hmac::Key,
    tag: ring::hmac::Tag,
}

impl SecretToken {
    /// # Errors
    /// When the system's random generator fails.
    pub fn new(token: &str) -> anyhow::Result<Self> {
        let rng = ring::rand::SystemRandom::new();
        let key = ring::hmac::Key::generate(ring::hmac::HMAC_SHA256, &rng)
            .map_err(|_| anyhow::anyhow!("the system's random generator failed"))?;
        let tag = ring::hmac::sign(&key, token.as_bytes());
        Ok(Self { key, tag })
    }

    pub fn matches(&self, presented: &str) -> bool {
        ring::hmac::verify(&self.key, presented.as_bytes(), self.tag.as_ref()).is_ok()
    }
}

#[cfg(test)]
mod token_tests {
    use super::SecretToken;

    #[test]
    fn only_the_configured_token_matches() {
        let token = SecretToken::new("s3cret-metrics-token").unwrap();
        assert!(token.matches("s3cret-metrics-token"));
        assert!(!token.matches("s3cret-metrics-tokem"));
        assert!(!token.matches(""));
    }
}
