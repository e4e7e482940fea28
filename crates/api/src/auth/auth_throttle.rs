//! Login and registration throttles.
//!
//! A login attempt passes three checks, each keyed on what it protects:
//! - **per account and client address** (hard limit, 429): one address guesses one account's
//!   password at most `per_account_client_burst` times, then once per refill. A stranger's
//!   guesses use up the stranger's allowance, not the owner's (an account keyed alone was
//!   locked for everyone by ten wrong passwords from anywhere);
//! - **per client address** (hard limit, 429): one address spreading guesses over many
//!   accounts;
//! - **per account** (slows first, refuses last): every attempt since the account's last
//!   successful login counts, one forgotten per `account_failure_refill`. Past the first
//!   `per_account_client_burst` of them each attempt waits before its password is checked,
//!   twice as long as the one before, up to `account_max_delay`, so a distributed guesser is
//!   slowed while the owner still gets in, a little later. At `account_failure_limit`
//!   (NIST SP 800-63B's 100) only addresses the account has logged in from before may try:
//!   never more guesses than that are checked in a row, and the owner's usual address is not
//!   locked out by them.
//!
//! An account is its address's skeleton (Unicode TS #39): look-alike addresses are one
//! account, so they share every count instead of multiplying the guesses.
//!
//! With shared counters (Redis, `MORPHEUS_REDIS_URL`) the two hard limits and the
//! registrations are counted there, so N replicas allow what one does, in fixed windows of
//! `burst` attempts per `burst` refills instead of GCRA (the same rate in the long run, see
//! [`fixed_window`]); an account's run stays per process. While Redis cannot count and the
//! policy is fail-open, each process's own limiters take over; fail-closed refuses.
//!
//! Attempts are counted before the password is checked (concurrent guesses cannot slip past a
//! limit) and a success ends the account's run. The client address is the HTTP layer's: the
//! peer, or the forwarded client behind a configured trusted proxy, reduced to its network
//! prefix; a spoofed `X-Forwarded-For` from anyone else changes nothing.

use std::collections::HashMap;
use std::net::IpAddr;
use std::num::NonZeroU32;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use governor::clock::{Clock, DefaultClock, QuantaInstant};
use governor::{DefaultKeyedRateLimiter, NotUntil, Quota, RateLimiter};
use morpheus_domain::EmailSkeleton;
use morpheus_domain::ports::{AuthThrottle, Counters, LoginAdmission, Take, Throttled};
use tokio::time::Instant;

/// Attempts allowed in a burst, and how fast the allowance refills.
#[derive(Debug, Clone, Copy)]
pub struct AuthThrottleSettings {
    /// Logins per account from one client address (the hard limit)…
    pub per_account_client_burst: u32,
    /// …and one more every this long.
    pub per_account_client_refill: Duration,
    /// Logins per client address, whatever the account…
    pub per_client_burst: u32,
    pub per_client_refill: Duration,
    /// Attempts in a row without a success after which only addresses the account has logged
    /// in from may try.
    pub account_failure_limit: u32,
    /// One attempt of an account's run is forgotten every this long.
    pub account_failure_refill: Duration,
    /// The longest wait of an attempt on an account under attack.
    pub account_max_delay: Duration,
    pub registrations_burst: u32,
    pub registrations_refill: Duration,
}

/// The first slowed attempt waits this long, each further one twice as long as the one before.
const FIRST_DELAY: Duration = Duration::from_millis(250);

/// How many addresses an account is remembered to have logged in from (the latest ones).
const FAMILIAR_PER_ACCOUNT: usize = 4;

/// How long an address stays familiar after its last successful login.
const FAMILIAR_FOR: Duration = Duration::from_secs(30 * 24 * 3600);

