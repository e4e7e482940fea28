//! Governance across replicas: three gateway processes behind nginx on one PostgreSQL database
//! and one Redis. A key's rate limit is one limit, not one per replica; a user's credit serves
//! exactly what it covers whichever replica takes each request; and when Redis stops, requests
//! keep being served (fail-open) and the limit binds again once it is back.

use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::market::spawn_market_app;
use crate::replicas::Replicas;

const MODEL: &str = "llama-3.3-70b";
const ADMIN_TOKEN: &str = "governance-test-operator-token-0123456789";

/// A Redis server of the test's own (the machine's may serve other tests), on a fixed port so
/// it can be stopped and started again where the replicas expect it.
struct RedisServer {
    child: Option<Child>,
    port: u16,
}

impl RedisServer {
    fn start() -> RedisServer {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .map(|a| a.port())
            .expect("a free port");
        let mut server = RedisServer { child: None, port };
        server.restart();
        server
    }

    fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    fn restart(&mut self) {
        let child = Command::new("redis-server")
            .args(["--port", &self.port.to_string(), "--bind", "127.0.0.1"])
            .args(["--save", "", "--appendonly", "no"])
            .stdout(Stdio::null())
            .spawn()
            .expect("redis-server runs (.ci/run installs Redis)");
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(10);
        while std::net::TcpStream::connect(("127.0.0.1", self.port)).is_err() {
            assert!(Instant::now() < deadline, "redis-server does not listen");
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        self.stop();
    }
}

fn ask(max_tokens: u64) -> Value {
    json!({
        "model": MODEL,
        "max_tokens": max_tokens,
        "messages": [{"role": "user", "content": "one two three four five six seven eight"}],
    })
}

/// Registers through nginx, logs in, makes a key with `policy`, turns automation on; the
/// user's id, access token and key.
async fn user_with_key(
    client: &reqwest::Client,
    replicas: &Replicas,
    policy: Value,
) -> (i64, String, String) {
    let (id, access) = replicas.sign_up(client).await;
    let r = client
        .post(replicas.url("/api/v1/auth/keys"))
        .bearer_auth(&access)
        .json(&policy)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let key = r.json::<Value>().await.unwrap()["key"]
        .as_str()
        .unwrap()
        .to_owned();
    let r = client
        .put(replicas.url("/api/v1/automation/settings"))
        .bearer_auth(&key)
        .json(&json!({"is_enabled": true}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    (id, access, key)
}

async fn chat(client: &reqwest::Client, url: &str, key: &str) -> reqwest::Response {
    client
        .post(url)
        .bearer_auth(key)
        .json(&ask(4))
        .send()
        .await
        .unwrap()
}

/// Sends `total` chats, `concurrency` at a time; the statuses, and whether each answer carried
/// rate-limit headers.
async fn hammer(
    client: &reqwest::Client,
    url: &str,
    key: &str,
    total: usize,
    concurrency: usize,
) -> Vec<(u16, bool)> {
    let next = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let workers: Vec<_> = (0..concurrency)
        .map(|_| {
            let (client, url, key, next) =
                (client.clone(), url.to_owned(), key.to_owned(), next.clone());
            tokio::spawn(async move {
                let mut seen = Vec::new();
                while next.fetch_add(1, std::sync::atomic::Ordering::Relaxed) < total {
                    let r = chat(&client, &url, &key).await;
                    let counted = r.headers().contains_key("x-ratelimit-limit-requests");
                    seen.push((r.status().as_u16(), counted));
                }
                seen
            })
        })
        .collect();
    let mut all = Vec::new();
    for worker in workers {
        all.extend(worker.await.unwrap());
    }
    all
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn three_replicas_on_one_redis_keep_one_rate_limit_exact_credit_and_fail_open() {
    let app = spawn_market_app().await;
    // Replicas of one deployment share a PostgreSQL database (SQLite is one process's file).
    if !app.is_postgres() {
        return;
    }
    let mut redis = RedisServer::start();
    let prices = app.settings.data_dir.join("prices.toml");
    std::fs::write(&prices, "[default]\ninput = 0\noutput = 1\n").unwrap();
    let redis_url = redis.url();
    let prices_path = prices.display().to_string();
    let replicas = Replicas::start(
        &app.settings,
        3,
        &[
            ("MORPHEUS_REDIS_URL", &redis_url),
            ("MORPHEUS_PRICING_FILE", &prices_path),
            // Credit for exactly 50 answers of 4 output tokens at 1 USD per million.
            ("MORPHEUS_SIGNUP_CREDIT_USD", "0.0002"),
            ("MORPHEUS_POOL_MAX_SESSIONS_PER_MODEL", "64"),
            ("MORPHEUS_ADMIN_TOKEN", ADMIN_TOKEN),
            ("MORPHEUS_DB_POOL_SIZE", "16"),
        ],
    )
    .await;
    let client = &app.client;
    let url = replicas.url("/api/v1/chat/completions");

    // 200 concurrent chats of one user through all three: exactly the 50 the credit covers.
    let (_, _, key) = user_with_key(client, &replicas, json!({"name": "credit"})).await;
    let statuses = hammer(client, &url, &key, 200, 200).await;
    let served = statuses.iter().filter(|(s, _)| *s == 200).count();
    let short = statuses.iter().filter(|(s, _)| *s == 402).count();
    println!("three replicas, 200 concurrent chats, credit for 50: {served} × 200, {short} × 402");
    assert_eq!((served, short), (50, 150), "{statuses:?}");

    // A key limited to 600 requests a minute, hammered through all three in one minute.
    let second = chrono::Utc::now().timestamp().rem_euclid(60);
    if second > 10 {
        tokio::time::sleep(Duration::from_secs(u64::try_from(60 - second).unwrap())).await;
    }
    let (id, _, key) = user_with_key(client, &replicas, json!({"name": "rpm", "rpm": 600})).await;
    // Beside it, in the same minute, a key of 2,000 RPM: large enough for each replica to
    // count it from allowances (shares of 2 requests) instead of asking Redis each time.
    let (id_large, _, key_large) =
        user_with_key(client, &replicas, json!({"name": "rpm-large", "rpm": 2000})).await;
    for user in [id, id_large] {
        let r = client
            .post(replicas.url("/api/v1/billing/credits/adjust"))
            .header("X-Admin-Token", ADMIN_TOKEN)
            .json(&json!({"user_id": user, "amount_usd": "100"}))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200);
    }
    let started = Instant::now();
    let window_left = 60 - chrono::Utc::now().timestamp().rem_euclid(60);
    let (statuses, large) = tokio::join!(
        hammer(client, &url, &key, 700, 24),
        hammer(client, &url, &key_large, 2100, 24)
    );
    let took = started.elapsed();
    let count =
        |seen: &[(u16, bool)], status: u16| seen.iter().filter(|(s, _)| *s == status).count();
    let (accepted, limited) = (count(&statuses, 200), count(&statuses, 429));
    let (accepted_large, limited_large) = (count(&large, 200), count(&large, 429));
    println!(
        "three replicas, in {:.1} s: a 600 RPM key, 700 requests: {accepted} accepted, {limited} × 429; \
         a 2,000 RPM key (allowances), 2,100 requests: {accepted_large} accepted, {limited_large} × 429",
        took.as_secs_f64()
    );
    assert_eq!(accepted + limited, 700, "{statuses:?}");
    assert_eq!(accepted_large + limited_large, 2100);
    assert!(
        took.as_secs() < window_left.unsigned_abs(),
        "the burst took {took:?}, past its window's end ({window_left} s): it cannot be judged"
    );
    assert!(
        (594..=606).contains(&accepted),
        "within 1 % of 600: {accepted}"
    );
    // Never past the limit; short by at most a share (2) per replica.
    assert!(
        (1994..=2000).contains(&accepted_large),
        "2,000 RPM with allowances: {accepted_large}"
    );

    // Redis stops: the replicas keep serving, uncounted.
    let (_, _, key) = user_with_key(client, &replicas, json!({"name": "down", "rpm": 5})).await;
    redis.stop();
    let down = hammer(client, &url, &key, 12, 3).await;
    println!("Redis stopped, a 5 RPM key: {down:?}");
    assert!(
        down.iter().all(|(s, _)| *s == 200),
        "fail-open serves: {down:?}"
    );
    assert!(
        down.iter().filter(|(_, counted)| !counted).count() >= 7,
        "more than the limit passed uncounted: {down:?}"
    );
    // Redis is back: once each replica's breaker lets it try again, the limit binds.
    redis.restart();
    let deadline = Instant::now() + Duration::from_secs(40);
    let mut after = Vec::new();
    loop {
        let r = chat(client, &url, &key).await;
        let status = r.status().as_u16();
        after.push(status);
        if status == 429 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the limit never bound again: {after:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    println!("Redis back: {after:?}");
}
