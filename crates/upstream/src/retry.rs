//! When a call may be sent again. Only reads are retried blindly: they cannot spend money.

use std::hash::{BuildHasher, Hasher};
use std::time::Duration;

use morpheus_domain::ports::{MarketplaceError, TimeoutPhase};

use crate::errors::Failure;

/// Extra attempts for an idempotent read.
pub(crate) const READ_RETRIES: u32 = 2;

/// A `Retry-After` longer than this is the upstream asking us to go away, not to retry now.
const MAX_HONOURED_RETRY_AFTER: Duration = Duration::from_secs(1);

/// Whether a failed idempotent read is worth another try.
pub(crate) fn read_is_retryable(f: &Failure) -> bool {
    match &f.error {
        MarketplaceError::Unreachable(_) => true,
        MarketplaceError::Timeout(TimeoutPhase::Connect) => true,
        MarketplaceError::Rejected {
            status,
            retry_after,
            ..
        } => {
            matches!(status, 502..=504) && retry_after.is_none_or(|d| d <= MAX_HONOURED_RETRY_AFTER)
        }
        _ => false,
    }
}

/// Short jittered backoff: 25–50 ms, then 50–100 ms (attempt counts from 1).
pub(crate) fn backoff(attempt: u32, failure: &Failure) -> Duration {
    let base = Duration::from_millis(25u64 << (attempt.saturating_sub(1)).min(4));
    let jitter = base.mul_f64(random_fraction());
    let delay = base + jitter;
    match &failure.error {
        MarketplaceError::Rejected {
            retry_after: Some(after),
            ..
        } => delay.max(*after),
        _ => delay,
    }
}

/// A number in [0, 1) that differs between calls; good enough to spread retries apart.
fn random_fraction() -> f64 {
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u128(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos()),
    );
    (h.finish() >> 11) as f64 / (1u64 << 53) as f64
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_transient_failures_are_retried() {
        let yes = [
            MarketplaceError::Unreachable("connection refused".into()),
            MarketplaceError::Timeout(TimeoutPhase::Connect),
            MarketplaceError::Rejected {
                status: 503,
                message: String::new(),
                retry_after: None,
            },
        ];
        let no = [
            MarketplaceError::Timeout(TimeoutPhase::FirstByte),
            MarketplaceError::Unauthorized,
            MarketplaceError::Rejected {
                status: 500,
                message: String::new(),
                retry_after: None,
            },
            MarketplaceError::Rejected {
                status: 503,
                message: String::new(),
                retry_after: Some(Duration::from_secs(30)),
            },
            MarketplaceError::InvalidResponse(String::new()),
        ];
        for e in yes {
            assert!(read_is_retryable(&Failure::definite(e.clone())), "{e:?}");
        }
        for e in no {
            assert!(!read_is_retryable(&Failure::definite(e.clone())), "{e:?}");
        }
    }

    #[test]
    fn backoff_is_short_and_grows() {
        let f = Failure::definite(MarketplaceError::Unreachable(String::new()));
        for _ in 0..50 {
            let first = backoff(1, &f);
            let second = backoff(2, &f);
            assert!(first >= Duration::from_millis(25) && first < Duration::from_millis(50));
            assert!(second >= Duration::from_millis(50) && second < Duration::from_millis(100));
        }
    }
}