/// The throttles: the hard limits in keyed GCRA limiters (`governor`) of this process, or,
/// [`with_shared_counters`](Self::with_shared_counters), in fixed windows of counters every
/// replica shares; each account's run of attempts (its delays, its familiar addresses) in this
/// process either way.
pub struct GovernorAuthThrottle {
    settings: AuthThrottleSettings,
    pairs: DefaultKeyedRateLimiter<(String, Option<IpAddr>)>,
    clients: DefaultKeyedRateLimiter<IpAddr>,
    accounts: Mutex<HashMap<String, AccountRun>>,
    registrations: DefaultKeyedRateLimiter<IpAddr>,
    attempts: AtomicU64,
    /// Counters shared by every replica (Redis), for the hard limits.
    shared: Option<Arc<dyn Counters>>,
}

/// An account's attempts since its last success, as a leaky bucket: `drained_at` is when the
/// run will have been forgotten entirely (at one attempt per `account_failure_refill`).
#[derive(Debug, Default)]
struct AccountRun {
    drained_at: Option<Instant>,
    /// Addresses the account logged in from, with the time of the latest success.
    familiar: Vec<(IpAddr, Instant)>,
}

impl AccountRun {
    /// Attempts not yet forgotten, the current one excluded.
    fn length(&self, now: Instant, refill: Duration) -> u32 {
        let Some(drained_at) = self.drained_at else {
            return 0;
        };
        let left = drained_at.saturating_duration_since(now);
        let refill = refill.max(Duration::from_millis(1));
        u32::try_from(left.as_nanos().div_ceil(refill.as_nanos())).unwrap_or(u32::MAX)
    }

    fn is_familiar(&self, client: Option<IpAddr>, now: Instant) -> bool {
        client.is_some_and(|ip| {
            self.familiar.iter().any(|(known, at)| {
                *known == ip && now.saturating_duration_since(*at) < FAMILIAR_FOR
            })
        })
    }

    fn forgettable(&self, now: Instant) -> bool {
        self.drained_at.is_none_or(|at| at <= now)
            && self
                .familiar
                .iter()
                .all(|(_, at)| now.saturating_duration_since(*at) >= FAMILIAR_FOR)
    }
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
            settings,
            pairs: RateLimiter::keyed(quota(
                settings.per_account_client_burst,
                settings.per_account_client_refill,
            )),
            clients: RateLimiter::keyed(quota(
                settings.per_client_burst,
                settings.per_client_refill,
            )),
            accounts: Mutex::new(HashMap::new()),
            registrations: RateLimiter::keyed(quota(
                settings.registrations_burst,
                settings.registrations_refill,
            )),
            attempts: AtomicU64::new(0),
            shared: None,
        }
    }

    /// Counts the hard limits (per account and client, per client, registrations) in
    /// `counters`, so that replicas sharing them share the limits, as fixed windows of `burst`
    /// attempts per `burst` refills (see [`fixed_window`]). While the counters cannot count
    /// and fail open, this process's limiters take over.
    #[must_use]
    pub fn with_shared_counters(mut self, counters: Arc<dyn Counters>) -> Self {
        self.shared = Some(counters);
        self
    }

    /// Forgets idle keys now and then so the maps do not grow without bound.
    fn housekeeping(&self) {
        if self.attempts.fetch_add(1, Ordering::Relaxed) % 1024 == 1023 {
            self.pairs.retain_recent();
            self.clients.retain_recent();
            self.registrations.retain_recent();
            let now = Instant::now();
            self.runs().retain(|_, run| !run.forgettable(now));
        }
    }

    fn runs(&self) -> std::sync::MutexGuard<'_, HashMap<String, AccountRun>> {
        self.accounts
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Counts an attempt in the account's run: how long it waits, or `Err` when the run is
    /// at its limit and the client is not one the account logs in from.
    fn account_attempt(
        &self,
        account: &EmailSkeleton,
        client: Option<IpAddr>,
    ) -> Result<LoginAdmission, Throttled> {
        let s = &self.settings;
        let refill = s.account_failure_refill.max(Duration::from_millis(1));
        let now = Instant::now();
        let mut runs = self.runs();
        let run = runs.entry(account.as_str().to_owned()).or_default();
        let limit = s.account_failure_limit.max(1);
        let length = run.length(now, refill);
        if length >= limit && !run.is_familiar(client, now) {
            // The run is below its limit again once one more attempt has been forgotten.
            let drained_at = run.drained_at.unwrap_or(now);
            let allowed = refill * (limit - 1);
            return Err(Throttled {
                retry_after: drained_at
                    .saturating_duration_since(now)
                    .saturating_sub(allowed),
            });
        }
        run.drained_at = Some(run.drained_at.map_or(now, |at| at.max(now)) + refill);
        Ok(LoginAdmission {
            delay: delay_after(length, s.per_account_client_burst, s.account_max_delay),
        })
    }
}

