//! Request ids, `/ready`, `/metrics`, the key cache across replicas, and the hot path without
//! the database.

use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::helpers::spawn_app;
use crate::market::{ask, spawn_market_app, spawn_market_app_with};
use crate::models::LLAMA_ID;
use crate::process::GatewayProcess;

const MODEL: &str = "llama-3.3-70b";

#[tokio::test]
async fn a_request_id_is_returned_and_sent_to_the_proxy_router() {
    let app = spawn_market_app().await;
    let user = app.seed_automated_user().await;

    // None given: the gateway makes one (a UUID) and returns it.
    let r = app.chat(&user.api_key, &ask(MODEL, "hello")).await;
    assert_eq!(r.status(), 200);
    let made = r.headers()["x-request-id"].to_str().unwrap().to_owned();
    assert!(uuid::Uuid::parse_str(&made).is_ok(), "{made}");
    assert_eq!(
        app.sim.counters().last_chat_request_id.as_deref(),
        Some(made.as_str())
    );

    // A sensible one is kept, end to end.
    let r = app
        .client
        .post(app.url("/api/v1/chat/completions"))
        .bearer_auth(&user.api_key)
        .header("x-request-id", "trace-42.a:b")
        .json(&ask(MODEL, "hello"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.headers()["x-request-id"], "trace-42.a:b");
    assert_eq!(
        app.sim.counters().last_chat_request_id.as_deref(),
        Some("trace-42.a:b")
    );

    // One that could pollute a log line or a header is replaced; errors carry ids too.
    let r = app
        .client
        .get(app.url("/api/v1/auth/me"))
        .header("x-request-id", "x".repeat(200))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
    let replaced = r.headers()["x-request-id"].to_str().unwrap();
    assert!(uuid::Uuid::parse_str(replaced).is_ok(), "{replaced}");
}

#[tokio::test]
async fn ready_needs_the_database_and_the_proxy_router_while_health_only_needs_the_process() {
    let app = spawn_market_app().await;
    let r = app.client.get(app.url("/ready")).send().await.unwrap();
    assert_eq!(r.status(), 200);
    let body: Value = r.json().await.unwrap();
    assert_eq!(body["status"], "ready");
    assert_eq!(body["database"], "healthy");
    assert_eq!(body["marketplace"], "healthy");

    // A flood of probes is not passed on: they share one check, reused for a second.
    let before = app.quiet_sim().await;
    let statuses = futures_util::future::join_all(
        (0..30).map(|_| async { app.client.get(app.url("/ready")).send().await.unwrap() }),
    )
    .await
    .iter()
    .map(|r| r.status().as_u16())
    .collect::<Vec<_>>();
    assert!(statuses.iter().all(|&s| s == 200), "{statuses:?}");
    let asked = app.sim.counters().requests - before;
    // At most one check (the first probe may still be in its reuse window); one more
    // request leaves room for a background call of the gateway's own.
    assert!(asked <= 2, "30 probes asked the proxy-router {asked} times");

    app.sim.shutdown();
    // The last check answers for up to a second.
    tokio::time::sleep(morpheus_api::readiness::REUSE_FOR).await;
    let r = app.client.get(app.url("/ready")).send().await.unwrap();
    assert_eq!(r.status(), 503);
    let body: Value = r.json().await.unwrap();
    assert_eq!(body["status"], "unavailable");
    assert_eq!(body["marketplace"], "unhealthy");
    let r = app.client.get(app.url("/health")).send().await.unwrap();
    assert_eq!(r.status(), 200);

    // No proxy-router configured at all: alive, not ready.
    let bare = spawn_app().await;
    let r = bare.client.get(bare.url("/ready")).send().await.unwrap();
    assert_eq!(r.status(), 503);
    let body: Value = r.json().await.unwrap();
    assert_eq!(body["marketplace"], "not_configured");
}

/// The value of the first sample line starting with `series` (name and labels).
fn sample(exposition: &str, series: &str) -> Option<f64> {
    exposition
        .lines()
        .find(|line| line.starts_with(series))
        .and_then(|line| line.rsplit(' ').next())
        .and_then(|value| value.parse().ok())
}

#[tokio::test]
async fn metrics_count_requests_upstream_calls_sessions_streams_and_overhead() {
    let app = spawn_market_app().await;
    let user = app.seed_automated_user().await;
    for _ in 0..3 {
        assert_eq!(
            app.chat(&user.api_key, &ask(MODEL, "one two"))
                .await
                .status(),
            200
        );
    }
    let mut streaming = ask(MODEL, "a b c");
    streaming["stream"] = json!(true);
    let r = app.chat(&user.api_key, &streaming).await;
    assert_eq!(r.status(), 200);
    r.text().await.unwrap();
    app.client
        .get(app.url("/nowhere/at/all"))
        .send()
        .await
        .unwrap();

    let r = app.client.get(app.url("/metrics")).send().await.unwrap();
    assert_eq!(r.status(), 200);
    assert!(
        r.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("application/openmetrics-text")
    );
    let text = r.text().await.unwrap();
    let chat_ok = r#"morpheus_http_requests_total{operation="/api/v1/chat/completions",method="POST",status="200"}"#;
    assert_eq!(sample(&text, chat_ok), Some(4.0), "{text}");
    // Unknown paths share one label: a scanner cannot blow up the series count.
    assert_eq!(
        sample(
            &text,
            r#"morpheus_http_requests_total{operation="unmatched",method="GET",status="404"}"#
        ),
        Some(1.0)
    );
    assert_eq!(
        sample(
            &text,
            r#"morpheus_upstream_request_duration_seconds_count{call="chat"}"#
        ),
        Some(4.0)
    );
    assert_eq!(
        sample(
            &text,
            r#"morpheus_upstream_request_duration_seconds_count{call="open_bid_session"}"#
        ),
        Some(1.0)
    );
    assert_eq!(
        sample(&text, "morpheus_gateway_overhead_seconds_count"),
        Some(4.0)
    );
    let overhead = sample(&text, "morpheus_gateway_overhead_seconds_sum").unwrap();
    let total = sample(
        &text,
        r#"morpheus_http_request_duration_seconds_sum{operation="/api/v1/chat/completions"}"#,
    )
    .unwrap();
    assert!(
        overhead > 0.0 && overhead < total,
        "overhead {overhead} of {total}"
    );
    assert_eq!(sample(&text, "morpheus_active_streams"), Some(0.0));
    assert_eq!(sample(&text, "morpheus_open_sessions"), Some(1.0));
    assert_eq!(sample(&text, "morpheus_db_pool_max_connections"), Some(4.0));
    assert!(sample(&text, r#"morpheus_db_pool_connections{state="idle"}"#).is_some());
    // The pool: one session opened by the first request, every later one served at once.
    let pool = |state: &str| {
        sample(
            &text,
            &format!(r#"morpheus_session_pool{{model="{LLAMA_ID}",state="{state}"}}"#),
        )
    };
    assert_eq!(pool("idle"), Some(1.0), "{text}");
    assert_eq!(pool("busy"), Some(0.0));
    assert_eq!(pool("active"), Some(1.0));
    assert_eq!(pool("leased"), Some(1.0));
    assert_eq!(
        sample(
            &text,
            r#"morpheus_session_pool_claims_total{outcome="queued"}"#
        ),
        Some(1.0)
    );
    assert_eq!(
        sample(
            &text,
            r#"morpheus_session_pool_claims_total{outcome="immediate"}"#
        ),
        Some(3.0)
    );
    assert_eq!(
        sample(
            &text,
            r#"morpheus_session_pool_acquisitions_total{outcome="ok"}"#
        ),
        Some(1.0)
    );
    assert_eq!(
        sample(&text, "morpheus_session_pool_queue_wait_seconds_count"),
        Some(1.0)
    );
    // The best-rated bid accepted at once: one step of the walk.
    assert_eq!(
        sample(&text, "morpheus_session_pool_bid_walk_steps_total"),
        Some(1.0)
    );
}

#[tokio::test]
async fn a_metrics_token_guards_the_exposition() {
    let token = "metrics-token-0123456789";
    let app = spawn_market_app_with(|s| {
        s.metrics_token = Some(morpheus_gateway::secrets::secret(token));
    })
    .await;
    let r = app.client.get(app.url("/metrics")).send().await.unwrap();
    crate::helpers::error_body(r, 401).await;
    let r = app
        .client
        .get(app.url("/metrics"))
        .bearer_auth("metrics-token-0123456780")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
    let r = app
        .client
        .get(app.url("/metrics"))
        .bearer_auth(token)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert!(
        r.text()
            .await
            .unwrap()
            .contains("morpheus_http_requests_total")
    );
}

#[tokio::test]
async fn metrics_can_have_a_listener_of_their_own() {
    let app = spawn_market_app_with(|s| s.metrics_bind = Some("127.0.0.1:0".to_owned())).await;
    let r = app.client.get(app.url("/metrics")).send().await.unwrap();
    crate::helpers::error_body(r, 404).await;
    let port = app.metrics_port.expect("a metrics listener");
    let r = app
        .client
        .get(format!("http://127.0.0.1:{port}/metrics"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert!(r.text().await.unwrap().contains("# EOF"));
}

/// Two processes on one database: the key cache of the one that did not revoke the key learns
/// it from the revocation log.
#[tokio::test]
async fn a_key_revoked_on_one_replica_is_refused_by_another_within_a_second() {
    let app = spawn_market_app().await;
    let user = app.seed_automated_user().await;
    let other = GatewayProcess::beside(&app, &[]).await;
    let settings_on = |base: String| {
        let client = app.client.clone();
        let key = user.api_key.clone();
        async move {
            client
                .get(format!("{base}/api/v1/automation/settings"))
                .bearer_auth(&key)
                .send()
                .await
                .unwrap()
                .status()
        }
    };
    // Both replicas have seen (and cached) the key.
    assert_eq!(settings_on(app.address.clone()).await, 200);
    assert_eq!(settings_on(other.address.clone()).await, 200);
    assert_eq!(settings_on(other.address.clone()).await, 200);

    let keys = app.get_json("/api/v1/auth/keys", &user.access).await;
    let id = keys[0]["id"].as_i64().unwrap();
    let revoked_at = Instant::now();
    let r = app
        .delete(&format!("/api/v1/auth/keys/{id}"), &user.access)
        .await;
    assert_eq!(r.status(), 200);
    // The replica that revoked it refuses it from the next request on.
    assert_eq!(settings_on(app.address.clone()).await, 401);
    // The other one within a second.
    let refused_after = loop {
        let status = settings_on(other.address.clone()).await;
        if status == 401 {
            break revoked_at.elapsed();
        }
        assert_eq!(status, 200);
        assert!(
            revoked_at.elapsed() < Duration::from_secs(3),
            "still accepted after 3 s"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    };
    println!("revocation reached the other replica after {refused_after:?}");
    assert!(refused_after <= Duration::from_secs(1), "{refused_after:?}");
}

/// Once a key and its session are warm, chat needs no database: with PostgreSQL refusing
/// every connection, requests still succeed, and their usage records are written once it is
/// back (nothing lost). PostgreSQL only: SQLite is a file with no server to take away.
/// Billing off: a billed chat holds and settles credit in the ledger, in the database.
#[tokio::test]
async fn a_warm_chat_request_needs_no_database_round_trip() {
    let app = spawn_market_app_with(|s| s.billing = false).await;
    let crate::helpers::TestDatabase::Postgres {
        admin_url, name, ..
    } = &app.db
    else {
        return;
    };
    let user = app.seed_automated_user().await;
    for _ in 0..3 {
        assert_eq!(
            app.chat(&user.api_key, &ask(MODEL, "warm up"))
                .await
                .status(),
            200
        );
    }
    assert_eq!(app.wait_for_usage(user.id, 3).await, 3);
    let admin = |sql: String| {
        use diesel::{Connection, RunQueryDsl};
        let mut admin = diesel::PgConnection::establish(admin_url).unwrap();
        diesel::sql_query(sql).execute(&mut admin).unwrap();
    };
    admin(format!("ALTER DATABASE \"{name}\" ALLOW_CONNECTIONS false"));
    admin(format!(
        "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = '{name}'"
    ));
    let started = Instant::now();
    for _ in 0..10 {
        let r = app.chat(&user.api_key, &ask(MODEL, "no database")).await;
        assert_eq!(r.status(), 200, "{}", r.text().await.unwrap());
    }
    let took = started.elapsed();
    // The cache stops being trusted 2 s after the revocation log was last read.
    assert!(took < Duration::from_millis(1500), "{took:?}");
    admin(format!("ALTER DATABASE \"{name}\" ALLOW_CONNECTIONS true"));
    assert_eq!(
        app.wait_for_usage(user.id, 13).await,
        13,
        "no usage record lost"
    );
}
