//! The harness for marketplace tests: the app wired to a fresh simulator of the proxy-router.

use std::time::Duration;

use morpheus_gateway::configuration::Settings;
use morpheus_gateway::secrets::secret;
use morpheus_router_sim::{SimConfig, SimHandle, Simulator};
use reqwest::Response;
use serde_json::{Value, json};

use crate::helpers::{Seeded, TestApp, spawn_app_with};

/// The spender the tests configure for `POST /session/approve`.
pub const DIAMOND: &str = "0xb8C55cD613af947E73E262F0d3C54b7211Af16CF";

pub struct MarketApp {
    pub app: TestApp,
    pub sim: SimHandle,
}

impl MarketApp {
    /// Waits until the gateway's start-up calls to the proxy-router (the first session sweep
    /// reads the wallet's sessions) are over: the simulator's request count has not moved for
    /// 250 ms. Tests that count the gateway's calls start after this.
    pub async fn quiet_sim(&self) -> u64 {
        let mut seen = self.sim.counters().requests;
        let mut still = 0;
        for _ in 0..200 {
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
            let now = self.sim.counters().requests;
            still = if now == seen { still + 1 } else { 0 };
            seen = now;
            if still >= 5 {
                break;
            }
        }
        seen
    }
}

impl std::ops::Deref for MarketApp {
    type Target = TestApp;

    fn deref(&self) -> &TestApp {
        &self.app
    }
}

pub async fn spawn_market_app() -> MarketApp {
    spawn_market_app_with(|_| {}).await
}

/// The simulator these tests run against: today's proxy-router, one request per session at a
/// time included.
pub fn sim_config() -> SimConfig {
    SimConfig::default()
}

pub async fn spawn_market_app_with(adjust: impl FnOnce(&mut Settings)) -> MarketApp {
    spawn_market_app_on(sim_config(), adjust).await
}

/// The app wired to a fresh simulator started with `config`.
pub async fn spawn_market_app_on(
    config: SimConfig,
    adjust: impl FnOnce(&mut Settings),
) -> MarketApp {
    let (user, password) = (config.user.clone(), config.password.clone());
    let sim = Simulator::start(config, "127.0.0.1:0".parse().expect("address"))
        .await
        .expect("the simulator starts");
    let url = sim.base_url();
    let app = spawn_app_with(|s| {
        s.proxy_router_url = Some(url);
        s.proxy_router_user = Some(user);
        s.proxy_router_password = Some(secret(&password));
        s.diamond_contract_address = Some(DIAMOND.to_owned());
        s.proxy_router_first_byte_timeout_ms = 5_000;
        s.proxy_router_chat_timeout_ms = 5_000;
        s.proxy_router_idle_timeout_ms = 5_000;
        adjust(s);
    })
    .await;
    MarketApp { app, sim }
}

/// A plain user message.
pub fn ask(model: &str, text: &str) -> Value {
    json!({"model": model, "messages": [{"role": "user", "content": text}]})
}

impl TestApp {
    pub async fn post_with_key(&self, path: &str, key: &str, body: Option<&Value>) -> Response {
        let mut req = self.client.post(self.url(path)).bearer_auth(key);
        if let Some(body) = body {
            req = req.json(body);
        }
        req.send().await.expect("request")
    }

    /// POSTs `{}` (every session option at its default) with an API key.
    pub async fn post_session(&self, path: &str, key: &str) -> Response {
        self.post_with_key(path, key, Some(&json!({}))).await
    }

    /// `POST /session/closesession`, for one session or all the key's active ones.
    pub async fn close_session(&self, key: &str, session: Option<&str>) -> Response {
        let query = session.map_or(String::new(), |id| format!("?session_id={id}"));
        self.post_with_key(&format!("/api/v1/session/closesession{query}"), key, None)
            .await
    }

    pub async fn chat(&self, key: &str, body: &Value) -> Response {
        self.post_with_key("/api/v1/chat/completions", key, Some(body))
            .await
    }

    pub async fn set_automation(&self, key: &str, enabled: bool) {
        set_automation_at(&self.client, &self.address, key, enabled).await;
    }

    /// A user with an API key and automation switched on.
    pub async fn seed_automated_user(&self) -> Seeded {
        let user = self.seed_user().await;
        self.set_automation(&user.api_key, true).await;
        user
    }

    /// Waits (up to 5 s) until the batched writer has stored `n` usage records for the user.
    pub async fn wait_for_usage(&self, user_id: i64, n: i64) -> i64 {
        let query = format!("SELECT COUNT(*) AS n FROM usage_records WHERE user_id = {user_id}");
        for _ in 0..100 {
            let found = self.count(&query);
            if found >= n {
                return found;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        self.count(&query)
    }
}

/// Switches automation on or off for `key` on the gateway at `base`.
pub async fn set_automation_at(client: &reqwest::Client, base: &str, key: &str, enabled: bool) {
    let r = client
        .put(format!("{base}/api/v1/automation/settings"))
        .bearer_auth(key)
        .json(&json!({"is_enabled": enabled}))
        .send()
        .await
        .expect("request");
    assert_eq!(r.status(), 200);
}

/// OpenAI's error body: checks the shape and returns `error`.
pub async fn openai_error(r: Response, status: u16) -> Value {
    assert_eq!(r.status(), status, "unexpected status");
    let body: Value = r.json().await.expect("JSON error body");
    let error = body
        .get("error")
        .cloned()
        .unwrap_or_else(|| panic!("no error in {body}"));
    assert!(error["message"].is_string(), "{body}");
    assert!(error["type"].is_string(), "{body}");
    assert!(
        error.get("code").is_some() && error.get("param").is_some(),
        "{body}"
    );
    error
}

/// Reads an SSE body to its end and returns the `data:` payloads in order.
pub async fn sse_events(r: Response) -> Vec<String> {
    let text = r.text().await.expect("stream body");
    text.split("\n\n")
        .filter_map(|frame| frame.strip_prefix("data: "))
        .map(str::to_owned)
        .collect()
}
