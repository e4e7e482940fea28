//! Load shedding on `POST /api/v1/chat/completions`: a worker that is running late with its
//! own work answers new chats 503 `gateway_overloaded` with `Retry-After`, and serves them
//! again once the burst is over.

use std::time::{Duration, Instant};

use futures_util::future::join_all;

use crate::market::{ask, spawn_market_app_with};

const MODEL: &str = "llama-3.3-70b";
const BURST: usize = 300;

#[tokio::test]
async fn a_burst_beyond_what_the_worker_can_take_is_partly_turned_away_then_served_again() {
    // 1 ms of lateness is far below what a burst of 300 chats causes on one worker.
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
    let burst = (0..BURST).map(|i| {
        let request = app
            .client
            .post(&url)
            .bearer_auth(&user.api_key)
            .json(&ask(MODEL, &format!("burst {i}")));
        async move {
            let r = request
                .send()
                .await
                .expect("an answer, not a broken connection");
            let status = r.status().as_u16();
            let retry_after = r
                .headers()
                .get("retry-after")
                .map(|v| v.to_str().unwrap().to_owned());
            let body: serde_json::Value = r.json().await.expect("a JSON body");
            (status, retry_after, body)
        }
    });
    let answers = join_all(burst).await;

    let served = answers.iter().filter(|(s, _, _)| *s == 200).count();
    let shed: Vec<_> = answers.iter().filter(|(s, _, _)| *s == 503).collect();
    assert_eq!(served + shed.len(), BURST, "only 200 and 503 answers");
    assert!(!shed.is_empty(), "none of {BURST} chats was turned away");
    assert!(served > 0, "every chat was turned away");
    for (_, retry_after, body) in shed {
        assert_eq!(retry_after.as_deref(), Some("1"));
        assert_eq!(body["error"]["code"], "gateway_overloaded", "{body}");
        assert_eq!(body["error"]["type"], "server_error", "{body}");
    }

    // Once the burst is over, chats are served again.
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let r = app.chat(&user.api_key, &ask(MODEL, "after")).await;
        if r.status() == 200 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "still {} after the burst",
            r.status()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}
