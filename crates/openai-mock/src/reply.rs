//! Building responses, OpenAI's error shape among them.

use bytes::Bytes;
use hyper::header::{self, HeaderValue};
use hyper::{Response, StatusCode};
use serde::Serialize;

use crate::body::MockBody;

pub(crate) type Reply = Response<MockBody>;

pub(crate) fn json_bytes(status: StatusCode, body: Vec<u8>) -> Reply {
    whole(status, "application/json", body)
}

/// A whole body of `content_type`.
pub(crate) fn whole(status: StatusCode, content_type: &'static str, body: Vec<u8>) -> Reply {
    let mut resp = Response::new(MockBody::Full(Some(Bytes::from(body))));
    *resp.status_mut() = status;
    resp.headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    resp
}

pub(crate) fn ok<T: Serialize>(value: &T) -> Reply {
    json_bytes(
        StatusCode::OK,
        serde_json::to_vec(value).unwrap_or_default(),
    )
}

/// OpenAI's `{"error":{"message","type","param","code"}}`.
#[derive(Serialize)]
struct ErrorOut<'a> {
    error: ErrorBody<'a>,
}

#[derive(Serialize)]
struct ErrorBody<'a> {
    message: &'a str,
    #[serde(rename = "type")]
    kind: &'a str,
    param: Option<&'a str>,
    code: Option<&'a str>,
}

pub(crate) fn error(
    status: StatusCode,
    message: &str,
    kind: &str,
    param: Option<&str>,
    code: Option<&str>,
) -> Reply {
    let body = ErrorOut {
        error: ErrorBody {
            message,
            kind,
            param,
            code,
        },
    };
    json_bytes(status, serde_json::to_vec(&body).unwrap_or_default())
}

/// 400 `invalid_request_error`.
pub(crate) fn invalid(message: &str, param: Option<&str>) -> Reply {
    error(
        StatusCode::BAD_REQUEST,
        message,
        "invalid_request_error",
        param,
        None,
    )
}

/// 404 `model_not_found`, in OpenAI's words.
pub(crate) fn model_not_found(model: &str) -> Reply {
    error(
        StatusCode::NOT_FOUND,
        &format!("The model `{model}` does not exist or you do not have access to it."),
        "invalid_request_error",
        Some("model"),
        Some("model_not_found"),
    )
}

/// What a `status` fault answers: OpenAI's body for the common statuses, a generic one
/// otherwise.
pub(crate) fn fault_status(status: u16, retry_after: Option<u64>) -> Reply {
    let status = StatusCode::from_u16(status).unwrap_or(StatusCode::SERVICE_UNAVAILABLE);
    let mut resp = match status.as_u16() {
        429 => error(
            status,
            "Rate limit reached for requests. Please try again later.",
            "requests",
            None,
            Some("rate_limit_exceeded"),
        ),
        500 => error(
            status,
            "The server had an error while processing your request. Sorry about that!",
            "server_error",
            None,
            None,
        ),
        503 => error(
            status,
            "The engine is currently overloaded, please try again later.",
            "server_error",
            None,
            None,
        ),
        s => error(
            status,
            &format!("Injected fault: status {s}."),
            if s >= 500 {
                "server_error"
            } else {
                "invalid_request_error"
            },
            None,
            None,
        ),
    };
    if let Some(secs) = retry_after {
        resp.headers_mut()
            .insert(header::RETRY_AFTER, HeaderValue::from(secs));
    }
    resp
}
