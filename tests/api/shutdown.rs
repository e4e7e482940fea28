//! Graceful shutdown of the real process: SIGTERM or SIGINT lets streams finish, writes what
//! is batched, refuses new connections and exits 0; a stream that outlives the grace period
//! ends with an error event rather than a silent cut.

use std::time::{Duration, Instant};

use futures_util::StreamExt;
use serde_json::{Value, json};

use crate::helpers::seed_user_at;
use crate::market::{MarketApp, ask, set_automation_at, spawn_market_app};
use crate::process::GatewayProcess;

const MODEL: &str = "llama-3.3-70b";

/// A user with an API key and automation on, made through the process's own API.
async fn automated_key(app: &MarketApp, gateway: &GatewayProcess) -> (i64, String) {
    let user = seed_user_at(&app.client, &gateway.address).await;
    set_automation_at(&app.client, &gateway.address, &user.api_key, true).await;
    (user.id, user.api_key)
}

/// A streamed question of `words` words: the simulator answers one word per event.
fn long_question(words: usize) -> Value {
    let text = vec!["word"; words].join(" ");
    let mut body = ask(MODEL, &text);
    body["stream"] = json!(true);
    body
}

/// Reads a whole SSE body: the `data:` payloads in order.
async fn read_events(response: reqwest::Response) -> Vec<String> {
    let mut body = response.bytes_stream();
    let mut text = String::new();
    while let Some(chunk) = body.next().await {
        match chunk {
            Ok(bytes) => text.push_str(&String::from_utf8_lossy(&bytes)),
            Err(_) => break,
        }
    }
    text.split("\n\n")
        .filter_map(|frame| frame.strip_prefix("data: "))
        .map(str::to_owned)
        .collect()
}

/// A gateway process with `grace` seconds of shutdown grace, beside a simulator sending one
/// event every `delay`, and a stream of `words` + 1 events already under way through it.
struct StreamUnderWay {
    app: MarketApp,
    gateway: GatewayProcess,
    user_id: i64,
    response: reqwest::Response,
}

async fn stream_under_way(delay: Duration, grace: &str, words: usize) -> StreamUnderWay {
    let app = spawn_market_app().await;
    app.sim.set_chunk_delay(delay);
    let gateway = GatewayProcess::beside(&app, &[("MORPHEUS_SHUTDOWN_GRACE_SECONDS", grace)]).await;
    let (user_id, key) = automated_key(&app, &gateway).await;
    let response = app
        .client
        .post(gateway.url("/api/v1/chat/completions"))
        .bearer_auth(&key)
        .json(&long_question(words))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    StreamUnderWay {
        app,
        gateway,
        user_id,
        response,
    }
}

async fn drains_on(signal: &str) {
    // ~41 events at 50 ms: about two seconds of stream, against 10 s of grace.
    let StreamUnderWay {
        app,
        mut gateway,
        user_id,
        response,
    } = stream_under_way(Duration::from_millis(50), "10", 40).await;
    let signalled = Instant::now();
    gateway.signal(signal);

    // No new connections once draining has begun.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let fresh = reqwest::Client::new()
        .get(gateway.url("/health"))
        .timeout(Duration::from_secs(2))
        .send()
        .await;
    assert!(
        fresh.is_err(),
        "a new connection was accepted while draining"
    );

    let events = read_events(response).await;
    assert_eq!(
        events.last().map(String::as_str),
        Some("[DONE]"),
        "{events:?}"
    );
    assert!(events.len() >= 40, "{} events", events.len());
    assert!(
        !events.iter().any(|e| e.contains("\"error\"")),
        "{events:?}"
    );

    let code = gateway.wait_exit(Duration::from_secs(15)).await;
    let exited_after = signalled.elapsed();
    assert_eq!(code, Some(0), "exit code after {signal}");
    println!("{signal}: the stream finished and the process exited 0 after {exited_after:?}");
    let logs = gateway.drain_logs().join("\n");
    assert!(logs.contains(&format!("SIG{signal}")), "{logs}");
    assert!(logs.contains("\"stopped\""), "{logs}");
    // The stream's usage record was flushed before exit.
    let completed = app.count(&format!(
        "SELECT COUNT(*) AS n FROM usage_records WHERE user_id = {user_id} AND outcome = 'completed' AND stream"
    ));
    assert_eq!(completed, 1);
    // And so was the key's last use (written in batches).
    let used = app.count(&format!(
        "SELECT COUNT(*) AS n FROM api_keys WHERE user_id = {user_id} AND last_used_at IS NOT NULL"
    ));
    assert_eq!(used, 1);
}

#[tokio::test]
async fn sigterm_lets_a_stream_finish_flushes_its_usage_and_exits_0() {
    drains_on("TERM").await;
}

#[tokio::test]
async fn sigint_drains_the_same_way() {
    drains_on("INT").await;
}

#[tokio::test]
async fn a_stream_longer_than_the_grace_period_ends_with_an_error_event() {
    // ~10 s of stream against 2 s of grace.
    let StreamUnderWay {
        app,
        mut gateway,
        user_id,
        response,
    } = stream_under_way(Duration::from_millis(100), "2", 100).await;
    let signalled = Instant::now();
    gateway.signal("TERM");
    let events = read_events(response).await;
    let last = events.last().cloned().unwrap_or_default();
    let error: Value = serde_json::from_str(&last).unwrap_or(Value::Null);
    assert_eq!(
        error["error"]["code"], "gateway_shutting_down",
        "{events:?}"
    );
    assert!(!events.iter().any(|e| e == "[DONE]"));
    let code = gateway.wait_exit(Duration::from_secs(10)).await;
    let exited_after = signalled.elapsed();
    assert_eq!(code, Some(0));
    assert!(exited_after < Duration::from_secs(4), "{exited_after:?}");
    let incomplete = app.count(&format!(
        "SELECT COUNT(*) AS n FROM usage_records WHERE user_id = {user_id} AND outcome = 'incomplete'"
    ));
    assert_eq!(incomplete, 1);
}

#[tokio::test]
async fn a_sighup_without_files_to_re_read_is_logged_and_ends_nothing() {
    let app = spawn_market_app().await;
    let mut gateway = GatewayProcess::beside(&app, &[]).await;
    gateway.signal("HUP");
    tokio::time::sleep(Duration::from_millis(300)).await;
    let health = app.client.get(gateway.url("/health")).send().await.unwrap();
    assert_eq!(health.status(), 200, "still serving after SIGHUP");
    assert_eq!(
        gateway.wait_exit(Duration::from_millis(10)).await,
        None,
        "still running"
    );
    let logs = gateway.drain_logs().join("\n");
    assert!(
        logs.contains("no pricing or providers file to re-read"),
        "{logs}"
    );
}
