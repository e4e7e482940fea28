use std::future::Future;
use std::pin::Pin;
use std::time::Duration;

use actix_web::http::header;
use actix_web::{FromRequest, HttpRequest, dev::Payload, web};
use futures_util::StreamExt;
use serde::de::DeserializeOwned;

use super::serde_errors::field_error;
use crate::error::{ApiError, FieldError, LocItem};

/// The largest JSON body accepted, in bytes (app data; 1 MiB when not set).
#[derive(Debug, Clone, Copy)]
pub struct BodyLimit(pub usize);

impl Default for BodyLimit {
    fn default() -> Self {
        Self(1024 * 1024)
    }
}

/// How long a JSON body may take to arrive, from the moment its request is routed (app data;
/// 10 s when not set). Like every app data, a scope or a resource can register its own: a
/// route with larger bodies gets a longer deadline without changing the others'.
#[derive(Debug, Clone, Copy)]
pub struct BodyDeadline(pub Duration);

impl Default for BodyDeadline {
    fn default() -> Self {
        Self(Duration::from_secs(10))
    }
}

/// A JSON body deserialised with field-level 422s, a size cap (413, checked against
/// `Content-Length` before reading and again while streaming a chunked body), a content-type
/// check (415 when a non-JSON type is declared) and a deadline ([`BodyDeadline`]; 408 and the
/// connection closed when the body is not complete in time).
#[derive(Debug)]
pub struct ValidatedJson<T>(pub T);

impl<T: DeserializeOwned + 'static> FromRequest for ValidatedJson<T> {
    type Error = ApiError;
    type Future = Pin<Box<dyn Future<Output = Result<Self, ApiError>>>>;

    fn from_request(req: &HttpRequest, payload: &mut Payload) -> Self::Future {
        let limit = req
            .app_data::<web::Data<BodyLimit>>()
            .map(|l| *l.get_ref())
            .unwrap_or_default();
        let deadline = req
            .app_data::<web::Data<BodyDeadline>>()
            .map(|d| *d.get_ref())
            .unwrap_or_default();
        let body = read_body(req, payload, limit, deadline);
        Box::pin(async move { parse(&body.await?).map(ValidatedJson) })
    }
}

/// An optional JSON body: `None` when the request has none (or only whitespace, or `null`),
/// otherwise exactly what [`ValidatedJson`] accepts, with the same errors.
#[derive(Debug)]
pub struct OptionalJson<T>(pub Option<T>);

impl<T: DeserializeOwned + 'static> FromRequest for OptionalJson<T> {
    type Error = ApiError;
    type Future = Pin<Box<dyn Future<Output = Result<Self, ApiError>>>>;

    fn from_request(req: &HttpRequest, payload: &mut Payload) -> Self::Future {
        let limit = req
            .app_data::<web::Data<BodyLimit>>()
            .map(|l| *l.get_ref())
            .unwrap_or_default();
        let deadline = req
            .app_data::<web::Data<BodyDeadline>>()
            .map(|d| *d.get_ref())
            .unwrap_or_default();
        let body = read_body(req, payload, limit, deadline);
        Box::pin(async move {
            let body = body.await?;
            if body.trim_ascii().is_empty() || body.trim_ascii() == b"null" {
                return Ok(OptionalJson(None));
            }
            parse(&body).map(|value| OptionalJson(Some(value)))
        })
    }
}

/// The largest body forwarded to a provider (chat), in bytes (app data, from the
/// `chat_max_body_bytes` setting; [`BodyLimit`] when not set): larger than [`BodyLimit`]
/// because requests carry images and audio as data URLs.
#[derive(Debug, Clone, Copy)]
pub struct ForwardedBodyLimit(pub usize);

/// How long a forwarded (chat) body may take to arrive (app data; 30 s when not set): it may be
/// [`ForwardedBodyLimit`] large.
#[derive(Debug, Clone, Copy)]
pub struct ForwardedBodyDeadline(pub Duration);

impl Default for ForwardedBodyDeadline {
    fn default() -> Self {
        Self(Duration::from_secs(30))
    }
}

/// Like [`ValidatedJson`], and keeps the body's bytes too: for requests forwarded upstream as
/// the client wrote them (fields the gateway does not model included). Its size limit is
/// [`ForwardedBodyLimit`], its deadline [`ForwardedBodyDeadline`].
#[derive(Debug)]
pub struct JsonWithRaw<T> {
    pub value: T,
    pub raw: web::Bytes,
}

