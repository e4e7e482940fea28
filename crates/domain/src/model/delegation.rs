use chrono::{DateTime, Utc};

use super::{DelegationId, UserId};
use crate::validation::{Invalid, check_char_len};

/// An Ethereum address, `0x` + 40 hex digits, kept as the user wrote it (checksummed or not).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EthAddress(String);

impl EthAddress {
    pub fn parse(raw: &str) -> Result<Self, Invalid> {
        let valid = raw.len() == 42
            && raw.starts_with("0x")
            && raw[2..].bytes().all(|b| b.is_ascii_hexdigit());
        if !valid {
            return Err(Invalid::new(
                "value_error",
                "must be an address: 0x followed by 40 hexadecimal digits",
            ));
        }
        Ok(Self(raw.to_owned()))
    }

    pub fn from_trusted(stored: String) -> Self {
        Self(stored)
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// Addresses compare case-insensitively: the mixed case of EIP-55 is only a checksum.
    pub fn same_account(&self, other: &EthAddress) -> bool {
        self.0.eq_ignore_ascii_case(&other.0)
    }
}

/// The signed delegation blob produced by the user's wallet (opaque to the gateway).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SignedDelegation(String);

impl SignedDelegation {
    /// The default cap (`MORPHEUS_MAX_DELEGATION_CHARS`).
    pub const MAX_CHARS: usize = 65_536;

    pub fn parse(raw: String, max_chars: usize) -> Result<Self, Invalid> {
        check_char_len(&raw, 1, max_chars)?;
        crate::validation::check_no_nul(&raw)?;
        Ok(Self(raw))
    }

    pub fn from_trusted(stored: String) -> Self {
        Self(stored)
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

#[derive(Debug, Clone)]
pub struct Delegation {
    pub id: DelegationId,
    pub user_id: UserId,
    pub delegate_address: EthAddress,
    pub signed_delegation_data: SignedDelegation,
    pub expiry: Option<DateTime<Utc>>,
    pub is_active: bool,
    pub created_at: DateTime<Utc>,
}

/// Paging of a list (delegations, API keys): `limit` is capped so one request cannot ask for
/// everything.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Page {
    pub skip: u32,
    pub limit: u32,
}

impl Page {
    pub const MAX_LIMIT: u32 = 100;
    /// Everything (operators' listings).
    pub const ALL: Page = Page {
        skip: 0,
        limit: u32::MAX,
    };
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn addresses_are_0x_and_40_hex() {
        let a = EthAddress::parse("0x52908400098527886E0F7030069857D2E4169EE7").unwrap();
        let b = EthAddress::parse("0x52908400098527886e0f7030069857d2e4169ee7").unwrap();
        assert!(a.same_account(&b));
        for bad in [
            "",
            "0x",
            "0x123",
            "52908400098527886E0F7030069857D2E4169EE7aa",
        ] {
            assert!(EthAddress::parse(bad).is_err(), "{bad:?}");
        }
    }
}