/// The wait of an attempt that follows `length` others in a run: none for the first `free`,
/// then [`FIRST_DELAY`], doubling, up to `max`.
fn delay_after(length: u32, free: u32, max: Duration) -> Duration {
    let Some(over) = length.checked_sub(free) else {
        return Duration::ZERO;
    };
    FIRST_DELAY
        .checked_mul(1u32.checked_shl(over).unwrap_or(u32::MAX))
        .unwrap_or(Duration::MAX)
        .min(max)
}

/// Turns governor's "not until" into the domain's retry-after.
fn throttled(now: QuantaInstant) -> impl Fn(NotUntil<QuantaInstant>) -> Throttled {
    move |not_until| Throttled {
        retry_after: not_until.wait_time_from(now),
    }
}

/// A hard limit as a fixed window of the shared counters: `burst` attempts per `burst`
/// refills. The same rate as the GCRA limiter in the long run; unlike it, up to twice the
/// burst can pass around a window's turn (the end of one and the start of the next), and a
/// window used up refills all at once at its end instead of one attempt per refill.
fn fixed_window(key: String, burst: u32, refill: Duration) -> Take {
    let burst = burst.max(1);
    let refill = Duration::from_secs(refill.as_secs().max(1));
    Take::new(key, refill.saturating_mul(burst), u64::from(burst), 1)
}

/// An account as the shared counters name it: a digest of its skeleton, so no address is
/// written to Redis.
fn account_key(account: &EmailSkeleton) -> String {
    let digest = ring::digest::digest(&ring::digest::SHA256, account.as_str().as_bytes());
    hex_prefix(digest.as_ref())
}

fn hex_prefix(bytes: &[u8]) -> String {
    use std::fmt::Write;
    bytes
        .iter()
        .take(16)
        .fold(String::with_capacity(32), |mut out, b| {
            let _ = write!(out, "{b:02x}");
            out
        })
}

fn client_key(client: Option<IpAddr>) -> String {
    client.map_or_else(|| "-".to_owned(), |ip| ip.to_string())
}

/// What the shared counters decided, or that this process decides alone.
enum Shared {
    Decided(Result<(), Throttled>),
    /// No shared counters, or they could not count (fail-open): this process's limiters
    /// decide, so an outage of Redis leaves per-replica limits rather than none.
    Local,
}

impl GovernorAuthThrottle {
    async fn shared(&self, takes: &[Take]) -> Shared {
        let Some(counters) = &self.shared else {
            return Shared::Local;
        };
        match counters.take(takes).await {
            Ok(taken) if taken.degraded => Shared::Local,
            Ok(taken) => Shared::Decided(match taken.retry_after() {
                None => Ok(()),
                Some(retry_after) => Err(Throttled { retry_after }),
            }),
            // Fail-closed while the shared counters are down.
            Err(failure) => Shared::Decided(Err(Throttled {
                retry_after: failure.retry_after,
            })),
        }
    }

    fn local_login_limits(
        &self,
        account: &EmailSkeleton,
        client: Option<IpAddr>,
    ) -> Result<(), Throttled> {
        let now = DefaultClock::default().now();
        if let Some(ip) = client {
            self.clients.check_key(&ip).map_err(throttled(now))?;
        }
        self.pairs
            .check_key(&(account.as_str().to_owned(), client))
            .map_err(throttled(now))
    }
}

