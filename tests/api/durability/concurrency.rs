//! F3: concurrency correctness, in the normal suite on both backends. Exactly-once refresh
//! under 20 concurrent consumptions is `tokens::concurrent_refreshes_of_one_token_rotate_exactly_once`;
//! the usage writer's own 1,000-record check is in the storage crate (`usage.rs`).

use std::time::{Duration, Instant};

use futures_util::future::join_all;
use morpheus_gateway::configuration::Settings;
use reqwest::{Method, RequestBuilder};
use serde_json::{Value, json};

use super::env_number;
use crate::helpers::{Seeded, TestApp, spawn_app_with};
use crate::market::{ask, spawn_market_app_with};

const WRITERS: usize = 64;
const WALLET_KEY: &str = "0x4c0883a69102937d6231471b5dbb6204fe5129617082792ae468d01a3f362318";

/// Every writer comes from 127.0.0.1: lift the per-client throttles.
fn unthrottled(s: &mut Settings) {
    s.registrations_per_client = 1_000_000;
    // Each writer makes a key per round: a fast one makes more than a day's default.
    s.key_creations_per_day = 1_000_000;
    s.login_attempts_per_client = 1_000_000;
    s.password_hash_queue_ms = 60_000;
}

/// One write as the client saw it.
struct Write {
    took: Duration,
    status: u16,
    body: String,
}

async fn timed(request: RequestBuilder) -> Write {
    let started = Instant::now();
    let r = request.send().await.expect("the gateway answers");
    let status = r.status().as_u16();
    let body = r.text().await.unwrap_or_default();
    Write {
        took: started.elapsed(),
        status,
        body,
    }
}

