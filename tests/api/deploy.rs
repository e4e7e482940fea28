//! `deploy/`, run: three replicas started from the systemd unit, behind nginx rendered from
//! its template, on one PostgreSQL database.

use std::time::{Duration, Instant};

use futures_util::StreamExt;
use serde_json::{Value, json};

use crate::market::{ask, spawn_market_app};
use crate::replicas::Replicas;

/// Requests a replica answered for `operation`, from its metrics.
async fn served(client: &reqwest::Client, base: &str, token: &str, operation: &str) -> f64 {
    let text = client
        .get(format!("{base}/metrics"))
        .bearer_auth(token)
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let prefix = format!("morpheus_http_requests_total{{operation=\"{operation}\",");
    text.lines()
        .filter(|l| l.starts_with(&prefix))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

#[tokio::test]
async fn three_replicas_behind_nginx_share_the_load_stream_unbuffered_and_survive_a_loss() {
    let app = spawn_market_app().await;
    // Replicas of one deployment share a PostgreSQL database (SQLite is one process's file).
    if !app.is_postgres() {
        return;
    }
    let mut replicas = Replicas::start(&app.settings, 3, &[]).await;
    let client = &app.client;

    // Signed up, logged in and given a key through nginx: whichever replica answers, the
    // others accept what it issued.
    let (_, access) = replicas.sign_up(client).await;
    for _ in 0..30 {
        let r = client
            .get(replicas.url("/api/v1/auth/me"))
            .bearer_auth(&access)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200);
    }
    let mut counts = Vec::new();
    for gateway in &replicas.gateways {
        counts.push(
            served(
                client,
                &gateway.address,
                &replicas.metrics_token,
                "/api/v1/auth/me",
            )
            .await,
        );
    }
    assert_eq!(counts.iter().sum::<f64>(), 30.0, "{counts:?}");
    assert!(
        counts.iter().all(|n| *n >= 5.0),
        "spread over the replicas: {counts:?}"
    );

    // A stream passes through as it is produced, not buffered by nginx.
    let key: Value = client
        .post(replicas.url("/api/v1/auth/keys"))
        .bearer_auth(&access)
        .json(&json!({"name": "replicas"}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let key = key["key"].as_str().unwrap().to_owned();
    let r = client
        .put(replicas.url("/api/v1/automation/settings"))
        .bearer_auth(&key)
        .json(&json!({"is_enabled": true}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    app.sim.set_chunk_delay(Duration::from_millis(150));
    let mut body = ask("llama-3.3-70b", "one two three four five six");
    body["stream"] = json!(true);
    let started = Instant::now();
    let r = client
        .post(replicas.url("/api/v1/chat/completions"))
        .bearer_auth(&key)
        .json(&body)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let mut chunks = r.bytes_stream();
    let first = chunks.next().await.expect("a first chunk").unwrap();
    let first_at = started.elapsed();
    let mut rest = Vec::new();
    while let Some(chunk) = chunks.next().await {
        rest.extend_from_slice(&chunk.unwrap());
    }
    let done_at = started.elapsed();
    assert!(String::from_utf8_lossy(&first).starts_with("data: "));
    assert!(String::from_utf8_lossy(&rest).ends_with("data: [DONE]\n\n"));
    assert!(
        done_at - first_at >= Duration::from_millis(600),
        "the first event came {first_at:?} in, the end {done_at:?}: buffered?"
    );

    // One replica dies: nginx sends the next requests to the others.
    let lost = replicas.gateways.remove(0);
    drop(lost);
    for _ in 0..20 {
        let r = client
            .get(replicas.url("/api/v1/auth/me"))
            .bearer_auth(&access)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200);
    }
}
