//! What every connection of one mock shares.

use std::sync::Mutex;

use bytes::Bytes;
use hyper::header::HeaderValue;
use serde::{Deserialize, Serialize};

use crate::config::MockConfig;
use crate::counters::CounterCells;
use crate::faults::FaultTable;

/// The latest chat or embeddings request a mock received
/// ([`MockHandle::last_request`](crate::MockHandle::last_request),
/// `GET /__mock/last_request`).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct LastRequest {
    /// `/v1/chat/completions` or `/v1/embeddings`.
    pub path: String,
    /// The body as received; one that is not JSON becomes a JSON string of its text.
    pub body: serde_json::Value,
}

pub(crate) struct Shared {
    pub config: MockConfig,
    /// `x-mock-provider` on every answer; `None` when the name is not a valid header value.
    pub name_header: Option<HeaderValue>,
    pub faults: FaultTable,
    pub counters: CounterCells,
    /// Kept raw (parsed only when asked for), so recording costs a benchmark nothing.
    last_request: Mutex<Option<(&'static str, Bytes)>>,
    pub shutdown: tokio::sync::watch::Sender<bool>,
}

impl Shared {
    pub fn new(config: MockConfig) -> Self {
        Self {
            name_header: HeaderValue::from_str(&config.name).ok(),
            config,
            faults: FaultTable::default(),
            counters: CounterCells::default(),
            last_request: Mutex::new(None),
            shutdown: tokio::sync::watch::Sender::new(false),
        }
    }

    pub fn knows_model(&self, model: &str) -> bool {
        self.config.models.iter().any(|m| m == model)
    }

    pub fn record_request(&self, path: &'static str, body: &Bytes) {
        *self
            .last_request
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = Some((path, body.clone()));
    }

    pub fn last_request(&self) -> Option<LastRequest> {
        let (path, raw) = self
            .last_request
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone()?;
        let body = serde_json::from_slice(&raw).unwrap_or_else(|_| {
            serde_json::Value::String(String::from_utf8_lossy(&raw).into_owned())
        });
        Some(LastRequest {
            path: path.to_owned(),
            body,
        })
    }
}
