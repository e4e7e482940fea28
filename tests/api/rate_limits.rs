//! Rate limits and budgets on chat: a key's `rpm`, `tpm` and budget windows, the operator's
//! limits per model group (per user, scaled by the user's multiplier), the `X-RateLimit-*`
//! headers, and what happens when the counters cannot be reached.

use std::sync::Arc;
use std::time::Duration;

use reqwest::{Method, Response};
use serde_json::{Value, json};

use crate::admin::gateway;
use crate::helpers::TestApp;
use crate::market::{MarketApp, openai_error, sim_config, spawn_market_app_on};

const MODEL: &str = "llama-3.3-70b";
/// Output only, 1 USD per million tokens (10⁻⁸ USD units: 100 per token).
const PRICES: &str = "[default]\ninput = 0\noutput = 1\n";

async fn limited_app(
    file: &str,
    adjust: impl FnOnce(&mut morpheus_gateway::configuration::Settings),
) -> MarketApp {
    let path = std::env::temp_dir().join(format!("limits-{}.toml", uuid::Uuid::new_v4()));
    std::fs::write(&path, file).unwrap();
    spawn_market_app_on(sim_config(), move |s| {
        s.pricing_file = Some(path);
        s.pool_max_sessions_per_model = 64;
        s.chat_shed_lateness_ms = 0;
        adjust(s);
    })
    .await
}

/// Eight words: the simulator echoes them cut at `max_tokens`.
fn ask(max_tokens: u64) -> Value {
    json!({
        "model": MODEL,
        "max_tokens": max_tokens,
        "messages": [{"role": "user", "content": "one two three four five six seven eight"}],
    })
}

impl TestApp {
    /// A new key of the user with this policy; its secret.
    async fn key_with(&self, access: &str, policy: Value) -> String {
        let r = self
            .authed(Method::POST, "/api/v1/auth/keys", access, Some(&policy))
            .await;
        assert_eq!(r.status(), 200, "creating a key");
        let body: Value = r.json().await.unwrap();
        body["key"].as_str().unwrap().to_owned()
    }
}

/// Waits until at least 15 s are left in the current clock minute, so a test's requests fall
/// in one rate-limit window.
async fn within_one_minute() {
    let second = chrono::Utc::now().timestamp().rem_euclid(60);
    if second > 45 {
        tokio::time::sleep(Duration::from_secs(u64::try_from(61 - second).unwrap())).await;
    }
}

fn header(r: &Response, name: &str) -> Option<String> {
    r.headers()
        .get(name)
        .map(|v| v.to_str().unwrap().to_owned())
}

fn number(r: &Response, name: &str) -> u64 {
    header(r, name)
        .unwrap_or_else(|| panic!("no {name}"))
        .parse()
        .unwrap()
}

#[tokio::test]
async fn a_keys_rpm_admits_that_many_a_minute_and_says_so_in_its_headers() {
    let app = limited_app(PRICES, |_| {}).await;
    let user = app.seed_automated_user().await;
    let key = app
        .key_with(&user.access, json!({"name": "r", "rpm": 3}))
        .await;
    within_one_minute().await;
    let chats_before = app.sim.counters().chat_requests;
    let mut remaining = Vec::new();
    for _ in 0..3 {
        let r = app.chat(&key, &ask(4)).await;
        assert_eq!(r.status(), 200);
        assert_eq!(number(&r, "x-ratelimit-limit-requests"), 3);
        let reset = header(&r, "x-ratelimit-reset-requests").unwrap();
        let secs: u64 = reset.strip_suffix('s').unwrap().parse().unwrap();
        assert!((1..=60).contains(&secs), "{reset}");
        // No token limit applies: no token headers.
        assert!(header(&r, "x-ratelimit-limit-tokens").is_none());
        remaining.push(number(&r, "x-ratelimit-remaining-requests"));
    }
    assert_eq!(remaining, [2, 1, 0]);
    let r = app.chat(&key, &ask(4)).await;
    let retry: u64 = header(&r, "retry-after").unwrap().parse().unwrap();
    assert!((1..=60).contains(&retry), "Retry-After {retry}");
    assert_eq!(number(&r, "x-ratelimit-remaining-requests"), 0);
    let error = openai_error(r, 429).await;
    assert_eq!(error["code"], "rate_limit_exceeded");
    assert_eq!(error["type"], "requests");
    assert!(
        error["message"]
            .as_str()
            .unwrap()
            .contains("3 requests per minute for this API key"),
        "{error}"
    );
    assert_eq!(
        app.sim.counters().chat_requests - chats_before,
        3,
        "the refused request reached no provider"
    );
    // The user's other key is not limited by this one's rpm.
    let r = app.chat(&user.api_key, &ask(4)).await;
    assert_eq!(r.status(), 200);
    assert!(header(&r, "x-ratelimit-limit-requests").is_none());
}

