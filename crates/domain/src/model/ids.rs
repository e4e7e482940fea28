//! Identifiers. The public contract uses integer ids; ours are random (not sequential) so an id
//! reveals nothing about how many users or keys exist, and stay below 2^53 so every JSON client
//! reads them exactly.

use ring::rand::{SecureRandom, SystemRandom};

/// Largest id handed out: JavaScript's `Number.MAX_SAFE_INTEGER`.
const MAX_ID: u64 = (1 << 53) - 1;

/// A fresh random id in `1..=2^53-1`.
pub fn random_id() -> i64 {
    let mut bytes = [0u8; 8];
    SystemRandom::new()
        .fill(&mut bytes)
        .expect("the operating system's random source failed");
    let id = u64::from_le_bytes(bytes) & MAX_ID;
    // Zero is the one value the mask can give that is not a valid id.
    i64::try_from(id.max(1)).unwrap_or(1)
}

macro_rules! id_type {
    ($(#[$doc:meta])* $name:ident) => {
        $(#[$doc])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
        pub struct $name(pub i64);

        impl $name {
            pub fn random() -> Self {
                Self(random_id())
            }
        }

        impl std::fmt::Display for $name {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                self.0.fmt(f)
            }
        }
    };
}

id_type!(
    /// A user account.
    UserId
);
impl UserId {
    /// What a deleted account's usage records and sessions are kept under: a fresh random
    /// negative number, one per deleted account, so they still add up per account but no
    /// longer name the user (ids of live accounts are positive).
    pub fn pseudonym() -> Self {
        Self(-random_id())
    }

    /// Whether this is a deleted account's pseudonym.
    pub fn is_pseudonym(self) -> bool {
        self.0 < 0
    }
}

id_type!(
    /// An API key (not the key itself: its row).
    ApiKeyId
);
id_type!(
    /// A stored delegation.
    DelegationId
);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn random_ids_are_positive_json_safe_and_distinct() {
        let ids: std::collections::HashSet<i64> = (0..1000).map(|_| random_id()).collect();
        assert_eq!(ids.len(), 1000);
        assert!(ids.iter().all(|&id| id >= 1 && id <= MAX_ID as i64));
    }
}
