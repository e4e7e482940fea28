//! The request pipeline: control surface, faults, auth, route, then the body shaping faults ask
//! for.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt as _, Limited};
use hyper::body::{Body as _, Incoming};
use hyper::header::{self, HeaderName, HeaderValue};
use hyper::http::request::Parts;
use hyper::{Request, Response, StatusCode};

use crate::body::{HugeBody, Shape, Shaped, SimBody, Source};
use crate::conn::ConnCtl;
use crate::counters::bump;
use crate::faults::FaultKind;
use crate::reply::{GIN_JSON, Reply, ReplyBody};
use crate::routes::{self, Route};
use crate::state::Shared;

/// Request bodies beyond this are refused; nothing legitimate comes close.
const MAX_REQUEST_BODY: usize = 16 * 1024 * 1024;

pub(crate) async fn handle(
    shared: Arc<Shared>,
    ctl: Arc<ConnCtl>,
    req: Request<Incoming>,
) -> Response<SimBody> {
    let (parts, body) = req.into_parts();
    // Always read the request body first so keep-alive connections stay reusable whatever the
    // answer is, and so the "read the request, then misbehave" faults really read it. Audio
    // uploads are the exception: their route reads them as a stream, keeping only what it needs.
    let (body, upload) = if Route::parse(&parts.method, parts.uri.path()) == Route::Transcription {
        (Bytes::new(), Some(body))
    } else {
        match read_body(body).await {
            Ok(b) => (b, None),
            Err(reply) => return respond(reply, None, &shared, &ctl),
        }
    };

    if let Some(rest) = parts.uri.path().strip_prefix("/__sim/") {
        let reply = routes::control::handle(&shared, &parts.method, rest, &body);
        return respond(reply, None, &shared, &ctl);
    }

    // Every answer carries the request's `X-Request-Id`, or one the node made up
    // (`handlers/httphandlers/logging.go:17-23`, a middleware on every route, 404s included).
    let request_id = match parts.headers.get("x-request-id").filter(|v| !v.is_empty()) {
        Some(id) => id.clone(),
        None => HeaderValue::from_str(&shared.fresh_request_id())
            .unwrap_or(HeaderValue::from_static("00000000")),
    };
    let mut resp = route(&shared, &ctl, &parts, body, upload).await;
    resp.headers_mut()
        .insert(HeaderName::from_static("x-request-id"), request_id);
    resp
}

async fn route(
    shared: &Arc<Shared>,
    ctl: &Arc<ConnCtl>,
    parts: &Parts,
    body: Bytes,
    upload: Option<Incoming>,
) -> Response<SimBody> {
    bump(&shared.counters.requests);
    let route = Route::parse(&parts.method, parts.uri.path());
    // Counted before faults apply, so tests can count every attempt a client made.
    if matches!(route, Route::Chat) {
        bump(&shared.counters.chat_requests);
        let id = parts
            .headers
            .get("x-request-id")
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned);
        *shared
            .counters
            .last_chat_request_id
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = id;
    }
    let fault = shared.faults.take(route.fault_class());
    if fault.is_some() {
        bump(&shared.counters.faults_applied);
    }
    match &fault {
        Some(FaultKind::Latency { ms }) => tokio::time::sleep(Duration::from_millis(*ms)).await,
        Some(FaultKind::Status {
            status,
            body,
            content_type,
        }) => return status_fault(*status, body, content_type.as_deref()),
        Some(FaultKind::Reset) => {
            ctl.reset();
            // The connection task drops this future together with the connection.
            return std::future::pending().await;
        }
        Some(FaultKind::StallBeforeFirstByte) => return std::future::pending().await,
        Some(FaultKind::Redirect { location }) => return redirect(location),
        Some(FaultKind::HugeBody { bytes }) => {
            let mut resp = Response::new(SimBody::Huge(HugeBody::new(*bytes)));
            resp.headers_mut()
                .insert(header::CONTENT_TYPE, HeaderValue::from_static(GIN_JSON));
            return resp;
        }
        _ => {}
    }

    // Auth is per route in the proxy-router, so unknown paths get the plain 404 without it.
    if let Some(method) = route.method()
        && let Err((status, text)) = shared
            .auth
            .check(parts.headers.get(header::AUTHORIZATION), method)
    {
        return respond(Reply::error(status, text), fault.as_ref(), shared, ctl);
    }
    let shape = fault.clone();
    let reply = routes::dispatch(shared, route, parts, body, upload, fault).await;
    if matches!(reply.body, ReplyBody::CloseConnection) {
        ctl.close();
        // The connection task drops this future together with the connection.
        return std::future::pending().await;
    }
    respond(reply, shape.as_ref(), shared, ctl)
}

