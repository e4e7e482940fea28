//! What every connection of one mock shares.

use std::sync::Mutex;

use bytes::Bytes;
use hyper::header::HeaderValue;
use serde::{Deserialize, Serialize};

use crate::config::MockConfig;
use crate::counters::CounterCells;
use crate::faults::FaultTable;

/// The latest chat, embeddings, speech or transcription request a mock received
/// ([`MockHandle::last_request`](crate::MockHandle::last_request),
/// `GET /__mock/last_request`).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct LastRequest {
    /// `/v1/chat/completions`, `/v1/embeddings`, `/v1/audio/speech` or
    /// `/v1/audio/transcriptions`.
    pub path: String,
    /// The body as received; one that is not JSON becomes a JSON string of its text. For a
    /// transcription (multipart, never kept whole) an object of its text fields, a field sent
    /// more than once as the array of its values: `{"model":"whisper-1","language":"en"}`.
    pub body: serde_json::Value,
    /// For a transcription, what the upload held; `None` for the JSON routes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub upload: Option<UploadSeen>,
}

/// What a `POST /v1/audio/transcriptions` form held, as far as it was read (a form cut short by
/// a broken or oversized body is recorded up to there).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct UploadSeen {
    /// The `file` part's file name; `None` without a `file` part that has one.
    pub file_name: Option<String>,
    /// The `file` part's `Content-Type`, when it had one.
    pub content_type: Option<String>,
    /// The length of the `file` part's content (counted as it streamed by, never buffered).
    pub bytes: u64,
    /// The text fields, in the order sent, repeats included:
    /// `[("model","whisper-1"),("timestamp_granularities[]","word")]`.
    pub fields: Vec<(String, String)>,
}

impl UploadSeen {
    /// The first value of the text field `name`.
    pub fn field(&self, name: &str) -> Option<&str> {
        self.fields
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }

    /// [`LastRequest::body`] for the form: its fields as a JSON object.
    fn fields_json(&self) -> serde_json::Value {
        let mut out = serde_json::Map::new();
        for (name, value) in &self.fields {
            let value = serde_json::Value::String(value.clone());
            match out.get_mut(name) {
                None => {
                    out.insert(name.clone(), value);
                }
                Some(serde_json::Value::Array(values)) => values.push(value),
                Some(first) => *first = serde_json::Value::Array(vec![first.take(), value]),
            }
        }
        serde_json::Value::Object(out)
    }
}

/// A recorded request, kept raw (parsed only when asked for).
#[derive(Clone)]
enum Recorded {
    Json(&'static str, Bytes),
    Upload(&'static str, UploadSeen),
}

pub(crate) struct Shared {
    pub config: MockConfig,
    /// `x-mock-provider` on every answer; `None` when the name is not a valid header value.
    pub name_header: Option<HeaderValue>,
    pub faults: FaultTable,
    pub counters: CounterCells,
    /// Kept raw (parsed only when asked for), so recording costs a benchmark nothing.
    last_request: Mutex<Option<Recorded>>,
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
        self.record(Recorded::Json(path, body.clone()));
    }

    pub fn record_upload(&self, path: &'static str, upload: UploadSeen) {
        self.record(Recorded::Upload(path, upload));
    }

    fn record(&self, recorded: Recorded) {
        *self
            .last_request
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = Some(recorded);
    }

    pub fn last_request(&self) -> Option<LastRequest> {
        let recorded = self
            .last_request
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone()?;
        Some(match recorded {
            Recorded::Json(path, raw) => LastRequest {
                path: path.to_owned(),
                body: serde_json::from_slice(&raw).unwrap_or_else(|_| {
                    serde_json::Value::String(String::from_utf8_lossy(&raw).into_owned())
                }),
                upload: None,
            },
            Recorded::Upload(path, upload) => LastRequest {
                path: path.to_owned(),
                body: upload.fields_json(),
                upload: Some(upload),
            },
        })
    }
}