#[async_trait]
impl AuthThrottle for GovernorAuthThrottle {
    async fn login(
        &self,
        account: &EmailSkeleton,
        client: Option<IpAddr>,
    ) -> Result<LoginAdmission, Throttled> {
        self.housekeeping();
        let s = &self.settings;
        let mut takes = Vec::with_capacity(2);
        if let Some(ip) = client {
            takes.push(fixed_window(
                format!("login:client:{ip}"),
                s.per_client_burst,
                s.per_client_refill,
            ));
        }
        takes.push(fixed_window(
            format!("login:pair:{}:{}", account_key(account), client_key(client)),
            s.per_account_client_burst,
            s.per_account_client_refill,
        ));
        match self.shared(&takes).await {
            Shared::Decided(decision) => decision?,
            Shared::Local => self.local_login_limits(account, client)?,
        }
        self.account_attempt(account, client)
    }

    async fn login_succeeded(&self, account: &EmailSkeleton, client: Option<IpAddr>) {
        let now = Instant::now();
        let mut runs = self.runs();
        let run = runs.entry(account.as_str().to_owned()).or_default();
        run.drained_at = None;
        let Some(ip) = client else { return };
        run.familiar.retain(|(known, _)| *known != ip);
        if run.familiar.len() == FAMILIAR_PER_ACCOUNT {
            run.familiar.remove(0);
        }
        run.familiar.push((ip, now));
    }

    async fn registration(&self, client: Option<IpAddr>) -> Result<(), Throttled> {
        self.housekeeping();
        let Some(ip) = client else { return Ok(()) };
        let s = &self.settings;
        let take = fixed_window(
            format!("registration:{ip}"),
            s.registrations_burst,
            s.registrations_refill,
        );
        match self.shared(&[take]).await {
            Shared::Decided(decision) => decision,
            Shared::Local => {
                let now = DefaultClock::default().now();
                self.registrations.check_key(&ip).map_err(throttled(now))
            }
        }
    }
}

/// The limits the tests count against: ten logins per account and address per fifteen
/// minutes, thirty per address per minute, a hundred in a row per account; twenty
/// registrations per client address, then one a minute.
#[cfg(test)]
const SETTINGS: AuthThrottleSettings = AuthThrottleSettings {
    per_account_client_burst: 10,
    per_account_client_refill: Duration::from_secs(90),
    per_client_burst: 30,
    per_client_refill: Duration::from_secs(2),
    account_failure_limit: 100,
    account_failure_refill: Duration::from_secs(90),
    account_max_delay: Duration::from_secs(4),
    registrations_burst: 20,
    registrations_refill: Duration::from_secs(60),
};

#[cfg(test)]
mod tests {
    use super::*;

    fn email(s: &str) -> EmailSkeleton {
        morpheus_domain::Email::parse(s).unwrap().skeleton()
    }

    fn ip(last: u8) -> Option<IpAddr> {
        Some(IpAddr::from([10, 0, 0, last]))
    }

    #[tokio::test]
    async fn one_address_is_stopped_on_one_account_but_another_address_is_not() {
        let t = GovernorAuthThrottle::new(SETTINGS);
        let victim = email("victim@example.com");
        for i in 0..10 {
            assert!(t.login(&victim, ip(1)).await.is_ok(), "attempt {i}");
        }
        let err = t.login(&victim, ip(1)).await.unwrap_err();
        assert!(err.retry_after > Duration::from_secs(60), "{err:?}");
        // The owner, elsewhere, is only slowed.
        let owner = t.login(&victim, ip(2)).await.unwrap();
        assert_eq!(owner.delay, FIRST_DELAY);
        // The attacker may still try other accounts (up to the per-client limit).
        assert_eq!(
            t.login(&email("other@example.com"), ip(1))
                .await
                .unwrap()
                .delay,
            Duration::ZERO
        );
    }

