//! MOR amounts, for the operator's caps on what the gateway stakes.
//!
//! The chain counts MOR in wei (1e18 per MOR), beyond `u64`; the shared counters count `u64`.
//! The daily stake budget is therefore counted in nano-MOR (1e-9 MOR, 1e9 wei): `u64` holds
//! 18 billion MOR of it, far beyond the token's supply.

use crate::validation::Invalid;

pub const WEI_PER_MOR: u128 = 1_000_000_000_000_000_000;
pub const WEI_PER_NANO_MOR: u128 = 1_000_000_000;

/// The node wallet's balances (`GET /blockchain/balance`), in wei.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WalletBalance {
    pub eth: u128,
    pub mor: u128,
}

/// A decimal amount of MOR (`"12.5"`, `"0.000001"`, at most 18 decimals) in wei.
pub fn parse_mor(text: &str) -> Result<u128, Invalid> {
    let invalid = || {
        Invalid::new(
            "value_error",
            format!("{text:?} is not an amount of MOR (digits, at most 18 after the point)"),
        )
    };
    let text = text.trim();
    let (whole, fraction) = text.split_once('.').unwrap_or((text, ""));
    let digits = |s: &str| s.bytes().all(|b| b.is_ascii_digit());
    if (whole.is_empty() && fraction.is_empty())
        || !digits(whole)
        || !digits(fraction)
        || fraction.len() > 18
    {
        return Err(invalid());
    }
    let whole: u128 = if whole.is_empty() {
        0
    } else {
        whole.parse().map_err(|_| invalid())?
    };
    let scale = 10u128.pow(18 - u32::try_from(fraction.len()).map_err(|_| invalid())?);
    let fraction: u128 = if fraction.is_empty() {
        0
    } else {
        fraction.parse::<u128>().map_err(|_| invalid())? * scale
    };
    whole
        .checked_mul(WEI_PER_MOR)
        .and_then(|w| w.checked_add(fraction))
        .ok_or_else(invalid)
}

/// Wei as MOR for people: `"0.0018"`, `"12"` (trailing zeros dropped).
pub fn format_mor(wei: u128) -> String {
    let whole = wei / WEI_PER_MOR;
    let fraction = wei % WEI_PER_MOR;
    if fraction == 0 {
        return whole.to_string();
    }
    let digits = format!("{fraction:018}");
    format!("{whole}.{}", digits.trim_end_matches('0'))
}

/// Wei in nano-MOR, rounded up (a reservation must not count less than the stake), saturating.
pub fn nano_mor_ceil(wei: u128) -> u64 {
    u64::try_from(wei.div_ceil(WEI_PER_NANO_MOR)).unwrap_or(u64::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mor_amounts_parse_exactly() {
        assert_eq!(parse_mor("1").unwrap(), WEI_PER_MOR);
        assert_eq!(parse_mor("0.0018").unwrap(), 1_800_000_000_000_000);
        assert_eq!(parse_mor(".5").unwrap(), WEI_PER_MOR / 2);
        assert_eq!(parse_mor("15000").unwrap(), 15_000 * WEI_PER_MOR);
        assert_eq!(parse_mor("0.000000000000000001").unwrap(), 1);
        for bad in ["", ".", "-1", "1e3", "0.0000000000000000001", "1,5", "abc"] {
            assert!(parse_mor(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn amounts_are_shown_and_counted() {
        assert_eq!(format_mor(1_800_000_000_000_000), "0.0018");
        assert_eq!(format_mor(12 * WEI_PER_MOR), "12");
        assert_eq!(nano_mor_ceil(1), 1);
        assert_eq!(nano_mor_ceil(WEI_PER_NANO_MOR), 1);
        assert_eq!(nano_mor_ceil(WEI_PER_MOR), 1_000_000_000);
        assert_eq!(nano_mor_ceil(u128::MAX), u64::MAX);
    }
}