async fn read_body(body: Incoming) -> Result<Bytes, Reply> {
    if body.is_end_stream() {
        return Ok(Bytes::new());
    }
    match Limited::new(body, MAX_REQUEST_BODY).collect().await {
        Ok(collected) => Ok(collected.to_bytes()),
        Err(_) => Err(Reply::bad_request("request body too large or unreadable")),
    }
}

/// Turns a reply into a response, applying the faults that act on bodies and headers.
fn respond(
    reply: Reply,
    fault: Option<&FaultKind>,
    shared: &Arc<Shared>,
    ctl: &Arc<ConnCtl>,
) -> Response<SimBody> {
    let shape = Shape::of(fault);
    let is_stream = matches!(reply.body, ReplyBody::Chat(_));
    let body = match (reply.body, shape) {
        (ReplyBody::Bytes(b), None) => SimBody::Full(Some(b)),
        (ReplyBody::Bytes(data), Some((shape, pace))) => SimBody::Shaped(Box::new(Shaped::new(
            Source::Pieces { data, pos: 0 },
            shape,
            pace.unwrap_or(Duration::ZERO),
            Arc::clone(ctl),
        ))),
        (ReplyBody::CloseConnection, _) => SimBody::Full(None),
        (ReplyBody::Paced(paced), shape) => {
            let (shape, pace) = shape.unwrap_or((Shape::Plain, None));
            let pace =
                pace.unwrap_or_else(|| shared.chunk_delay() + shared.provider_latency.per_token);
            SimBody::Shaped(Box::new(Shaped::new(
                Source::Paced(paced),
                shape,
                pace,
                Arc::clone(ctl),
            )))
        }
        (ReplyBody::Chat(chat), shape) => {
            let (shape, pace) = shape.unwrap_or((Shape::Plain, None));
            // One event per token: the model's pace plus the configured pause.
            let pace =
                pace.unwrap_or_else(|| shared.chunk_delay() + shared.provider_latency.per_token);
            SimBody::Shaped(Box::new(Shaped::new(
                Source::Chat(chat),
                shape,
                pace,
                Arc::clone(ctl),
            )))
        }
    };
    let mut resp = Response::new(body);
    *resp.status_mut() = reply.status;
    let headers = resp.headers_mut();
    let content_type = match fault {
        Some(FaultKind::WrongContentType) => "text/html; charset=utf-8",
        _ => reply.content_type,
    };
    headers.insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    if is_stream {
        headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    }
    if let Some(FaultKind::HugeHeaders { bytes }) = fault
        && let Ok(value) = HeaderValue::from_maybe_shared(Bytes::from(vec![b'a'; *bytes]))
    {
        headers.insert(HeaderName::from_static("x-sim-padding"), value);
    }
    resp
}

fn status_fault(status: u16, body: &str, content_type: Option<&str>) -> Response<SimBody> {
    let mut resp = Response::new(SimBody::Full(Some(Bytes::copy_from_slice(body.as_bytes()))));
    *resp.status_mut() = StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    let guessed = if body.trim_start().starts_with('{') {
        GIN_JSON
    } else {
        "text/html; charset=utf-8"
    };
    let content_type = content_type
        .and_then(|ct| HeaderValue::from_str(ct).ok())
        .unwrap_or(HeaderValue::from_static(guessed));
    resp.headers_mut()
        .insert(header::CONTENT_TYPE, content_type);
    resp
}

fn redirect(location: &str) -> Response<SimBody> {
    let mut resp = Response::new(SimBody::Full(None));
    *resp.status_mut() = StatusCode::FOUND;
    if let Ok(value) = HeaderValue::from_str(location) {
        resp.headers_mut().insert(header::LOCATION, value);
    }
    resp
}
