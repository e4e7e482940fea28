use chrono::{DateTime, Utc};
use secrecy::{ExposeSecret, SecretString};

use super::UserId;
use crate::validation::Invalid;

/// An Ethereum private key, `0x` + 64 hex digits. Held in a `SecretString` so it cannot end up
/// in a log line through `Debug`.
#[derive(Debug, Clone)]
pub struct WalletPrivateKey(SecretString);

impl WalletPrivateKey {
    pub fn parse(raw: String) -> Result<Self, Invalid> {
        let valid = raw.len() == 66
            && raw.starts_with("0x")
            && raw[2..].bytes().all(|b| b.is_ascii_hexdigit());
        if !valid {
            return Err(Invalid::new(
                "value_error",
                "private_key must be 0x followed by 64 hexadecimal digits",
            ));
        }
        Ok(Self(SecretString::from(raw)))
    }

    pub fn expose(&self) -> &str {
        self.0.expose_secret()
    }
}

/// A private key sealed with AES-256-GCM: `version ‖ nonce ‖ ciphertext+tag`, bound to its owner
/// through the associated data.
#[derive(Clone, PartialEq, Eq)]
pub struct SealedWalletKey(pub Vec<u8>);

impl std::fmt::Debug for SealedWalletKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SealedWalletKey(..)")
    }
}

#[derive(Debug, Clone)]
pub struct StoredWalletKey {
    pub user_id: UserId,
    pub sealed: SealedWalletKey,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

/// What the owner may learn about their stored key: whether there is one, and when.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WalletKeyStatus {
    pub has_key: bool,
    pub created_at: Option<DateTime<Utc>>,
    pub updated_at: Option<DateTime<Utc>>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_0x_and_64_hex_digits_is_a_private_key() {
        let good = format!("0x{}", "aB".repeat(32));
        assert!(WalletPrivateKey::parse(good).is_ok());
        for bad in [
            String::new(),
            "0x".into(),
            "aB".repeat(33),
            format!("0x{}", "a".repeat(63)),
            format!("0x{}", "a".repeat(65)),
            format!("0x{}g", "a".repeat(63)),
            format!("0X{}", "a".repeat(64)),
        ] {
            assert!(WalletPrivateKey::parse(bad.clone()).is_err(), "{bad:?}");
        }
    }
}