    #[tokio::test]
    async fn look_alike_addresses_share_one_account_s_count() {
        let t = GovernorAuthThrottle::new(SETTINGS);
        // Ten guesses spread over the address and four look-alikes of it, from one client.
        for (i, account) in [
            "victim@example.com",
            "vict\u{0456}m@example.com",
            "v\u{0456}ctim@example.com",
            "victim@ex\u{0430}mple.com",
            "ＶＩＣＴＩＭ@example.com",
        ]
        .iter()
        .cycle()
        .take(10)
        .enumerate()
        {
            assert!(t.login(&email(account), ip(1)).await.is_ok(), "attempt {i}");
        }
        assert!(t.login(&email("victim@example.com"), ip(1)).await.is_err());
        assert!(
            t.login(&email("vict\u{0456}m@example.com"), ip(1))
                .await
                .is_err()
        );
    }

    #[tokio::test]
    async fn a_client_is_throttled_across_accounts() {
        let t = GovernorAuthThrottle::new(SETTINGS);
        for i in 0..30 {
            assert!(
                t.login(&email(&format!("u{i}@example.com")), ip(1))
                    .await
                    .is_ok()
            );
        }
        assert!(t.login(&email("u99@example.com"), ip(1)).await.is_err());
        assert!(t.login(&email("u99@example.com"), ip(2)).await.is_ok());
    }

    #[tokio::test]
    async fn an_account_under_attack_slows_every_attempt_progressively_up_to_the_maximum() {
        let t = GovernorAuthThrottle::new(AuthThrottleSettings {
            per_account_client_burst: 2,
            per_client_burst: 1000,
            account_max_delay: Duration::from_secs(1),
            ..SETTINGS
        });
        let victim = email("victim@example.com");
        let mut delays: Vec<u128> = Vec::new();
        for i in 0..8u8 {
            delays.push(t.login(&victim, ip(i)).await.unwrap().delay.as_millis());
        }
        assert_eq!(delays, [0, 0, 250, 500, 1000, 1000, 1000, 1000]);
        // A success ends the run: the next attempt is not slowed.
        t.login_succeeded(&victim, ip(9)).await;
        assert_eq!(
            t.login(&victim, ip(10)).await.unwrap().delay,
            Duration::ZERO
        );
    }

    #[tokio::test]
    async fn at_the_failure_limit_only_familiar_addresses_may_try() {
        let t = GovernorAuthThrottle::new(AuthThrottleSettings {
            per_account_client_burst: 2,
            per_client_burst: 1000,
            account_failure_limit: 5,
            ..SETTINGS
        });
        let victim = email("victim@example.com");
        assert!(t.login(&victim, ip(200)).await.is_ok());
        t.login_succeeded(&victim, ip(200)).await;
        for i in 0..5 {
            assert!(t.login(&victim, ip(i)).await.is_ok(), "attempt {i}");
        }
        // The limit holds whatever the address: never more than 5 in a row are checked…
        for i in 5..10 {
            let err = t.login(&victim, ip(i)).await.unwrap_err();
            assert!(err.retry_after > Duration::from_secs(80), "{err:?}");
            assert!(err.retry_after <= Duration::from_secs(90), "{err:?}");
        }
        // …except from where the owner logged in before.
        assert!(t.login(&victim, ip(200)).await.is_ok());
        // Other accounts are not affected.
        assert!(t.login(&email("other@example.com"), ip(7)).await.is_ok());
    }

    #[tokio::test]
    async fn a_run_is_forgotten_one_attempt_per_refill() {
        let t = GovernorAuthThrottle::new(AuthThrottleSettings {
            per_account_client_burst: 100,
            per_client_burst: 1000,
            account_failure_limit: 3,
            account_failure_refill: Duration::from_millis(100),
            ..SETTINGS
        });
        let victim = email("victim@example.com");
        for _ in 0..3 {
            assert!(t.login(&victim, ip(1)).await.is_ok());
        }
        assert!(t.login(&victim, ip(1)).await.is_err());
        std::thread::sleep(Duration::from_millis(120));
        assert!(t.login(&victim, ip(1)).await.is_ok());
        assert!(t.login(&victim, ip(1)).await.is_err());
    }

