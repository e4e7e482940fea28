//! The counters against a real Redis (`MORPHEUS_TEST_REDIS_URL`, e.g.
//! `redis://127.0.0.1:6379`; the tests that need one are skipped, with a note, when it is
//! unset), and the failure policy against a Redis that is not there (always run).
//!
//! Each test uses keys under a random prefix of its own, so tests may share the server.

use std::sync::Arc;
use std::time::Duration;

use morpheus_counters::{
    BreakerState, FIRST_COOLDOWN, FailurePolicy, GuardedCounters, RedisCounters, RedisOptions,
};
use morpheus_domain::ports::{Counters, Take};

const REDIS_ENV: &str = "MORPHEUS_TEST_REDIS_URL";
const HOUR: Duration = Duration::from_secs(3600);
const MINUTE: Duration = Duration::from_secs(60);

/// The test server's URL, or `None` (and a note) when the tests that need it are skipped.
fn redis_url(test: &str) -> Option<String> {
    let url = std::env::var(REDIS_ENV).ok().filter(|u| !u.is_empty());
    if url.is_none() {
        eprintln!("{test}: skipped, {REDIS_ENV} is not set");
    }
    url
}

fn options(prefix: &str) -> RedisOptions {
    RedisOptions {
        prefix: prefix.to_owned(),
        timeout: Duration::from_millis(250),
        connect_timeout: Duration::from_millis(500),
    }
}

fn prefix() -> String {
    format!("morpheus-test:{}:", uuid::Uuid::new_v4().simple())
}

async fn raw(url: &str) -> redis::aio::MultiplexedConnection {
    redis::Client::open(url)
        .unwrap()
        .get_multiplexed_async_connection()
        .await
        .expect("the test Redis answers")
}

/// Redis's clock, seconds.
async fn redis_now(url: &str) -> i64 {
    let (seconds, _): (i64, i64) = redis::cmd("TIME")
        .query_async(&mut raw(url).await)
        .await
        .unwrap();
    seconds
}

