//! What the marketplace (the proxy-router and the chain behind it) is made of, as the gateway
//! sees it. The upstream client turns the proxy-router's wire format (PascalCase fields, numbers
//! as decimal strings or as JSON numbers beyond 2^53) into these types.

use chrono::{DateTime, Utc};

use crate::validation::Invalid;

macro_rules! hash32_type {
    ($(#[$doc:meta])* $name:ident, $what:literal) => {
        $(#[$doc])*
        #[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
        pub struct $name(String);

        impl $name {
            /// `0x` + 64 hex digits, any case; kept lowercase so equal ids compare equal.
            pub fn parse(raw: &str) -> Result<Self, Invalid> {
                if is_hash32(raw) {
                    Ok(Self(raw.to_ascii_lowercase()))
                } else {
                    Err(Invalid::new(
                        "value_error",
                        concat!($what, " must be 0x followed by 64 hexadecimal digits"),
                    ))
                }
            }

            pub fn as_str(&self) -> &str {
                &self.0
            }
        }

        impl std::fmt::Display for $name {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str(&self.0)
            }
        }
    };
}

fn is_hash32(raw: &str) -> bool {
    raw.len() == 66 && raw.starts_with("0x") && raw[2..].bytes().all(|b| b.is_ascii_hexdigit())
}

hash32_type!(
    /// A model registered on chain.
    ModelId,
    "model id"
);
hash32_type!(
    /// A provider's offer to serve a model at a price.
    BidId,
    "bid id"
);
hash32_type!(
    /// A paid session between the proxy-router's wallet and a provider.
    SessionId,
    "session id"
);
hash32_type!(
    /// A transaction hash.
    TxHash,
    "transaction hash"
);

/// A model as listed on chain.
#[derive(Debug, Clone, PartialEq)]
pub struct MarketModel {
    pub id: ModelId,
    pub name: String,
    pub tags: Vec<String>,
    /// Unix seconds.
    pub created_at: i64,
    pub owner: String,
    pub is_deleted: bool,
    /// The node's `ModelType`, or the type its tags give.
    pub model_type: super::ModelType,
}

/// A provider's offer. Amounts are in wei (1e18 = 1 MOR); they exceed 2^64 in practice.
#[derive(Debug, Clone, PartialEq)]
pub struct Bid {
    pub id: BidId,
    pub provider: String,
    pub model_agent_id: String,
    pub price_per_second: u128,
    pub nonce: u128,
    pub created_at: u128,
    pub deleted_at: u128,
}

/// A bid with the proxy-router's score (higher is better).
#[derive(Debug, Clone, PartialEq)]
pub struct RatedBid {
    pub id: BidId,
    pub bid: Bid,
    pub score: f64,
}

/// A session as the chain knows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UpstreamSession {
    pub id: SessionId,
    pub user: String,
    pub provider: String,
    pub model_agent_id: String,
    pub bid_id: String,
    pub stake: u128,
    pub price_per_second: u128,
    /// Unix seconds.
    pub opened_at: u64,
    /// Unix seconds: the chain's own end, which the gateway follows rather than guessing.
    pub ends_at: u64,
    /// Unix seconds; 0 while open.
    pub closed_at: u64,
}

impl UpstreamSession {
    pub fn is_closed(&self) -> bool {
        self.closed_at > 0
    }

    pub fn ends_at_utc(&self) -> DateTime<Utc> {
        let secs = i64::try_from(self.ends_at).unwrap_or(i64::MAX);
        DateTime::from_timestamp(secs, 0).unwrap_or(DateTime::<Utc>::MAX_UTC)
    }
}

/// What to ask for when opening a session.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SessionTerms {
    pub duration: super::SessionDuration,
    pub direct_payment: bool,
    pub failover: bool,
}

/// Tokens counted by the provider for one completion, once checked to be sane.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct TokenUsage {
    pub prompt_tokens: u32,
    pub completion_tokens: u32,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hash32_ids_are_normalised_and_checked() {
        let upper = format!("0x{}", "AB".repeat(32));
        let id = ModelId::parse(&upper).unwrap();
        assert_eq!(id.as_str(), format!("0x{}", "ab".repeat(32)));
        assert_eq!(id, ModelId::parse(&upper.to_lowercase()).unwrap());
        for bad in [
            "",
            "0x",
            "ab".repeat(33).as_str(),
            &format!("0x{}", "g".repeat(64)),
        ] {
            assert!(ModelId::parse(bad).is_err(), "{bad:?}");
        }
        assert!(SessionId::parse(&format!("0x{}", "1".repeat(63))).is_err());
    }
}