    #[tokio::test]
    async fn delays_double_from_the_first_and_saturate() {
        let max = Duration::from_secs(4);
        assert_eq!(delay_after(9, 10, max), Duration::ZERO);
        assert_eq!(delay_after(10, 10, max), FIRST_DELAY);
        assert_eq!(delay_after(12, 10, max), FIRST_DELAY * 4);
        assert_eq!(delay_after(14, 10, max), max);
        assert_eq!(delay_after(u32::MAX, 0, max), max);
    }
}

#[cfg(test)]
mod registration_tests {
    use super::*;

    #[tokio::test]
    async fn registrations_are_limited_per_client_address() {
        let t = GovernorAuthThrottle::new(AuthThrottleSettings {
            registrations_burst: 2,
            ..SETTINGS
        });
        let ip = Some(IpAddr::from([192, 0, 2, 1]));
        assert!(t.registration(ip).await.is_ok());
        assert!(t.registration(ip).await.is_ok());
        let err = t.registration(ip).await.unwrap_err();
        assert!(err.retry_after > Duration::from_secs(50));
        assert!(
            t.registration(Some(IpAddr::from([192, 0, 2, 2])))
                .await
                .is_ok()
        );
    }
}

#[cfg(test)]
mod shared_tests {
    use morpheus_counters::{FailurePolicy, GuardedCounters, MemoryCounters};
    use morpheus_domain::ports::{CounterFailure, Taken};

    use super::*;

    fn email(s: &str) -> EmailSkeleton {
        morpheus_domain::Email::parse(s).unwrap().skeleton()
    }

    fn ip(last: u8) -> Option<IpAddr> {
        Some(IpAddr::from([10, 0, 0, last]))
    }

    /// Three replicas counting in one store.
    fn replicas(settings: AuthThrottleSettings) -> Vec<GovernorAuthThrottle> {
        // A clock that stands still: every attempt lands in one window.
        let shared: Arc<dyn Counters> =
            Arc::new(MemoryCounters::with_clock(Arc::new(|| 1_000_000)));
        (0..3)
            .map(|_| GovernorAuthThrottle::new(settings).with_shared_counters(shared.clone()))
            .collect()
    }

    #[tokio::test]
    async fn replicas_share_the_limit_of_one_address_on_one_account() {
        let replicas = replicas(SETTINGS);
        let victim = email("victim@example.com");
        for i in 0..10 {
            let replica = &replicas[i % 3];
            assert!(replica.login(&victim, ip(1)).await.is_ok(), "attempt {i}");
        }
        for replica in &replicas {
            let err = replica.login(&victim, ip(1)).await.unwrap_err();
            // A window of 10 × 90 s: the refusal lasts until it ends.
            assert!(err.retry_after <= Duration::from_secs(900), "{err:?}");
            assert!(!err.retry_after.is_zero());
        }
        assert!(replicas[0].login(&victim, ip(2)).await.is_ok());
        assert!(
            replicas[1]
                .login(&email("vict\u{0456}m@example.com"), ip(1))
                .await
                .is_err(),
            "a look-alike address is the same account"
        );
    }

    #[tokio::test]
    async fn replicas_share_the_limit_of_one_address_across_accounts() {
        let replicas = replicas(SETTINGS);
        for i in 0..30 {
            let account = email(&format!("u{i}@example.com"));
            assert!(replicas[i % 3].login(&account, ip(1)).await.is_ok(), "{i}");
        }
        let refused = replicas[2].login(&email("u99@example.com"), ip(1)).await;
        assert!(refused.is_err());
        assert!(
            replicas[2]
                .login(&email("u99@example.com"), ip(2))
                .await
                .is_ok()
        );
    }