/// Waits, if need be, until the current `window` has at least 5 s left, so a test's takes
/// all land in one window.
async fn settle_in_one_window(url: &str, window: Duration) {
    let w = i64::try_from(window.as_secs()).unwrap();
    let left = w - redis_now(url).await % w;
    if left < 5 {
        tokio::time::sleep(Duration::from_secs(left.unsigned_abs() + 1)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_takes_over_several_connections_allow_exactly_the_limit() {
    let Some(url) = redis_url("concurrent_takes") else {
        return;
    };
    settle_in_one_window(&url, HOUR).await;
    let prefix = prefix();
    // Four connections, as four replicas would hold.
    let replicas: Vec<Arc<RedisCounters>> = (0..4)
        .map(|_| {
            Arc::new(
                RedisCounters::new(
                    &url,
                    RedisOptions {
                        timeout: Duration::from_secs(5),
                        ..options(&prefix)
                    },
                )
                .unwrap(),
            )
        })
        .collect();
    let tasks: Vec<_> = (0..1000)
        .map(|i| {
            let counters = replicas[i % replicas.len()].clone();
            tokio::spawn(async move {
                counters
                    .take(&[
                        Take::new("rpm", HOUR, 300, 1),
                        Take::new("tokens", HOUR, 100_000, 7),
                    ])
                    .await
                    .expect("a take")
                    .allowed()
            })
        })
        .collect();
    let mut allowed = 0;
    for task in tasks {
        allowed += u32::from(task.await.unwrap());
    }
    assert_eq!(allowed, 300);
    assert_eq!(replicas[0].read("rpm", HOUR).await.unwrap().used, 300);
    assert_eq!(replicas[1].read("tokens", HOUR).await.unwrap().used, 2100);
}

#[tokio::test]
async fn a_take_over_several_counters_is_all_or_nothing() {
    let Some(url) = redis_url("all_or_nothing") else {
        return;
    };
    settle_in_one_window(&url, HOUR).await;
    let c = RedisCounters::new(&url, options(&prefix())).unwrap();
    let takes = |tokens| {
        [
            Take::new("rpm", MINUTE, 100, 1),
            Take::new("tpm", MINUTE, 1000, tokens),
            Take::new("budget", HOUR, 5000, tokens),
        ]
    };
    let first = c.take(&takes(600)).await.unwrap();
    assert!(first.allowed());
    assert_eq!(
        first.counters.iter().map(|s| s.used).collect::<Vec<_>>(),
        [1, 600, 600]
    );
    let budget = first.counters[2];
    assert_eq!(budget.window_start % 3600, 0);
    assert_eq!(budget.resets_at, budget.window_start + 3600);
    assert!(first.now >= budget.window_start && first.now < budget.resets_at);

    let refused = c.take(&takes(600)).await.unwrap();
    assert_eq!(refused.refused_by, Some(1));
    assert!(refused.retry_after().unwrap() <= MINUTE);
    assert_eq!(c.read("rpm", MINUTE).await.unwrap().used, 1);
    assert_eq!(c.read("budget", HOUR).await.unwrap().used, 600);

    // A counter named twice counts both amounts.
    let twice = [
        Take::new("twice", MINUTE, 10, 6),
        Take::new("twice", MINUTE, 10, 6),
    ];
    assert_eq!(c.take(&twice).await.unwrap().refused_by, Some(1));
    assert_eq!(c.read("twice", MINUTE).await.unwrap().used, 0);
}

#[tokio::test]
async fn adjustments_settle_reservations_never_below_zero_and_spare_other_windows() {
    let Some(url) = redis_url("adjust") else {
        return;
    };
    settle_in_one_window(&url, HOUR).await;
    let prefix = prefix();
    let c = RedisCounters::new(&url, options(&prefix)).unwrap();
    let taken = c.take(&[Take::new("tpm", HOUR, 1000, 800)]).await.unwrap();
    let start = taken.counters[0].window_start;
    c.adjust("tpm", HOUR, start, -500).await.unwrap();
    assert_eq!(c.read("tpm", HOUR).await.unwrap().used, 300);
    c.adjust("tpm", HOUR, start, -5000).await.unwrap();
    assert_eq!(c.read("tpm", HOUR).await.unwrap().used, 0);
    c.adjust("tpm", HOUR, start, 1200).await.unwrap();
    assert!(
        !c.take(&[Take::new("tpm", HOUR, 1000, 0)])
            .await
            .unwrap()
            .allowed()
    );
    // A correction of an earlier window changes nothing now.
    c.adjust("tpm", HOUR, start - 3600, -1200).await.unwrap();
    assert_eq!(c.read("tpm", HOUR).await.unwrap().used, 1200);
    // A correction of the current window before any take in it counts.
    c.adjust("fresh", HOUR, start, 5).await.unwrap();
    assert_eq!(c.read("fresh", HOUR).await.unwrap().used, 5);
}

#[tokio::test]
async fn a_counter_left_from_an_earlier_window_starts_again_from_zero() {
    let Some(url) = redis_url("roll_over") else {
        return;
    };
    settle_in_one_window(&url, HOUR).await;
    let prefix = prefix();
    let c = RedisCounters::new(&url, options(&prefix)).unwrap();
    let now = redis_now(&url).await;
    let key = format!("{prefix}k:3600");
    let _: () = redis::cmd("HSET")
        .arg(&key)
        .arg("s")
        .arg(now - now % 3600 - 3600)
        .arg("u")
        .arg(5)
        .query_async(&mut raw(&url).await)
        .await
        .unwrap();
    let taken = c.take(&[Take::new("k", HOUR, 5, 5)]).await.unwrap();
    assert!(taken.allowed());
    assert_eq!(taken.counters[0].used, 5);
    assert_eq!(taken.counters[0].window_start, now - now % 3600);
}

#[tokio::test]
async fn counters_expire_after_their_window() {
    let Some(url) = redis_url("expiry") else {
        return;
    };
    let prefix = prefix();
    let c = RedisCounters::new(&url, options(&prefix)).unwrap();
    let taken = c.take(&[Take::new("k", MINUTE, 5, 1)]).await.unwrap();
    let mut conn = raw(&url).await;
    let expires_at: i64 = redis::cmd("EXPIRETIME")
        .arg(format!("{prefix}k:60"))
        .query_async(&mut conn)
        .await
        .unwrap();
    let resets_at = taken.counters[0].resets_at;
    assert!(
        expires_at > resets_at && expires_at <= resets_at + 60,
        "{expires_at} vs {resets_at}"
    );
    // A read writes nothing: no counter appears for it.
    c.read("unseen", MINUTE).await.unwrap();
    let exists: i64 = redis::cmd("EXISTS")
        .arg(format!("{prefix}unseen:60"))
        .query_async(&mut conn)
        .await
        .unwrap();
    assert_eq!(exists, 0);
}

#[tokio::test]
async fn scripts_are_loaded_again_when_redis_has_forgotten_them() {
    let Some(url) = redis_url("script_reload") else {
        return;
    };
    let c = RedisCounters::new(&url, options(&prefix())).unwrap();
    assert!(
        c.take(&[Take::new("k", MINUTE, 5, 1)])
            .await
            .unwrap()
            .allowed()
    );
    let _: () = redis::cmd("SCRIPT")
        .arg("FLUSH")
        .query_async(&mut raw(&url).await)
        .await
        .unwrap();
    assert!(
        c.take(&[Take::new("k", MINUTE, 5, 1)])
            .await
            .unwrap()
            .allowed()
    );
}

#[tokio::test]
async fn a_guarded_redis_that_answers_counts_for_real() {
    let Some(url) = redis_url("guarded_up") else {
        return;
    };
    let store = Arc::new(RedisCounters::new(&url, options(&prefix())).unwrap());
    let c = GuardedCounters::new(store, FailurePolicy::Closed);
    let taken = c.take(&[Take::new("k", MINUTE, 1, 1)]).await.unwrap();
    assert!(taken.allowed() && !taken.degraded);
    assert!(
        !c.take(&[Take::new("k", MINUTE, 1, 1)])
            .await
            .unwrap()
            .allowed()
    );
    assert_eq!(c.breaker_state(), BreakerState::Closed);
}

/// Nothing listens on port 1.
const DEAD_REDIS: &str = "redis://127.0.0.1:1";

fn dead(policy: FailurePolicy) -> GuardedCounters {
    let store = RedisCounters::new(DEAD_REDIS, options(&prefix())).unwrap();
    GuardedCounters::new(Arc::new(store), policy)
}

#[tokio::test]
async fn fail_open_allows_and_marks_degraded_while_redis_is_down() {
    let c = dead(FailurePolicy::Open);
    let takes = [Take::new("k", MINUTE, 1, 1)];
    let first = c.take(&takes).await.unwrap();
    assert!(first.allowed() && first.degraded);
    assert_eq!(first.counters[0].limit, 1);
    assert_eq!(
        first.counters[0].resets_at - first.counters[0].window_start,
        60
    );
    assert_eq!(c.breaker_state(), BreakerState::Open);
    assert_eq!(c.cooldown(), FIRST_COOLDOWN);
    // The breaker is open: the next takes skip Redis (a second failure would have opened it
    // for longer) and are allowed over the limit, degraded.
    for _ in 0..3 {
        let again = c.take(&takes).await.unwrap();
        assert!(again.allowed() && again.degraded);
    }
    assert_eq!(c.breaker_state(), BreakerState::Open);
    assert_eq!(c.cooldown(), FIRST_COOLDOWN);
    // Corrections and reads report the failure (their callers log it).
    assert!(c.adjust("k", MINUTE, 0, 1).await.is_err());
    assert!(c.read("k", MINUTE).await.is_err());
}

#[tokio::test]
async fn fail_closed_refuses_with_the_breaker_s_cooldown_while_redis_is_down() {
    let c = dead(FailurePolicy::Closed);
    let takes = [Take::new("k", MINUTE, 100, 1)];
    let refused = c.take(&takes).await.unwrap_err();
    assert!(refused.retry_after <= FIRST_COOLDOWN && !refused.retry_after.is_zero());
    assert_eq!(c.breaker_state(), BreakerState::Open);
    let again = c.take(&takes).await.unwrap_err();
    assert!(again.retry_after <= refused.retry_after);
    assert!(again.reason.contains("circuit breaker"), "{}", again.reason);
    assert_eq!(c.cooldown(), FIRST_COOLDOWN);
}