impl<T: DeserializeOwned + 'static> FromRequest for JsonWithRaw<T> {
    type Error = ApiError;
    type Future = Pin<Box<dyn Future<Output = Result<Self, ApiError>>>>;

    fn from_request(req: &HttpRequest, payload: &mut Payload) -> Self::Future {
        let limit = req
            .app_data::<web::Data<ForwardedBodyLimit>>()
            .map(|l| l.get_ref().0)
            .unwrap_or(BodyLimit::default().0);
        let deadline = req
            .app_data::<web::Data<ForwardedBodyDeadline>>()
            .map_or_else(ForwardedBodyDeadline::default, |d| *d.get_ref());
        let body = read_body(req, payload, BodyLimit(limit), BodyDeadline(deadline.0));
        Box::pin(async move {
            let raw = body.await?;
            let value = parse(&raw)?;
            Ok(JsonWithRaw { value, raw })
        })
    }
}

/// Reads the whole body within `limit` and `deadline`, after checking the headers. This is
/// where every request body is read: a handler that does not use one leaves it unread, and
/// `connections::guard` has its connection closed after the response.
fn read_body(
    req: &HttpRequest,
    payload: &mut Payload,
    limit: BodyLimit,
    deadline: BodyDeadline,
) -> impl Future<Output = Result<web::Bytes, ApiError>> + use<> {
    let early = check_headers(req, limit);
    let due = tokio::time::Instant::now() + deadline.0;
    let mut payload = payload.take();
    async move {
        // One allocation of the declared size (within the limit) rather than doublings: with
        // many bodies arriving at once, the copies a growing buffer leaves behind doubled the
        // memory they took.
        let declared = early?;
        let read = async {
            let mut body = web::BytesMut::with_capacity(declared.unwrap_or(0));
            while let Some(chunk) = payload.next().await {
                let chunk = chunk.map_err(|_| {
                    ApiError::validation(FieldError::new(
                        vec![LocItem::from("body")],
                        "body_unreadable",
                        "The request body could not be read",
                    ))
                })?;
                if body.len() + chunk.len() > limit.0 {
                    return Err(ApiError::PayloadTooLarge { limit: limit.0 });
                }
                body.extend_from_slice(&chunk);
            }
            Ok(body.freeze())
        };
        tokio::time::timeout_at(due, read)
            .await
            .unwrap_or(Err(ApiError::RequestTimeout))
    }
}

/// The declared length, when there is one; `Err` for a non-JSON type or a length over the
/// limit.
fn check_headers(req: &HttpRequest, limit: BodyLimit) -> Result<Option<usize>, ApiError> {
    if let Some(ct) = req.headers().get(header::CONTENT_TYPE) {
        let json = ct
            .to_str()
            .ok()
            .and_then(|s| s.split(';').next())
            .map(|m| {
                let m = m.trim().to_ascii_lowercase();
                m == "application/json" || (m.starts_with("application/") && m.ends_with("+json"))
            })
            .unwrap_or(false);
        if !json {
            return Err(ApiError::UnsupportedMediaType("application/json"));
        }
    }
    let declared = req
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    match declared {
        Some(n) if n > limit.0 as u64 => Err(ApiError::PayloadTooLarge { limit: limit.0 }),
        declared => Ok(declared.and_then(|n| usize::try_from(n).ok())),
    }
}

fn parse<T: DeserializeOwned>(body: &[u8]) -> Result<T, ApiError> {
    if body.iter().all(u8::is_ascii_whitespace) {
        return Err(ApiError::validation(FieldError::new(
            vec![LocItem::from("body")],
            "missing",
            "Field required",
        )));
    }
    // Syntax first, without the target type, so a syntax error is reported as such and not as
    // a missing field.
    if let Err(e) = serde_json::from_slice::<serde::de::IgnoredAny>(body) {
        let column = i64::try_from(e.column()).unwrap_or(0);
        return Err(ApiError::validation(FieldError::new(
            vec![LocItem::from("body"), LocItem::Index(column)],
            "json_invalid",
            "JSON decode error",
        )));
    }
    // Every body of this API is an object. serde would also accept a struct written as an
    // array (`["a@b.c","pw"]`), which no client means to send.
    if body.iter().find(|b| !b.is_ascii_whitespace()) != Some(&b'{') {
        return Err(ApiError::validation(FieldError::new(
            vec![LocItem::from("body")],
            "model_attributes_type",
            "Input should be a valid object",
        )));
    }
    let mut de = serde_json::Deserializer::from_slice(body);
    let value = serde_path_to_error::deserialize(&mut de)
        .map_err(|e| ApiError::validation(field_error("body", e)))?;
    Ok(value)
}
