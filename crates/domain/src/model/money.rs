//! Money: US dollars as a whole number of 10⁻⁸ USD.
//!
//! Why not floats: a balance that loses a fraction of a cent on every charge drifts, and a
//! ledger whose sum differs from its balance cannot be audited. Why not a decimal crate:
//! SQLite has no decimal column, and an `i64` of 10⁻⁸ USD (the original gateway's
//! `Numeric(20,8)` scale) is exact, sorts and sums in both databases, and reaches 92 billion
//! dollars. On the wire money is a decimal string (`"12.34000000"`), as the original sends it.

use std::fmt;
use std::str::FromStr;

use crate::validation::Invalid;

/// An amount of US dollars, exact to 10⁻⁸; negative amounts are debits.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Usd(i64);

impl Usd {
    /// Decimal places kept.
    pub const SCALE: u32 = 8;
    /// 10⁻⁸ USD units in one dollar.
    pub const UNITS_PER_DOLLAR: i64 = 100_000_000;
    pub const ZERO: Self = Self(0);

    pub const fn from_units(units: i64) -> Self {
        Self(units)
    }

    pub const fn units(self) -> i64 {
        self.0
    }

    pub fn is_negative(self) -> bool {
        self.0 < 0
    }

    pub fn checked_add(self, other: Self) -> Option<Self> {
        self.0.checked_add(other.0).map(Self)
    }

    pub fn checked_sub(self, other: Self) -> Option<Self> {
        self.0.checked_sub(other.0).map(Self)
    }

    pub fn saturating_add(self, other: Self) -> Self {
        Self(self.0.saturating_add(other.0))
    }

    pub fn saturating_sub(self, other: Self) -> Self {
        Self(self.0.saturating_sub(other.0))
    }

    /// What `count` units of something cost at `per_million` dollars per million of them,
    /// rounded up to the next 10⁻⁸ USD: a charge is never rounded in the user's favour to
    /// zero, and the sum of charges never falls short of the price.
    pub fn per_million(per_million: Self, count: u64) -> Self {
        let product = i128::from(per_million.0) * i128::from(count);
        let cost = (product + 999_999).div_euclid(1_000_000);
        Self(i64::try_from(cost).unwrap_or(i64::MAX))
    }
}

impl std::ops::Neg for Usd {
    type Output = Self;

    fn neg(self) -> Self {
        Self(self.0.saturating_neg())
    }
}

impl fmt::Display for Usd {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let sign = if self.0 < 0 { "-" } else { "" };
        let abs = self.0.unsigned_abs();
        let unit = Self::UNITS_PER_DOLLAR.unsigned_abs();
        write!(f, "{sign}{}.{:08}", abs / unit, abs % unit)
    }
}

impl FromStr for Usd {
    type Err = Invalid;

    /// A plain decimal: `12`, `-0.5`, `0.00000001`. No exponent, no more than 8 decimals
    /// (a price that cannot be charged exactly is refused, not rounded).
    fn from_str(raw: &str) -> Result<Self, Invalid> {
        let invalid = || {
            Invalid::new(
                "value_error",
                format!(
                    "{raw:?} is not an amount of USD (a decimal with at most {} places)",
                    Self::SCALE
                ),
            )
        };
        let (negative, digits) = match raw.strip_prefix('-') {
            Some(rest) => (true, rest),
            None => (false, raw.strip_prefix('+').unwrap_or(raw)),
        };
        let (whole, fraction) = digits.split_once('.').unwrap_or((digits, ""));
        let all_digits = |s: &str| s.bytes().all(|b| b.is_ascii_digit());
        if (whole.is_empty() && fraction.is_empty())
            || !all_digits(whole)
            || !all_digits(fraction)
            || fraction.len() > Self::SCALE as usize
        {
            return Err(invalid());
        }
        let whole: i64 = if whole.is_empty() {
            0
        } else {
            whole.parse().map_err(|_| invalid())?
        };
        let mut fraction_units: i64 = 0;
        for (i, b) in fraction.bytes().enumerate() {
            let place = 10_i64.pow(Self::SCALE - 1 - u32::try_from(i).unwrap_or(0));
            fraction_units += i64::from(b - b'0') * place;
        }
        let units = whole
            .checked_mul(Self::UNITS_PER_DOLLAR)
            .and_then(|w| w.checked_add(fraction_units))
            .ok_or_else(invalid)?;
        Ok(Self(if negative { -units } else { units }))
    }
}

impl Usd {
    /// From a number as a configuration file wrote it (TOML `0.15` is a float): its shortest
    /// decimal form, which is what the operator typed, parsed exactly.
    pub fn from_written_number(number: f64) -> Result<Self, Invalid> {
        if !number.is_finite() {
            return Err(Invalid::new(
                "value_error",
                format!("{number} is not an amount of USD"),
            ));
        }
        let written = format!("{number}");
        if written.contains('e') {
            return Err(Invalid::new(
                "value_error",
                format!("{written} is not an amount of USD (write it as a plain decimal)"),
            ));
        }
        written.parse()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn usd(raw: &str) -> Usd {
        raw.parse().unwrap()
    }

    #[test]
    fn decimals_round_trip_exactly() {
        for (raw, shown) in [
            ("0", "0.00000000"),
            ("12.34", "12.34000000"),
            ("-0.5", "-0.50000000"),
            ("0.00000001", "0.00000001"),
            (".25", "0.25000000"),
            ("+3", "3.00000000"),
            ("92233720368.54775807", "92233720368.54775807"),
        ] {
            assert_eq!(usd(raw).to_string(), shown, "{raw}");
        }
        assert_eq!(usd("1").units(), Usd::UNITS_PER_DOLLAR);
    }

    #[test]
    fn what_cannot_be_exact_is_refused() {
        for raw in [
            "",
            ".",
            "-",
            "1e3",
            "0.000000001",
            "1,5",
            "abc",
            "1.2.3",
            "92233720368.54775808",
            " 1",
        ] {
            assert!(raw.parse::<Usd>().is_err(), "{raw:?} should be refused");
        }
    }

    #[test]
    fn costs_round_up_to_the_next_unit() {
        // 0.50 USD per million tokens: 1 token costs 0.0000005 USD = 50 units.
        assert_eq!(Usd::per_million(usd("0.5"), 1).units(), 50);
        // 0.0375 per million: 3.75 units per token, 4 for one, 375 for a hundred.
        assert_eq!(Usd::per_million(usd("0.0375"), 1).units(), 4);
        assert_eq!(Usd::per_million(usd("0.0375"), 100).units(), 375);
        assert_eq!(Usd::per_million(usd("2"), 1_000_000), usd("2"));
        assert_eq!(Usd::per_million(usd("2"), 0), Usd::ZERO);
    }

    #[test]
    fn configuration_numbers_are_read_as_written() {
        assert_eq!(Usd::from_written_number(0.15).unwrap(), usd("0.15"));
        assert_eq!(Usd::from_written_number(2.0).unwrap(), usd("2"));
        assert!(Usd::from_written_number(f64::NAN).is_err());
        assert!(Usd::from_written_number(1e-9).is_err());
    }
}
