use chrono::{DateTime, Utc};
use ring::rand::{SecureRandom, SystemRandom};
use secrecy::{ExposeSecret, SecretString};

use super::{ApiKeyId, UserId};
use crate::validation::Invalid;

const BASE62: &[u8; 62] = b"0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";

/// Random base62 text; rejection sampling keeps every character equally likely.
fn random_base62(len: usize) -> String {
    let rng = SystemRandom::new();
    let mut out = String::with_capacity(len);
    let mut buf = [0u8; 64];
    while out.len() < len {
        rng.fill(&mut buf)
            .expect("the operating system's random source failed");
        for &b in &buf {
            // 248 = 4 * 62: bytes at or above it would bias the first characters.
            if b < 248 && out.len() < len {
                out.push(char::from(BASE62[usize::from(b % 62)]));
            }
        }
    }
    out
}

/// The public, unique, 9-character start of a key (`sk-` + 6 base62), shown in listings and
/// used to find the key's row. It is not a secret and proves nothing on its own.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct KeyPrefix(String);

impl KeyPrefix {
    pub const LEN: usize = 9;

    pub fn random() -> Self {
        Self(format!("sk-{}", random_base62(6)))
    }

    pub fn from_trusted(stored: String) -> Self {
        Self(stored)
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// A whole API key, `sk-XXXXXX.<secret>`: what the user holds and the gateway never stores.
///
/// The secret part is 43 base62 characters (256 bits). Keys minted by the original gateway
/// (`sk-XXXXXX.` + 64 hex) parse too, so the format stays familiar to existing clients.
#[derive(Clone)]
pub struct ApiKeySecret {
    prefix: KeyPrefix,
    whole: SecretString,
}

impl std::fmt::Debug for ApiKeySecret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "ApiKeySecret({}…)", self.prefix.as_str())
    }
}

impl ApiKeySecret {
    pub const SECRET_CHARS: usize = 43;
    /// Anything longer is not a key of ours; refusing it early bounds the work per request.
    pub const MAX_LEN: usize = 200;

    pub fn generate() -> Self {
        let prefix = KeyPrefix::random();
        Self::with_prefix(prefix)
    }

    /// A new secret under a given prefix (used when a prefix collides and is drawn again).
    pub fn with_prefix(prefix: KeyPrefix) -> Self {
        let whole = format!("{}.{}", prefix.as_str(), random_base62(Self::SECRET_CHARS));
        Self {
            prefix,
            whole: SecretString::from(whole),
        }
    }

    /// Parses what a client presented. Only the shape is checked here; whether the key is real
    /// is decided by comparing its digest with the stored one.
    pub fn parse(raw: &str) -> Result<Self, Invalid> {
        if !raw.starts_with("sk-") {
            return Err(Invalid::new(
                "value_error",
                "Invalid API key format. Must start with sk-",
            ));
        }
        let well_formed = raw.len() <= Self::MAX_LEN
            && raw.len() > KeyPrefix::LEN + 1
            && raw.as_bytes()[KeyPrefix::LEN] == b'.'
            && raw[3..KeyPrefix::LEN]
                .bytes()
                .all(|b| b.is_ascii_alphanumeric())
            && raw[KeyPrefix::LEN + 1..]
                .bytes()
                .all(|b| b.is_ascii_alphanumeric());
        if !well_formed {
            return Err(Invalid::new("value_error", "Invalid API key"));
        }
        Ok(Self {
            prefix: KeyPrefix(raw[..KeyPrefix::LEN].to_owned()),
            whole: SecretString::from(raw.to_owned()),
        })
    }

    pub fn prefix(&self) -> &KeyPrefix {
        &self.prefix
    }

    pub fn expose(&self) -> &str {
        self.whole.expose_secret()
    }
}

/// HMAC-SHA256 of a whole key under the server's pepper: what is stored instead of the key.
#[derive(Clone, PartialEq, Eq)]
pub struct ApiKeyDigest(pub Vec<u8>);

impl std::fmt::Debug for ApiKeyDigest {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ApiKeyDigest(..)")
    }
}

#[derive(Debug, Clone)]
pub struct ApiKey {
    pub id: ApiKeyId,
    pub user_id: UserId,
    pub prefix: KeyPrefix,
    pub name: Option<String>,
    pub is_active: bool,
    pub created_at: DateTime<Utc>,
    pub last_used_at: Option<DateTime<Utc>>,
}

/// A key row as needed to authenticate a request: the stored digest and the owner's state.
#[derive(Debug, Clone)]
pub struct StoredApiKey {
    pub key: ApiKey,
    pub digest: ApiKeyDigest,
    pub owner_active: bool,
}

#[derive(Debug, Clone)]
pub struct NewApiKey {
    pub id: ApiKeyId,
    pub user_id: UserId,
    pub prefix: KeyPrefix,
    pub digest: ApiKeyDigest,
    pub name: Option<String>,
    pub created_at: DateTime<Utc>,
}

/// The user-chosen label of a key.
pub fn parse_key_name(raw: Option<String>) -> Result<Option<String>, Invalid> {
    match raw {
        None => Ok(None),
        Some(name) => {
            crate::validation::check_char_len(&name, 0, 255)?;
            crate::validation::check_no_nul(&name)?;
            Ok(Some(name))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generated_keys_have_the_contract_format_and_round_trip() {
        let key = ApiKeySecret::generate();
        let s = key.expose();
        assert_eq!(s.len(), 9 + 1 + ApiKeySecret::SECRET_CHARS);
        assert!(s.starts_with("sk-"));
        assert_eq!(&s[9..10], ".");
        let parsed = ApiKeySecret::parse(s).unwrap();
        assert_eq!(parsed.prefix(), key.prefix());
        assert_eq!(parsed.expose(), s);
    }

    #[test]
    fn the_secret_part_carries_at_least_192_bits() {
        let bits = ApiKeySecret::SECRET_CHARS as f64 * 62f64.log2();
        assert!(bits >= 192.0, "{bits}");
    }

    #[test]
    fn keys_of_the_original_gateway_still_parse() {
        let legacy = format!("sk-AbC123.{}", "0123456789abcdef".repeat(4));
        assert_eq!(
            ApiKeySecret::parse(&legacy).unwrap().prefix().as_str(),
            "sk-AbC123"
        );
    }

    #[test]
    fn malformed_keys_are_refused() {
        for bad in [
            "",
            "pk-abcdef.xyz",
            "sk-",
            "sk-abcdef",
            "sk-abcdef.",
            "sk-abc-ef.xyz",
            "sk-abcdefXxyz",
            "sk-abcdef.xy z",
        ] {
            assert!(ApiKeySecret::parse(bad).is_err(), "{bad:?} was accepted");
        }
        assert!(ApiKeySecret::parse(&format!("sk-abcdef.{}", "a".repeat(300))).is_err());
    }

    #[test]
    fn debug_shows_only_the_prefix() {
        let key = ApiKeySecret::generate();
        let shown = format!("{key:?}");
        assert!(shown.contains(key.prefix().as_str()));
        assert!(!shown.contains(&key.expose()[10..]));
    }

    #[test]
    fn base62_is_roughly_uniform() {
        let sample = random_base62(62 * 2000);
        let mut counts = [0usize; 62];
        for b in sample.bytes() {
            counts[BASE62.iter().position(|&c| c == b).unwrap()] += 1;
        }
        assert!(
            counts.iter().all(|&c| (1500..2500).contains(&c)),
            "{counts:?}"
        );
    }
}