#[tokio::test]
async fn tokens_are_reserved_from_the_estimate_and_corrected_to_the_providers_count() {
    let app = limited_app(PRICES, |_| {}).await;
    let user = app.seed_automated_user().await;
    let key = app
        .key_with(&user.access, json!({"name": "t", "tpm": 1000}))
        .await;
    within_one_minute().await;
    // 39 characters and one message: 14 tokens estimated in, 400 out at most.
    let first = app.chat(&key, &ask(400)).await;
    assert_eq!(first.status(), 200);
    assert_eq!(number(&first, "x-ratelimit-limit-tokens"), 1000);
    assert_eq!(number(&first, "x-ratelimit-remaining-tokens"), 1000 - 414);
    let body: Value = first.json().await.unwrap();
    let used = body["usage"]["total_tokens"].as_u64().unwrap();
    assert!(used < 414, "the simulator wrote {used} tokens");
    // The reservation was corrected to the count as the answer was recorded.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let second = app.chat(&key, &ask(400)).await;
    assert_eq!(second.status(), 200);
    assert_eq!(
        number(&second, "x-ratelimit-remaining-tokens"),
        1000 - used - 414,
        "the first request counts what it used, not what it reserved"
    );
    println!(
        "tpm 1000: reserved 414 per request, the first used {used}; the second left {}",
        1000 - used - 414
    );
    // A request that could never fit in a minute is a 400, not a wait.
    let error = openai_error(app.chat(&key, &ask(2000)).await, 400).await;
    assert_eq!(error["code"], "request_too_large");
    assert_eq!(error["param"], "max_tokens");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_requests_cannot_overshoot_a_keys_budget() {
    let app = limited_app(PRICES, |_| {}).await;
    let user = app.seed_automated_user().await;
    // Each request holds 4 output tokens: 0.000004 USD. The hour's budget covers 5.
    let key = app
        .key_with(
            &user.access,
            json!({"name": "b", "budgets": [{"window": "1h", "limit_usd": "0.00002"}, {"window": "30d", "limit_usd": "5"}]}),
        )
        .await;
    let key = Arc::new(key);
    let chats_before = app.sim.counters().chat_requests;
    let app = Arc::new(app);
    let tasks: Vec<_> = (0..30)
        .map(|_| {
            let (app, key) = (app.clone(), key.clone());
            tokio::spawn(async move { app.chat(&key, &ask(4)).await })
        })
        .collect();
    let mut served = 0;
    let mut refused = Vec::new();
    for task in tasks {
        let r = task.await.unwrap();
        match r.status().as_u16() {
            200 => served += 1,
            429 => {
                let retry: u64 = header(&r, "retry-after").unwrap().parse().unwrap();
                assert!((1..=3600).contains(&retry), "Retry-After {retry}");
                refused.push(openai_error(r, 429).await);
            }
            other => panic!("unexpected {other}"),
        }
    }
    println!(
        "30 concurrent requests, a budget for 5: {served} served, {} refused",
        refused.len()
    );
    assert_eq!(served, 5);
    assert_eq!(app.sim.counters().chat_requests - chats_before, 5);
    for error in &refused {
        assert_eq!(error["code"], "budget_exceeded");
        let resets: chrono::DateTime<chrono::Utc> =
            error["resets_at"].as_str().unwrap().parse().unwrap();
        assert_eq!(resets.timestamp() % 3600, 0, "the hour's end: {resets}");
        assert!(
            error["message"].as_str().unwrap().contains("per 1h"),
            "{error}"
        );
    }
    // The listing shows each window's use: 5 answers of 4 tokens each.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let keys = app.get_json("/api/v1/auth/keys", &user.access).await;
    let listed = keys
        .as_array()
        .unwrap()
        .iter()
        .find(|k| k["name"] == "b")
        .unwrap();
    let budgets = listed["budgets"].as_array().unwrap();
    assert_eq!(budgets[0]["used_usd"], "0.00002000", "{listed}");
    assert_eq!(budgets[1]["used_usd"], "0.00002000", "{listed}");
    assert!(budgets[1]["resets_at"].is_string());
    // Another user's key lists no use of this one's budget: each key counts its own.
    assert_eq!(budgets[0]["limit_usd"], "0.00002000");
}

#[tokio::test]
async fn the_operators_limit_binds_a_user_across_keys_and_the_multiplier_scales_it() {
    let file = format!("{PRICES}\n[limits.groups.large]\nmodels = [\"{MODEL}\"]\nrpm = 2\n");
    let app = limited_app(&file, |_| {}).await;
    let user = app.seed_automated_user().await;
    let second_key = app.key_with(&user.access, json!({"name": "second"})).await;
    within_one_minute().await;
    let r = app.chat(&user.api_key, &ask(4)).await;
    assert_eq!(r.status(), 200);
    assert_eq!(number(&r, "x-ratelimit-limit-requests"), 2);
    assert_eq!(app.chat(&second_key, &ask(4)).await.status(), 200);
    // A third request on either key: the account's two are used.
    let error = openai_error(app.chat(&second_key, &ask(4)).await, 429).await;
    assert!(
        error["message"]
            .as_str()
            .unwrap()
            .contains("your account on the 'large' models"),
        "{error}"
    );
    // Another user has their own two.
    let other = app.seed_automated_user().await;
    assert_eq!(app.chat(&other.api_key, &ask(4)).await.status(), 200);
    // The operator doubles this user's limits.
    let out = gateway(
        &app.settings,
        &["admin", "users", "limits", &user.email, "--multiplier", "2"],
        &[],
    )
    .await;
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains("2.00×"));
    let bad = gateway(
        &app.settings,
        &["admin", "users", "limits", &user.email, "--multiplier", "0"],
        &[],
    )
    .await;
    assert!(!bad.status.success());
    // The running gateway learns it through the revocation log (about a second).
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    let r = loop {
        let r = app.chat(&user.api_key, &ask(4)).await;
        if r.status() == 200 || std::time::Instant::now() > deadline {
            break r;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    assert_eq!(r.status(), 200, "the doubled limit admits a third request");
    assert_eq!(number(&r, "x-ratelimit-limit-requests"), 4);
}

#[tokio::test]
async fn unreachable_counters_let_requests_through_or_refuse_them_as_the_operator_chose() {
    // Nothing listens on port 1.
    let open = limited_app(PRICES, |s| {
        s.redis_url = Some("redis://127.0.0.1:1".to_owned())
    })
    .await;
    // Users are registered before a replica that fails closed starts: registration is
    // throttled through the same counters, so it would refuse them.
    let user = open.seed_automated_user().await;
    let key = open
        .key_with(&user.access, json!({"name": "r", "rpm": 1}))
        .await;
    for _ in 0..3 {
        let r = open.chat(&key, &ask(4)).await;
        assert_eq!(r.status(), 200, "fail-open serves");
        assert!(
            header(&r, "x-ratelimit-limit-requests").is_none(),
            "nothing was counted"
        );
    }
    // A replica of the same gateway that fails closed.
    let mut settings = open.settings.clone();
    settings.limits_fail_closed = true;
    let closed = morpheus_gateway::startup::Application::build(settings)
        .await
        .expect("the replica starts");
    let closed_url = format!("http://127.0.0.1:{}/api/v1/chat/completions", closed.port());
    tokio::spawn(closed.run_until_stopped());
    let chats_before = open.sim.counters().chat_requests;
    let send = |key: String| {
        let (client, url) = (open.client.clone(), closed_url.clone());
        async move {
            client
                .post(url)
                .bearer_auth(key)
                .json(&ask(4))
                .send()
                .await
                .unwrap()
        }
    };
    let r = send(key.clone()).await;
    assert!(header(&r, "retry-after").is_some());
    let error = openai_error(r, 503).await;
    assert_eq!(error["code"], "limits_unavailable");
    assert_eq!(open.sim.counters().chat_requests, chats_before);
    // A key without limits needs no counters: it is served even then.
    assert_eq!(send(user.api_key.clone()).await.status(), 200);
}
