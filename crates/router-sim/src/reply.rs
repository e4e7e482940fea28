//! What a route handler produces, before faults shape it into an HTTP response.

use bytes::Bytes;
use hyper::StatusCode;
use serde::Serialize;

use crate::stream::ChatSource;

/// gin's `c.JSON` content type, which every proxy-router JSON answer carries.
pub(crate) const GIN_JSON: &str = "application/json; charset=utf-8";

/// The chat handler sets its content type before gin renders, so its JSON answers (and its
/// `providerModelError`s) carry the plain one (`internal/constants.go:6-7`,
/// `proxyapi/controller_http.go:233-246`).
pub(crate) const CHAT_JSON: &str = "application/json";
pub(crate) const EVENT_STREAM: &str = "text/event-stream";

pub(crate) struct Reply {
    pub status: StatusCode,
    pub content_type: &'static str,
    pub body: ReplyBody,
}

pub(crate) enum ReplyBody {
    Bytes(Bytes),
    /// A chat stream, produced lazily.
    Chat(Box<ChatSource>),
    /// Pieces written one at a time, paced like stream events (speech, transcription deltas).
    Paced(Box<crate::body::Paced>),
    /// No answer: the connection is closed, as Go's `net/http` does after a handler panics
    /// (the node has no `gin.Recovery`, `handlers/httphandlers/http.go:55`).
    CloseConnection,
}

#[derive(Serialize)]
struct ErrorOut<'a> {
    error: &'a str,
}

/// `{"error":"<text>"}` as Go marshals `gin.H{"error": text}`.
pub(crate) fn error_json(text: &str) -> Vec<u8> {
    crate::gojson::to_vec(&ErrorOut { error: text })
}

impl Reply {
    pub fn json(status: StatusCode, body: Bytes) -> Self {
        Self {
            status,
            content_type: GIN_JSON,
            body: ReplyBody::Bytes(body),
        }
    }

    pub fn ok<T: Serialize>(value: &T) -> Self {
        Self::json(
            StatusCode::OK,
            Bytes::from(serde_json::to_vec(value).unwrap_or_default()),
        )
    }

    /// `{"error":"<text>"}`, the proxy-router's error shape, written as Go writes it.
    pub fn error(status: StatusCode, text: &str) -> Self {
        Self::json(status, Bytes::from(error_json(text)))
    }

    pub fn bad_request(text: &str) -> Self {
        Self::error(StatusCode::BAD_REQUEST, text)
    }

    /// The proxy-router answers 500 for nearly every failure, unknown ids included.
    pub fn internal(text: &str) -> Self {
        Self::error(StatusCode::INTERNAL_SERVER_ERROR, text)
    }

    /// The same answer with another content type.
    pub fn typed(mut self, content_type: &'static str) -> Self {
        self.content_type = content_type;
        self
    }

    pub fn close_connection() -> Self {
        Self {
            status: StatusCode::OK,
            content_type: GIN_JSON,
            body: ReplyBody::CloseConnection,
        }
    }

    /// gin's default 404: plain text, not JSON.
    pub fn not_found() -> Self {
        Self {
            status: StatusCode::NOT_FOUND,
            content_type: "text/plain",
            body: ReplyBody::Bytes(Bytes::from_static(b"404 page not found")),
        }
    }
}
