//! The operator's rate limits: requests and tokens per minute for each group of models, and a
//! per-user multiplier that scales them.
//!
//! They are counted per user (the sum over the user's keys), so making more keys does not buy
//! more. A key's own `rpm` and `tpm` (its policy) are counted per key, on top: a user can narrow
//! a key below the operator's limit, never widen it past it.

use std::num::{NonZeroU32, NonZeroU64};

use crate::validation::Invalid;

/// Requests and tokens per minute; `None`: not limited.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RateLimit {
    pub rpm: Option<NonZeroU32>,
    pub tpm: Option<NonZeroU64>,
}

/// Models that share one limit.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ModelGroup {
    /// Names the group's counters; stable across reloads, so counts survive a SIGHUP.
    pub name: String,
    /// Model names or blockchain ids.
    pub models: Vec<String>,
    pub limit: RateLimit,
}

/// The operator's limits: one per group, a default for every model no group names.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct OperatorLimits {
    pub default: RateLimit,
    pub groups: Vec<ModelGroup>,
}

/// The name of the group of models no group names.
pub const DEFAULT_GROUP: &str = "default";

impl OperatorLimits {
    /// The group of the model with this name or id (the first group naming either), else the
    /// default.
    pub fn of(&self, name: &str, id: &str) -> (&str, RateLimit) {
        self.groups
            .iter()
            .find(|g| g.models.iter().any(|m| m == name || m == id))
            .map_or((DEFAULT_GROUP, self.default), |g| {
                (g.name.as_str(), g.limit)
            })
    }
}

/// How much of the operator's limits a user gets, in hundredths: 100 is the limits as
/// written, 250 two and a half times them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct LimitMultiplier(u32);

impl LimitMultiplier {
    pub const ONE: Self = Self(100);
    /// The largest multiplier: a thousand times the limits.
    pub const MAX_HUNDREDTHS: u32 = 100_000;

    /// # Errors
    /// Zero (it would refuse every request: deactivate the account instead) or above
    /// [`Self::MAX_HUNDREDTHS`].
    pub fn from_hundredths(hundredths: u32) -> Result<Self, Invalid> {
        if hundredths == 0 || hundredths > Self::MAX_HUNDREDTHS {
            return Err(Invalid::new(
                "value_error",
                "the multiplier must be from 0.01 to 1000",
            ));
        }
        Ok(Self(hundredths))
    }

    pub fn hundredths(self) -> u32 {
        self.0
    }

    /// `limit` scaled, rounded down, and never below one (a limit is never turned into a ban).
    pub fn scale(self, limit: u64) -> u64 {
        let scaled = u128::from(limit) * u128::from(self.0) / 100;
        u64::try_from(scaled).unwrap_or(u64::MAX).max(1)
    }
}

impl Default for LimitMultiplier {
    fn default() -> Self {
        Self::ONE
    }
}

impl std::fmt::Display for LimitMultiplier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}.{:02}", self.0 / 100, self.0 % 100)
    }
}

impl std::str::FromStr for LimitMultiplier {
    type Err = Invalid;

    /// A decimal with at most two places: `2`, `0.5`, `1.25`.
    fn from_str(text: &str) -> Result<Self, Invalid> {
        let invalid = || {
            Invalid::new(
                "value_error",
                "the multiplier must be a decimal with at most two places, from 0.01 to 1000",
            )
        };
        let (whole, fraction) = text.split_once('.').unwrap_or((text, ""));
        if whole.is_empty()
            || fraction.len() > 2
            || !whole
                .bytes()
                .chain(fraction.bytes())
                .all(|b| b.is_ascii_digit())
        {
            return Err(invalid());
        }
        let whole: u32 = whole.parse().map_err(|_| invalid())?;
        let fraction: u32 = format!("{fraction:0<2}").parse().map_err(|_| invalid())?;
        let hundredths = whole
            .checked_mul(100)
            .and_then(|w| w.checked_add(fraction))
            .ok_or_else(invalid)?;
        Self::from_hundredths(hundredths).map_err(|_| invalid())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rpm(n: u32) -> Option<NonZeroU32> {
        NonZeroU32::new(n)
    }

    #[test]
    fn a_model_takes_its_groups_limit_by_name_or_id_else_the_default() {
        let limits = OperatorLimits {
            default: RateLimit {
                rpm: rpm(60),
                tpm: None,
            },
            groups: vec![ModelGroup {
                name: "large".into(),
                models: vec!["llama-3.3-70b".into(), "0xabc".into()],
                limit: RateLimit {
                    rpm: rpm(10),
                    tpm: NonZeroU64::new(1000),
                },
            }],
        };
        assert_eq!(limits.of("llama-3.3-70b", "0x1").0, "large");
        assert_eq!(limits.of("other", "0xabc").1.rpm, rpm(10));
        assert_eq!(limits.of("other", "0x2"), (DEFAULT_GROUP, limits.default));
    }

    #[test]
    fn a_multiplier_is_read_exactly_and_scales_down_to_at_least_one() {
        let m = |s: &str| {
            s.parse::<LimitMultiplier>()
                .map(LimitMultiplier::hundredths)
        };
        assert_eq!(m("2"), Ok(200));
        assert_eq!(m("0.5"), Ok(50));
        assert_eq!(m("1.25"), Ok(125));
        assert_eq!(m("1000"), Ok(100_000));
        for bad in [
            "0",
            "0.00",
            "1.234",
            "-1",
            "",
            ".5",
            "1e3",
            "1000.01",
            "99999999999",
        ] {
            assert!(m(bad).is_err(), "{bad} was taken");
        }
        let half: LimitMultiplier = "0.5".parse().unwrap();
        assert_eq!(half.scale(601), 300);
        assert_eq!(half.scale(1), 1);
        assert_eq!(LimitMultiplier::ONE.scale(600), 600);
        assert_eq!(half.to_string(), "0.50");
    }
}
