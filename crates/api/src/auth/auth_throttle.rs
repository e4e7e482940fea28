use std::net::IpAddr;
use std::num::NonZeroU32;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use governor::clock::{Clock, DefaultClock, QuantaInstant};
use governor::{DefaultKeyedRateLimiter, NotUntil, Quota, RateLimiter};
use morpheus_domain::Email;
use morpheus_domain::ports::{AuthThrottle, Throttled};

/// Attempts allowed in a burst, and how fast the allowance refills: logins per account and
/// per client address, registrations per client address.
#[derive(Debug, Clone, Copy)]
pub struct AuthThrottleSettings {
    pub per_account_burst: u32,
    pub per_account_refill: Duration,
    pub per_client_burst: u32,
    pub per_client_refill: Duration,
    pub registrations_burst: u32,
    pub registrations_refill: Duration,
}

/// In-memory keyed GCRA limiters (`governor`). Per process: replicas each keep their own count
/// until the Redis-backed limiter lands. The client address is the TCP peer, never
/// `X-Forwarded-For`, so a spoofed header cannot reset a counter.
pub struct GovernorAuthThrottle {
    accounts: DefaultKeyedRateLimiter<String>,
    clients: DefaultKeyedRateLimiter<IpAddr>,
    registrations: DefaultKeyedRateLimiter<IpAddr>,
    attempts: AtomicU64,
}

fn quota(burst: u32, refill: Duration) -> Quota {
    let burst = NonZeroU32::new(burst.max(1)).unwrap_or(NonZeroU32::MIN);
    Quota::with_period(refill.max(Duration::from_millis(1)))
        .unwrap_or_else(|| Quota::per_second(NonZeroU32::MIN))
        .allow_burst(burst)
}

impl GovernorAuthThrottle {
    pub fn new(settings: AuthThrottleSettings) -> Self {
        Self {
            accounts: RateLimiter::keyed(quota(
                settings.per_account_burst,
                settings.per_account_refill,
            )),
            clients: RateLimiter::keyed(quota(
                settings.per_client_burst,
                settings.per_client_refill,
            )),
            registrations: RateLimiter::keyed(quota(
                settings.registrations_burst,
                settings.registrations_refill,
            )),
            attempts: AtomicU64::new(0),
        }
    }
}

impl GovernorAuthThrottle {
    /// Forgets idle keys now and then so the maps do not grow without bound.
    fn housekeeping(&self) {
        if self.attempts.fetch_add(1, Ordering::Relaxed) % 1024 == 1023 {
            self.accounts.retain_recent();
            self.clients.retain_recent();
            self.registrations.retain_recent();
        }
    }
}

/// Turns governor's "not until" into the domain's retry-after.
fn throttled(now: QuantaInstant) -> impl Fn(NotUntil<QuantaInstant>) -> Throttled {
    move |not_until| Throttled {
        retry_after: not_until.wait_time_from(now),
    }
}

impl AuthThrottle for GovernorAuthThrottle {
    fn login(&self, account: &Email, client: Option<IpAddr>) -> Result<(), Throttled> {
        self.housekeeping();
        let now = DefaultClock::default().now();
        if let Some(ip) = client {
            self.clients.check_key(&ip).map_err(throttled(now))?;
        }
        self.accounts
            .check_key(&account.as_str().to_owned())
            .map_err(throttled(now))
    }

    fn registration(&self, client: Option<IpAddr>) -> Result<(), Throttled> {
        self.housekeeping();
        let now = DefaultClock::default().now();
        match client {
            Some(ip) => self.registrations.check_key(&ip).map_err(throttled(now)),
            None => Ok(()),
        }
    }
}

/// The limits the tests count against (ten logins per account, thirty per client address,
/// twenty registrations per client address).
#[cfg(test)]
const SETTINGS: AuthThrottleSettings = AuthThrottleSettings {
    per_account_burst: 10,
    per_account_refill: Duration::from_secs(90),
    per_client_burst: 30,
    per_client_refill: Duration::from_secs(2),
    registrations_burst: 20,
    registrations_refill: Duration::from_secs(60),
};

#[cfg(test)]
mod tests {
    use super::*;

    fn email(s: &str) -> Email {
        Email::parse(s).unwrap()
    }

    #[test]
    fn an_account_is_throttled_after_its_burst_whatever_the_client() {
        let t = GovernorAuthThrottle::new(AuthThrottleSettings {
            per_client_burst: 1000,
            ..SETTINGS
        });
        let victim = email("victim@example.com");
        for i in 0..10u8 {
            let ip = IpAddr::from([10, 0, 0, i]);
            assert!(t.login(&victim, Some(ip)).is_ok(), "attempt {i}");
        }
        let err = t
            .login(&victim, Some(IpAddr::from([10, 0, 1, 1])))
            .unwrap_err();
        assert!(err.retry_after > Duration::from_secs(60));
        // Other accounts are not affected.
        assert!(t.login(&email("other@example.com"), None).is_ok());
    }

    #[test]
    fn a_client_is_throttled_across_accounts() {
        let t = GovernorAuthThrottle::new(SETTINGS);
        let ip = Some(IpAddr::from([127, 0, 0, 1]));
        for i in 0..30 {
            assert!(t.login(&email(&format!("u{i}@example.com")), ip).is_ok());
        }
        assert!(t.login(&email("u99@example.com"), ip).is_err());
        assert!(
            t.login(
                &email("u99@example.com"),
                Some(IpAddr::from([127, 0, 0, 2]))
            )
            .is_ok()
        );
    }
}

#[cfg(test)]
mod registration_tests {
    use super::*;

    #[test]
    fn registrations_are_limited_per_client_address() {
        let t = GovernorAuthThrottle::new(AuthThrottleSettings {
            registrations_burst: 2,
            ..SETTINGS
        });
        let ip = Some(IpAddr::from([192, 0, 2, 1]));
        assert!(t.registration(ip).is_ok());
        assert!(t.registration(ip).is_ok());
        let err = t.registration(ip).unwrap_err();
        assert!(err.retry_after > Duration::from_secs(50));
        assert!(t.registration(Some(IpAddr::from([192, 0, 2, 2]))).is_ok());
    }
}
