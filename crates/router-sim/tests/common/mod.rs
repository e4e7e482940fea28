//! Helpers shared by the integration tests.
#![allow(dead_code)]

use std::time::Duration;

use morpheus_router_sim::{
    Fault, FaultKind, FaultRoute, LLAMA_MODEL_ID, SimConfig, SimHandle, Simulator,
};
use serde_json::{Value, json};

pub const USER: &str = "morpheus";
pub const PASSWORD: &str = "sim-password";

pub struct Sim {
    pub handle: SimHandle,
    pub http: reqwest::Client,
}

pub async fn start() -> Sim {
    start_with(SimConfig::default()).await
}

pub async fn start_with(config: SimConfig) -> Sim {
    let handle = Simulator::start(config, "127.0.0.1:0".parse().unwrap())
        .await
        .unwrap();
    Sim {
        handle,
        http: client(),
    }
}

/// reqwest is built with rustls but no default provider; without one, building any client
/// (even for plain http) panics.
pub fn install_crypto() {
    let _ = rustls::crypto::ring::default_provider().install_default();
}

/// A client that shows redirects instead of following them.
pub fn client() -> reqwest::Client {
    install_crypto();
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap()
}

impl Sim {
    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.handle.base_url())
    }

    pub fn get(&self, path: &str) -> reqwest::RequestBuilder {
        self.http
            .get(self.url(path))
            .basic_auth(USER, Some(PASSWORD))
    }

    pub fn post(&self, path: &str) -> reqwest::RequestBuilder {
        self.http
            .post(self.url(path))
            .basic_auth(USER, Some(PASSWORD))
    }

    /// GET with auth; returns status and parsed JSON.
    pub async fn get_json(&self, path: &str) -> (u16, Value) {
        let resp = self.get(path).send().await.unwrap();
        let status = resp.status().as_u16();
        (status, resp.json().await.unwrap())
    }

    pub async fn get_text(&self, path: &str) -> String {
        self.get(path).send().await.unwrap().text().await.unwrap()
    }

    pub async fn open_session(&self, model: &str, seconds: u64) -> String {
        let resp = self
            .post(&format!("/blockchain/models/{model}/session"))
            .json(&json!({"sessionDuration": seconds, "directPayment": false, "failover": false}))
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 200);
        let body: Value = resp.json().await.unwrap();
        body["sessionID"].as_str().unwrap().to_owned()
    }

    pub async fn open_llama(&self) -> String {
        self.open_session(LLAMA_MODEL_ID, 600).await
    }

    pub fn chat(&self, session: &str, body: &Value) -> reqwest::RequestBuilder {
        self.post("/v1/chat/completions")
            .header("session_id", session)
            .json(body)
    }

    /// Waits (up to `within`) until `check` holds for the counters.
    /// Switches a fault on.
    pub fn fault(&self, route: FaultRoute, kind: FaultKind, times: Option<u32>) {
        self.handle.set_fault(Fault { route, kind, times });
    }

    /// Sends a chat request and returns its JSON answer (the status must be 2xx).
    pub async fn chat_json(&self, session: &str, body: &Value) -> Value {
        let resp = self.chat(session, body).send().await.unwrap();
        assert!(resp.status().is_success(), "chat: {}", resp.status());
        resp.json().await.unwrap()
    }

    pub async fn wait_for_counters(
        &self,
        within: Duration,
        check: impl Fn(&morpheus_router_sim::Counters) -> bool,
    ) -> bool {
        let deadline = tokio::time::Instant::now() + within;
        loop {
            if check(&self.handle.counters()) {
                return true;
            }
            if tokio::time::Instant::now() >= deadline {
                return false;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }
}

pub fn user_message(text: &str) -> Value {
    json!({"model": "whatever", "messages": [{"role": "system", "content": "be brief"}, {"role": "user", "content": text}]})
}

pub fn stream_request(text: &str) -> Value {
    let mut body = user_message(text);
    body["stream"] = json!(true);
    body
}

/// The `data:` payloads of an SSE body, in order.
pub fn sse_data(body: &str) -> Vec<String> {
    body.split("\n\n")
        .filter(|e| !e.is_empty())
        .map(|e| {
            e.strip_prefix("data: ")
                .unwrap_or_else(|| panic!("not an SSE data event: {e:?}"))
                .to_owned()
        })
        .collect()
}

/// Concatenated `delta.content` of choice `index` over parsed chunks.
pub fn streamed_text(chunks: &[Value], index: u64) -> String {
    chunks
        .iter()
        .flat_map(|c| c["choices"].as_array().cloned().unwrap_or_default())
        .filter(|c| c["index"] == index)
        .filter_map(|c| c["delta"]["content"].as_str().map(str::to_owned))
        .collect()
}

/// The JSON events of an SSE body, `[DONE]` left out.
pub fn json_events(events: &[String]) -> Vec<Value> {
    events
        .iter()
        .filter(|e| e.as_str() != "[DONE]")
        .map(|e| serde_json::from_str(e).unwrap_or_else(|err| panic!("{err}: {e}")))
        .collect()
}
