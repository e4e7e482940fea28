//! Load shedding on `POST /api/v1/chat/completions`: a worker that is running late with its
//! own work answers new chats 503 `gateway_overloaded` with `Retry-After`, and serves them
//! again once the load is gone.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use serde_json::Value;
use tokio::sync::Mutex;

use crate::market::{ask, spawn_market_app_with};

const MODEL: &str = "llama-3.3-70b";
/// Clients sending chats back to back: far more than one worker of a debug build keeps up
/// with at 1 ms of lateness.
const CLIENTS: usize = 64;

/// A turned-away answer: its `Retry-After` and its body.
type Shed = (Option<String>, Value);

#[tokio::test]
async fn an_overloaded_worker_turns_chats_away_at_once_then_serves_them_again() {
    let app = spawn_market_app_with(|s| s.chat_shed_lateness_ms = 1).await;
    let user = app.seed_automated_user().await;
    // Opens the key's session, and starts the worker's lateness probe.
    assert_eq!(
        app.chat(&user.api_key, &ask(MODEL, "warm up"))
            .await
            .status(),
        200
    );

    let url = app.url("/api/v1/chat/completions");
    let shed = Arc::new(AtomicBool::new(false));
    let first_shed: Arc<Mutex<Option<Shed>>> = Arc::default();
    let deadline = Instant::now() + Duration::from_secs(20);
    let clients: Vec<_> = (0..CLIENTS)
        .map(|i| {
            let (client, url, key) = (app.client.clone(), url.clone(), user.api_key.clone());
            let (shed, first_shed) = (shed.clone(), first_shed.clone());
            tokio::spawn(async move {
                let mut statuses = Vec::new();
                while !shed.load(Ordering::Relaxed) && Instant::now() < deadline {
                    let r = client
                        .post(&url)
                        .bearer_auth(&key)
                        .json(&ask(MODEL, &format!("client {i}")))
                        .send()
                        .await
                        .expect("an answer, not a broken connection");
                    let status = r.status().as_u16();
                    statuses.push(status);
                    if status == 503 {
                        let retry_after = r
                            .headers()
                            .get("retry-after")
                            .map(|v| v.to_str().unwrap().to_owned());
                        let body: Value = r.json().await.expect("a JSON body");
                        first_shed.lock().await.get_or_insert((retry_after, body));
                        shed.store(true, Ordering::Relaxed);
                    }
                }
                statuses
            })
        })
        .collect();
    let mut statuses = Vec::new();
    for client in clients {
        statuses.extend(client.await.unwrap());
    }

    assert!(
        shed.load(Ordering::Relaxed),
        "none of {} chats was turned away",
        statuses.len()
    );
    assert!(
        statuses.iter().all(|s| *s == 200 || *s == 503),
        "only 200 and 503 answers: {statuses:?}"
    );
    let (retry_after, body) = first_shed.lock().await.take().unwrap();
    assert_eq!(retry_after.as_deref(), Some("1"));
    assert_eq!(body["error"]["code"], "gateway_overloaded", "{body}");
    assert_eq!(body["error"]["type"], "server_error", "{body}");

    // Once the load is gone, chats are served again.
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let r = app.chat(&user.api_key, &ask(MODEL, "after")).await;
        if r.status() == 200 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "still {} after the load",
            r.status()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}
