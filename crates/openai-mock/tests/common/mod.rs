//! Helpers shared by the integration tests.
#![allow(dead_code)]

use std::time::Duration;

use morpheus_openai_mock::{MockConfig, MockHandle, MockProvider};
use serde_json::{Value, json};

pub const CHAT_MODEL: &str = "llama-3.3-70b";
pub const EMBEDDING_MODEL: &str = "text-embedding-3-small";

pub struct Mock {
    pub handle: MockHandle,
    pub http: reqwest::Client,
}

pub async fn start() -> Mock {
    start_with(MockConfig::default()).await
}

pub async fn start_with(config: MockConfig) -> Mock {
    let handle = MockProvider::start(config, "127.0.0.1:0".parse().unwrap())
        .await
        .unwrap();
    Mock {
        handle,
        http: client(),
    }
}

/// reqwest is built with rustls but no default provider; without one, building any client
/// (even for plain http) panics.
pub fn client() -> reqwest::Client {
    let _ = rustls::crypto::ring::default_provider().install_default();
    reqwest::Client::new()
}

impl Mock {
    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.handle.base_url())
    }

    pub fn post(&self, path: &str, body: &Value) -> reqwest::RequestBuilder {
        self.http.post(self.url(path)).json(body)
    }

    /// POSTs `body` and returns the status and the parsed JSON answer.
    pub async fn post_json(&self, path: &str, body: &Value) -> (u16, Value) {
        let resp = self.post(path, body).send().await.unwrap();
        let status = resp.status().as_u16();
        (status, resp.json().await.unwrap())
    }

    pub async fn get_json(&self, path: &str) -> (u16, Value) {
        let resp = self.http.get(self.url(path)).send().await.unwrap();
        let status = resp.status().as_u16();
        (status, resp.json().await.unwrap())
    }

    /// A streamed chat, read to its end: its events' `data:` payloads, and the error the body
    /// ended with, if any.
    pub async fn stream(&self, body: &Value) -> (Vec<String>, Option<reqwest::Error>) {
        let resp = self
            .post("/v1/chat/completions", body)
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 200);
        assert_eq!(resp.headers()["content-type"], "text/event-stream");
        let (text, err) = read_all(resp).await;
        (sse_data(&text), err)
    }
}

/// Reads a body chunk by chunk until it ends or fails.
pub async fn read_all(mut resp: reqwest::Response) -> (String, Option<reqwest::Error>) {
    let mut text = String::new();
    loop {
        match tokio::time::timeout(Duration::from_secs(5), resp.chunk())
            .await
            .expect("body stalled")
        {
            Ok(Some(b)) => text.push_str(std::str::from_utf8(&b).unwrap()),
            Ok(None) => return (text, None),
            Err(e) => return (text, Some(e)),
        }
    }
}

/// A chat request for the default chat model: a system message, then `text` from the user.
pub fn chat_request(text: &str) -> Value {
    json!({
        "model": CHAT_MODEL,
        "messages": [
            {"role": "system", "content": "be brief"},
            {"role": "user", "content": text}
        ]
    })
}

pub fn stream_request(text: &str) -> Value {
    let mut body = chat_request(text);
    body["stream"] = json!(true);
    body
}

/// The `data:` payloads of an SSE body, in order; every event must be one `data:` line.
pub fn sse_data(body: &str) -> Vec<String> {
    body.split_inclusive("\n\n")
        .map(|e| {
            let e = e
                .strip_suffix("\n\n")
                .unwrap_or_else(|| panic!("unterminated event: {e:?}"));
            e.strip_prefix("data: ")
                .unwrap_or_else(|| panic!("not an SSE data event: {e:?}"))
                .to_owned()
        })
        .collect()
}

/// The JSON chunks of a stream, `[DONE]` left out.
pub fn chunks(events: &[String]) -> Vec<Value> {
    events
        .iter()
        .filter(|e| e.as_str() != "[DONE]")
        .map(|e| serde_json::from_str(e).unwrap_or_else(|err| panic!("{err}: {e}")))
        .collect()
}

/// The concatenated `delta.content` of the chunks.
pub fn streamed_text(chunks: &[Value]) -> String {
    chunks
        .iter()
        .flat_map(|c| c["choices"].as_array().cloned().unwrap_or_default())
        .filter_map(|c| c["delta"]["content"].as_str().map(str::to_owned))
        .collect()
}

/// The `finish_reason`s that are not null.
pub fn finish_reasons(chunks: &[Value]) -> Vec<String> {
    chunks
        .iter()
        .flat_map(|c| c["choices"].as_array().cloned().unwrap_or_default())
        .filter_map(|c| c["finish_reason"].as_str().map(str::to_owned))
        .collect()
}

/// Waits (up to 2 s) until `check` holds for the counters.
pub async fn wait_for(mock: &Mock, check: impl Fn(&morpheus_openai_mock::Counters) -> bool) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(2);
    while !check(&mock.handle.counters()) {
        assert!(
            tokio::time::Instant::now() < deadline,
            "counters never matched: {:?}",
            mock.handle.counters()
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}