    #[tokio::test]
    async fn replicas_share_the_registration_limit() {
        let replicas = replicas(AuthThrottleSettings {
            registrations_burst: 4,
            ..SETTINGS
        });
        let client = Some(IpAddr::from([192, 0, 2, 1]));
        for i in 0..4 {
            assert!(replicas[i % 3].registration(client).await.is_ok(), "{i}");
        }
        for replica in &replicas {
            assert!(replica.registration(client).await.is_err());
        }
        assert!(replicas[0].registration(None).await.is_ok());
    }

    #[tokio::test]
    async fn a_refused_pair_does_not_use_up_the_client_s_allowance() {
        let replicas = replicas(AuthThrottleSettings {
            per_account_client_burst: 2,
            per_client_burst: 3,
            ..SETTINGS
        });
        let victim = email("victim@example.com");
        for _ in 0..2 {
            assert!(replicas[0].login(&victim, ip(1)).await.is_ok());
        }
        for _ in 0..5 {
            assert!(replicas[1].login(&victim, ip(1)).await.is_err());
        }
        // All or nothing: the refused attempts did not count against the client.
        assert!(
            replicas[2]
                .login(&email("other@example.com"), ip(1))
                .await
                .is_ok()
        );
        assert!(
            replicas[2]
                .login(&email("third@example.com"), ip(1))
                .await
                .is_err()
        );
    }

    /// A store that never answers.
    struct Down;

    #[async_trait]
    impl Counters for Down {
        async fn take(&self, _: &[Take]) -> Result<Taken, CounterFailure> {
            Err(CounterFailure {
                retry_after: Duration::from_secs(1),
                reason: "down".to_owned(),
            })
        }
        async fn adjust(&self, _: &str, _: Duration, _: i64, _: i64) -> Result<(), CounterFailure> {
            Err(CounterFailure {
                retry_after: Duration::from_secs(1),
                reason: "down".to_owned(),
            })
        }
    }

    #[tokio::test]
    async fn while_the_shared_counters_fail_open_each_process_limits_alone() {
        let guarded = Arc::new(GuardedCounters::new(Arc::new(Down), FailurePolicy::Open));
        let t = GovernorAuthThrottle::new(SETTINGS).with_shared_counters(guarded);
        let victim = email("victim@example.com");
        for i in 0..10 {
            assert!(t.login(&victim, ip(1)).await.is_ok(), "attempt {i}");
        }
        assert!(t.login(&victim, ip(1)).await.is_err());
    }

    #[tokio::test]
    async fn while_the_shared_counters_fail_closed_attempts_are_refused() {
        let guarded = Arc::new(GuardedCounters::new(Arc::new(Down), FailurePolicy::Closed));
        let t = GovernorAuthThrottle::new(SETTINGS).with_shared_counters(guarded);
        let err = t
            .login(&email("victim@example.com"), ip(1))
            .await
            .unwrap_err();
        assert!(!err.retry_after.is_zero());
        assert!(t.registration(ip(1)).await.is_err());
    }

    #[test]
    fn a_hard_limit_is_a_window_of_its_burst_s_refills() {
        let take = fixed_window("k".to_owned(), 10, Duration::from_secs(90));
        assert_eq!(take.window, Duration::from_secs(900));
        assert_eq!((take.limit, take.amount), (10, 1));
        // Below a second of refill counts as a second.
        let take = fixed_window("k".to_owned(), 0, Duration::from_millis(10));
        assert_eq!(take.window, Duration::from_secs(1));
        assert_eq!(take.limit, 1);
    }

    #[test]
    fn accounts_are_named_by_a_digest_not_their_address() {
        let key = account_key(&email("ada@example.com"));
        assert_eq!(key.len(), 32);
        assert!(!key.contains("ada"));
        assert_eq!(key, account_key(&email("ADA@example.com")));
    }
}
