use chrono::{DateTime, Utc};
use ring::rand::{SecureRandom, SystemRandom};
use secrecy::{ExposeSecret, SecretString};

use super::{ApiKeyId, KeyPolicy, UserId};
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

/// A whole API key, `sk-XXXXXX.<body><checksum>`: what the user holds and the gateway never
/// stores.
///
/// The body is 37 random base62 characters (220 bits); the last 6 characters are the CRC32 of
/// everything before them, in base62 (GitHub's token layout). The checksum lets a mistyped or
/// truncated key be refused without touching the database, and lets secret scanners recognise
/// a real key offline. The `sk-XXXXXX.` start keeps the original gateway's format.
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

/// CRC32 of `text` as exactly six base62 digits (62^6 > 2^32).
fn checksum(text: &str) -> String {
    let mut n = crc32fast::hash(text.as_bytes());
    let mut digits = [b'0'; ApiKeySecret::CHECKSUM_CHARS];
    for d in digits.iter_mut().rev() {
        *d = BASE62[(n % 62) as usize];
        n /= 62;
    }
    String::from_utf8_lossy(&digits).into_owned()
}

impl ApiKeySecret {
    pub const RANDOM_CHARS: usize = 37;
    pub const CHECKSUM_CHARS: usize = 6;
    /// `sk-` + 6 + `.` + 37 + 6.
    pub const LEN: usize = KeyPrefix::LEN + 1 + Self::RANDOM_CHARS + Self::CHECKSUM_CHARS;

    pub fn generate() -> Self {
        Self::with_prefix(KeyPrefix::random())
    }

    /// A new secret under a given prefix (used when a prefix collides and is drawn again).
    pub fn with_prefix(prefix: KeyPrefix) -> Self {
        let body = format!("{}.{}", prefix.as_str(), random_base62(Self::RANDOM_CHARS));
        let whole = format!("{body}{}", checksum(&body));
        Self {
            prefix,
            whole: SecretString::from(whole),
        }
    }

    /// Parses what a client presented: the shape and the checksum. Whether the key is real is
    /// decided by comparing its digest with the stored one.
    pub fn parse(raw: &str) -> Result<Self, Invalid> {
        if !raw.starts_with("sk-") {
            return Err(Invalid::new(
                "value_error",
                "Invalid API key format. Must start with sk-",
            ));
        }
        let well_formed = raw.len() == Self::LEN
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
        let (body, sum) = raw.split_at(Self::LEN - Self::CHECKSUM_CHARS);
        if checksum(body) != sum {
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
    pub policy: KeyPolicy,
    /// The key the user's web app uses by default (`PUT /auth/keys/{key_id}/default`).
    pub is_default: bool,
}

impl ApiKey {
    /// Whether the key authenticates at `now`: active and not expired.
    pub fn is_usable_at(&self, now: DateTime<Utc>) -> bool {
        self.is_active && !self.policy.is_expired_at(now)
    }
}

/// A key row as needed to authenticate a request: the stored digest and the owner's state.
#[derive(Debug, Clone)]
pub struct StoredApiKey {
    pub key: ApiKey,
    pub digest: ApiKeyDigest,
    pub owner_active: bool,
    /// The owner's share of the operator's rate limits.
    pub owner_limit_multiplier: super::LimitMultiplier,
}

#[derive(Debug, Clone)]
pub struct NewApiKey {
    pub id: ApiKeyId,
    pub user_id: UserId,
    pub prefix: KeyPrefix,
    pub digest: ApiKeyDigest,
    pub name: Option<String>,
    pub created_at: DateTime<Utc>,
    pub policy: KeyPolicy,
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
        assert_eq!(s.len(), ApiKeySecret::LEN);
        assert!(s.starts_with("sk-"));
        assert_eq!(&s[9..10], ".");
        let parsed = ApiKeySecret::parse(s).unwrap();
        assert_eq!(parsed.prefix(), key.prefix());
        assert_eq!(parsed.expose(), s);
    }

    #[test]
    fn the_random_part_carries_at_least_192_bits() {
        let bits = ApiKeySecret::RANDOM_CHARS as f64 * 62f64.log2();
        assert!(bits >= 192.0, "{bits}");
    }

    #[test]
    fn every_single_character_change_fails_the_checksum() {
        let key = ApiKeySecret::generate();
        let s = key.expose();
        // Every position after the prefix, every other base62 character.
        for i in KeyPrefix::LEN + 1..s.len() {
            for &c in BASE62.iter().filter(|&&c| c != s.as_bytes()[i]).step_by(7) {
                let mut mutated = s.as_bytes().to_vec();
                mutated[i] = c;
                let mutated = String::from_utf8(mutated).unwrap();
                assert!(ApiKeySecret::parse(&mutated).is_err(), "{i}: {mutated}");
            }
        }
    }

    #[test]
    fn checksums_are_six_base62_digits() {
        assert_eq!(checksum("").len(), 6);
        assert_eq!(checksum("sk-abcdef.x").len(), 6);
        // CRC32("123456789") = 0xCBF43926, which is "3jZRME" in base62.
        assert_eq!(checksum("123456789"), "3jZRME");
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
        // Keys of the original gateway (64 hex digits, no checksum) never verified against our
        // digests anyway; they are refused by shape.
        assert!(
            ApiKeySecret::parse(&format!("sk-AbC123.{}", "0123456789abcdef".repeat(4))).is_err()
        );
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
