//! What a route handler produces, before faults shape it into an HTTP response.

use bytes::Bytes;
use hyper::StatusCode;
use serde::Serialize;

use crate::stream::ChatSource;

/// gin's `c.JSON` content type, which every proxy-router JSON answer carries.
pub(crate) const GIN_JSON: &str = "application/json; charset=utf-8";

pub(crate) struct Reply {
    pub status: StatusCode,
    pub content_type: &'static str,
    pub body: ReplyBody,
}

pub(crate) enum ReplyBody {
    Bytes(Bytes),
    /// A chat stream, produced lazily.
    Chat(Box<ChatSource>),
}

#[derive(Serialize)]
struct ErrorOut<'a> {
    error: &'a str,
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

    /// `{"error":"<text>"}`, the proxy-router's only error shape.
    pub fn error(status: StatusCode, text: &str) -> Self {
        Self::json(
            status,
            Bytes::from(serde_json::to_vec(&ErrorOut { error: text }).unwrap_or_default()),
        )
    }

    pub fn bad_request(text: &str) -> Self {
        Self::error(StatusCode::BAD_REQUEST, text)
    }

    /// The proxy-router answers 500 for nearly every failure, unknown ids included.
    pub fn internal(text: &str) -> Self {
        Self::error(StatusCode::INTERNAL_SERVER_ERROR, text)
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
