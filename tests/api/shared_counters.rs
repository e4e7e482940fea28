//! The counters shared through Redis, seen from the HTTP side: replicas on one Redis share
//! the login and registration limits; a Redis that is down lets requests through (fail-open)
//! or refuses them with `Retry-After` (fail-closed), never a 500.
//!
//! The tests that need a Redis run when `MORPHEUS_TEST_REDIS_URL` names one (`.ci/run` sets
//! it), and are skipped with a note otherwise; the dead-Redis tests always run.

use serde_json::Value;

use crate::helpers::{PASSWORD, TestApp, error_body, spawn_app_with, unique_email};

const REDIS_ENV: &str = "MORPHEUS_TEST_REDIS_URL";

fn redis_url(test: &str) -> Option<String> {
    let url = std::env::var(REDIS_ENV).ok().filter(|u| !u.is_empty());
    if url.is_none() {
        eprintln!("{test}: skipped, {REDIS_ENV} is not set");
    }
    url
}

/// Deletes the keys a test wrote under its prefix.
pub async fn forget(url: &str, prefix: &str) {
    let mut conn = redis::Client::open(url)
        .unwrap()
        .get_multiplexed_async_connection()
        .await
        .unwrap();
    let keys: Vec<String> = redis::cmd("KEYS")
        .arg(format!("{prefix}*"))
        .query_async(&mut conn)
        .await
        .unwrap();
    if !keys.is_empty() {
        let _: () = redis::cmd("DEL")
            .arg(keys)
            .query_async(&mut conn)
            .await
            .unwrap();
    }
}

/// Two gateways on one Redis, under a key prefix of their own, with a limit of 3 logins per
/// account and address, and of 3 registrations per address, in windows of three days (so
/// none turns during the test).
async fn two_replicas(url: &str, prefix: &str) -> (TestApp, TestApp) {
    let replica = || {
        spawn_app_with(|s| {
            s.redis_url = Some(url.to_owned());
            s.redis_key_prefix = prefix.to_owned();
            s.registrations_per_client = 3;
            s.registration_client_refill_seconds = 86_400;
            s.login_attempts_per_account_client = 3;
            s.login_account_client_refill_seconds = 86_400;
        })
    };
    (replica().await, replica().await)
}

#[tokio::test]
async fn replicas_on_one_redis_share_the_registration_limit() {
    let Some(url) = redis_url("replicas_share_registrations") else {
        return;
    };
    let prefix = format!("morpheus-test:{}:", uuid::Uuid::new_v4().simple());
    let (a, b) = two_replicas(&url, &prefix).await;
    assert_eq!(a.register(&unique_email(), PASSWORD).await.status(), 201);
    assert_eq!(b.register(&unique_email(), PASSWORD).await.status(), 201);
    assert_eq!(a.register(&unique_email(), PASSWORD).await.status(), 201);
    for app in [&a, &b] {
        let r = app.register(&unique_email(), PASSWORD).await;
        assert!(r.headers().contains_key("retry-after"));
        error_body(r, 429).await;
    }
    forget(&url, &prefix).await;
}

#[tokio::test]
async fn replicas_on_one_redis_share_the_login_limit_of_an_account_and_address() {
    let Some(url) = redis_url("replicas_share_logins") else {
        return;
    };
    let prefix = format!("morpheus-test:{}:", uuid::Uuid::new_v4().simple());
    let (a, b) = two_replicas(&url, &prefix).await;
    let email = unique_email();
    for (i, app) in [&a, &b, &a].into_iter().enumerate() {
        let r = app.login(&email, "a wrong password").await;
        assert_eq!(r.status(), 401, "attempt {i}");
    }
    for app in [&a, &b] {
        let r = app.login(&email, "a wrong password").await;
        assert!(r.headers().contains_key("retry-after"));
        error_body(r, 429).await;
    }
    forget(&url, &prefix).await;
}

/// Nothing listens on port 1.
const DEAD_REDIS: &str = "redis://127.0.0.1:1";

async fn metrics(app: &TestApp) -> String {
    let r = app.client.get(app.url("/metrics")).send().await.unwrap();
    assert_eq!(r.status(), 200);
    r.text().await.unwrap()
}

#[tokio::test]
async fn with_redis_down_fail_open_keeps_serving_under_each_replica_s_own_limits() {
    let app = spawn_app_with(|s| {
        s.redis_url = Some(DEAD_REDIS.to_owned());
        s.registrations_per_client = 2;
    })
    .await;
    // Redis is down: each process's own limiter decides.
    for _ in 0..2 {
        assert_eq!(app.register(&unique_email(), PASSWORD).await.status(), 201);
    }
    error_body(app.register(&unique_email(), PASSWORD).await, 429).await;
    let text = metrics(&app).await;
    assert!(
        text.contains(r#"morpheus_counter_fallbacks_total{decision="allowed"}"#),
        "{text}"
    );
    assert!(text.contains("morpheus_counter_breaker_open 1"), "{text}");
    // One failure per cooldown at most (a probe after each); how many depends on the pace.
    assert!(
        text.contains("morpheus_counter_store_failures_total "),
        "{text}"
    );
}

#[tokio::test]
async fn with_redis_down_fail_closed_refuses_with_retry_after_never_a_500() {
    let app = spawn_app_with(|s| {
        s.redis_url = Some(DEAD_REDIS.to_owned());
        s.limits_fail_closed = true;
    })
    .await;
    for _ in 0..3 {
        let r = app.register(&unique_email(), PASSWORD).await;
        assert!(r.headers().contains_key("retry-after"));
        let body: Value = error_body(r, 429).await;
        assert!(body.is_object());
    }
    let text = metrics(&app).await;
    assert!(
        text.contains(r#"morpheus_counter_fallbacks_total{decision="refused"} 3"#),
        "{text}"
    );
}