/// Writes as one user until `deadline`: a key, its revocation, a refresh rotation, the
/// automation settings and the wallet key, over and over.
async fn write_until(app: &TestApp, mut user: Seeded, deadline: Instant) -> Vec<Write> {
    let mut writes = Vec::new();
    let authed = |method: Method, path: &str, token: &str| {
        app.client.request(method, app.url(path)).bearer_auth(token)
    };
    while Instant::now() < deadline {
        let created = timed(
            authed(Method::POST, "/api/v1/auth/keys", &user.access).json(&json!({"name": "f3"})),
        )
        .await;
        let prefix = serde_json::from_str::<Value>(&created.body).unwrap_or_default()["key_prefix"]
            .as_str()
            .map(str::to_owned);
        writes.push(created);
        let listed: Value = app.get_json("/api/v1/auth/keys", &user.access).await;
        let id = listed.as_array().and_then(|keys| {
            keys.iter()
                .find(|k| prefix.as_deref() == k["key_prefix"].as_str())
                .and_then(|k| k["id"].as_i64())
        });
        if let Some(id) = id {
            let path = format!("/api/v1/auth/keys/{id}");
            writes.push(timed(authed(Method::DELETE, &path, &user.access)).await);
        }
        let rotated = timed(
            app.client
                .post(app.url("/api/v1/auth/refresh"))
                .json(&json!({"refresh_token": user.refresh})),
        )
        .await;
        let tokens = serde_json::from_str::<Value>(&rotated.body).unwrap_or_default();
        if let (Some(access), Some(refresh)) = (
            tokens["access_token"].as_str(),
            tokens["refresh_token"].as_str(),
        ) {
            (user.access, user.refresh) = (access.to_owned(), refresh.to_owned());
        }
        writes.push(rotated);
        writes.push(
            timed(
                authed(Method::PUT, "/api/v1/automation/settings", &user.api_key)
                    .json(&json!({"is_enabled": true})),
            )
            .await,
        );
        writes.push(
            timed(
                authed(Method::POST, "/api/v1/auth/private-key", &user.access)
                    .json(&json!({"private_key": WALLET_KEY})),
            )
            .await,
        );
    }
    writes
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    let rank = (p * (sorted.len() as f64 - 1.0)).round();
    sorted[usize::try_from(rank as u64)
        .unwrap_or(0)
        .min(sorted.len() - 1)]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sixty_four_concurrent_writers_meet_no_lock_error_and_no_5xx() {
    let app = spawn_app_with(unthrottled).await;
    let users = join_all((0..WRITERS).map(|_| app.seed_user())).await;
    let seconds = env_number("DURABILITY_F3_SECONDS", 10);
    let deadline = Instant::now() + Duration::from_secs(seconds);
    let writes: Vec<Write> = join_all(users.into_iter().map(|u| write_until(&app, u, deadline)))
        .await
        .into_iter()
        .flatten()
        .collect();

    let busy = writes
        .iter()
        // SQLite's lock timeout reaches clients as a 503 (storage maps it like an outage);
        // the text of a failed write is checked too in case that mapping regresses to a 500
        // that names it. Not a successful one's: its random key or tokens may spell "busy".
        .filter(|w| {
            w.status == 503
                || (w.status >= 300 && (w.body.contains("locked") || w.body.contains("busy")))
        })
        .count();
    let server_errors: Vec<String> = writes
        .iter()
        .filter(|w| w.status >= 500)
        .map(|w| format!("{} {}", w.status, w.body))
        .collect();
    let failed = writes.iter().filter(|w| w.status >= 300).count();
    let mut took: Vec<Duration> = writes.iter().map(|w| w.took).collect();
    took.sort();
    println!(
        "F3 {WRITERS} writers for {seconds} s on {}: {} writes, {busy} busy, {} 5xx, {failed} \
         non-2xx, write latency p50 {:?} p99 {:?} max {:?}",
        if app.is_postgres() {
            "PostgreSQL"
        } else {
            "SQLite"
        },
        writes.len(),
        server_errors.len(),
        percentile(&took, 0.50),
        percentile(&took, 0.99),
        took.last().copied().unwrap_or_default()
    );
    assert!(writes.len() > WRITERS * 5, "only {} writes", writes.len());
    assert_eq!(busy, 0);
    assert!(server_errors.is_empty(), "{server_errors:#?}");
    let refused: Vec<String> = writes
        .iter()
        .filter(|w| w.status >= 300)
        .map(|w| format!("{} {}", w.status, w.body))
        .collect();
    assert_eq!(
        failed, 0,
        "every write was the user's own and valid: {refused:#?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_thousand_concurrent_completions_on_one_key_are_all_counted() {
    // A thousand connections from one address: lift the per-client connection cap.
    // The pool serves them eight at a time: all of them may wait.
    let app = spawn_market_app_with(|s| {
        s.max_connections_per_client = 10_000;
        s.pool_queue_depth = 1_000;
        // Billing off: this counts usage records. Billed, a thousand requests of one user
        // queue on their balance row (see billing.rs for what holds guarantee).
        s.billing = false;
    })
    .await;
    let user = app.seed_automated_user().await;
    let (app, key) = (&app, user.api_key.as_str());
    let answers = join_all((0..1_000).map(|n| async move {
        let r = app
            .chat(key, &ask("llama-3.3-70b", &format!("question {n}")))
            .await;
        (
            r.status().as_u16(),
            r.json::<Value>().await.unwrap_or_default(),
        )
    }))
    .await;
    let statuses: Vec<u16> = answers.iter().map(|(s, _)| *s).collect();
    assert!(statuses.iter().all(|&s| s == 200), "{statuses:?}");
    let reported = |field: &str| -> i64 {
        answers
            .iter()
            .map(|(_, body)| {
                body["usage"][field]
                    .as_i64()
                    .expect("usage in every answer")
            })
            .sum()
    };
    let (prompt, completion) = (reported("prompt_tokens"), reported("completion_tokens"));

    // The usage writer batches off the request path: give it time to drain.
    let user_filter = format!("FROM usage_records WHERE user_id = {}", user.id);
    let deadline = Instant::now() + Duration::from_secs(30);
    while app.count(&format!("SELECT COUNT(*) AS n {user_filter}")) < 1_000
        && Instant::now() < deadline
    {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let records = app.count(&format!("SELECT COUNT(*) AS n {user_filter}"));
    let stored = |field: &str| {
        app.count(&format!(
            "SELECT CAST(COALESCE(SUM({field}), 0) AS BIGINT) AS n {user_filter}"
        ))
    };
    println!(
        "F3 1,000 concurrent completions on one key: {records} usage records, prompt tokens \
         {} of {prompt}, completion tokens {} of {completion}",
        stored("prompt_tokens"),
        stored("completion_tokens")
    );
    assert_eq!(records, 1_000, "lost or doubled usage records");
    assert_eq!(stored("prompt_tokens"), prompt);
    assert_eq!(stored("completion_tokens"), completion);
}
