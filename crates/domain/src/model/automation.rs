use chrono::{DateTime, Utc};

use super::UserId;
use crate::validation::Invalid;

/// How long an automatically opened session lasts, in seconds (60 s to 24 h).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SessionDuration(u32);

impl SessionDuration {
    /// The Diamond contract reverts shorter sessions (`MIN_SESSION_DURATION`, 5 minutes;
    /// proxy-router-behaviour.md §2.7), after the node may already have paid for an allowance
    /// transaction: asking for less only costs a failed open.
    pub const MIN: i64 = 300;
    pub const MAX: i64 = 86_400;
    pub const DEFAULT: SessionDuration = SessionDuration(3600);

    pub fn parse(seconds: i64) -> Result<Self, Invalid> {
        if seconds < Self::MIN {
            return Err(Invalid::new(
                "greater_than_equal",
                "Session duration must be at least 300 seconds (the marketplace's minimum)",
            ));
        }
        if seconds > Self::MAX {
            return Err(Invalid::new(
                "less_than_equal",
                "Session duration cannot exceed 86400 seconds (24 hours)",
            ));
        }
        Ok(Self(u32::try_from(seconds).unwrap_or(3600)))
    }

    pub fn seconds(self) -> u32 {
        self.0
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AutomationSettings {
    pub user_id: UserId,
    pub is_enabled: bool,
    pub session_duration: SessionDuration,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

/// A partial update: fields left out keep their current value.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct AutomationUpdate {
    pub is_enabled: Option<bool>,
    pub session_duration: Option<SessionDuration>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_are_bounded() {
        assert!(SessionDuration::parse(299).is_err());
        assert_eq!(SessionDuration::parse(300).unwrap().seconds(), 300);
        assert_eq!(SessionDuration::parse(86_400).unwrap().seconds(), 86_400);
        assert!(SessionDuration::parse(86_401).is_err());
        assert!(SessionDuration::parse(-1).is_err());
    }
}
