//! What every request gets on its way in and out: a request id (the caller's `X-Request-Id`
//! when it is sensible, a new UUID otherwise) carried by a tracing span, returned in the
//! response and sent to the proxy-router; one access-log event; and its metrics.
//!
//! When traces are on, the request also gets its OpenTelemetry span (`http_request`, HTTP
//! semantic conventions; the chat handler adds the GenAI ones), the child of the caller's W3C
//! `traceparent` when there is one, and the parent of the log span. It is a `trace`-level
//! span that only the trace exporter enables, so without traces it costs nothing and log
//! lines do not change. A streamed answer keeps it open until the stream ends.

use std::cell::Cell;
use std::time::{Duration, Instant};

use actix_web::body::MessageBody;
use actix_web::dev::{ServiceRequest, ServiceResponse};
use actix_web::http::header::{HeaderName, HeaderValue};
use actix_web::middleware::Next;
use actix_web::{Error, HttpMessage, HttpRequest, web};
use tracing::Instrument;

use crate::AppState;

pub const REQUEST_ID_HEADER: HeaderName = HeaderName::from_static("x-request-id");

/// The request's trace span (in the request's extensions; disabled without traces).
#[derive(Debug, Clone)]
pub struct TraceSpan(pub tracing::Span);

impl TraceSpan {
    pub fn of(http: &HttpRequest) -> tracing::Span {
        http.extensions()
            .get::<TraceSpan>()
            .map_or_else(tracing::Span::none, |s| s.0.clone())
    }
}

/// The id of the request being served (in the request's extensions).
#[derive(Debug, Clone)]
pub struct RequestId(pub String);

impl RequestId {
    /// The request's id; every request that went through the middleware has one.
    pub fn of(http: &HttpRequest) -> Option<String> {
        http.extensions().get::<RequestId>().map(|id| id.0.clone())
    }
}

tokio::task_local! {
    /// How long the request being served has waited for the proxy-router so far: the
    /// instrumented marketplace adds every call to it, the chat handler the wait for a
    /// stream's first event. The gateway's own share (`gateway_overhead_seconds`) is the rest
    /// of the request's time. (A handler runs inside its middleware's task.)
    static UPSTREAM_WAIT: Cell<Duration>;
}

/// Counts `waited` as time the current request spent waiting for the proxy-router. Outside a
/// request (background tasks) it does nothing.
pub fn add_upstream_wait(waited: Duration) {
    let _ = UPSTREAM_WAIT.try_with(|total| total.set(total.get() + waited));
}

/// An incoming id is kept when it is 1–128 printable ASCII characters without spaces, so it
/// is safe in a header and a log line; anything else is replaced.
fn accepted(value: &HeaderValue) -> Option<String> {
    let bytes = value.as_bytes();
    let ok = !bytes.is_empty() && bytes.len() <= 128 && bytes.iter().all(u8::is_ascii_graphic);
    ok.then(|| String::from_utf8_lossy(bytes).into_owned())
}

/// A random (version 4) UUID from the thread's CSPRNG: `Uuid::new_v4` would ask the kernel
/// for every one, a system call on each request.
fn new_request_id() -> String {
    uuid::Builder::from_random_bytes(rand::random())
        .into_uuid()
        .to_string()
}

/// Makes the request's span a child of the caller's trace (W3C `traceparent`). Without traces,
/// or without the header, nothing happens.
fn follow_caller_trace(span: &tracing::Span, req: &ServiceRequest) {
    use opentelemetry::propagation::Extractor;
    use tracing_opentelemetry::OpenTelemetrySpanExt;

    struct Headers<'a>(&'a actix_web::http::header::HeaderMap);
    impl Extractor for Headers<'_> {
        fn get(&self, key: &str) -> Option<&str> {
            self.0.get(key).and_then(|v| v.to_str().ok())
        }
        fn keys(&self) -> Vec<&str> {
            self.0.keys().map(|k| k.as_str()).collect()
        }
    }

    if !req.headers().contains_key("traceparent") {
        return;
    }
    let caller = opentelemetry::global::get_text_map_propagator(|propagator| {
        propagator.extract(&Headers(req.headers()))
    });
    // Fails only when traces are off (no OpenTelemetry layer): nothing to follow then.
    let _ = span.set_parent(caller);
}

/// Records a chat's GenAI attributes (semantic conventions) on the request's trace span.
pub fn record_chat(span: &tracing::Span, requested_model: &str, answering_model: &str) {
    span.record("gen_ai.operation.name", "chat");
    span.record("gen_ai.provider.name", "morpheus");
    span.record("gen_ai.request.model", requested_model);
    span.record("gen_ai.response.model", answering_model);
}

/// Records the tokens a chat used on the request's trace span.
pub fn record_usage(span: &tracing::Span, usage: &morpheus_domain::TokenUsage) {
    // As i64: the exporter writes unsigned integers as text.
    span.record("gen_ai.usage.input_tokens", i64::from(usage.prompt_tokens));
    span.record(
        "gen_ai.usage.output_tokens",
        i64::from(usage.completion_tokens),
    );
}

/// The middleware (`actix_web::middleware::from_fn(request_context::observe)`).
pub async fn observe(
    req: ServiceRequest,
    next: Next<impl MessageBody>,
) -> Result<ServiceResponse<impl MessageBody>, Error> {
    let started = Instant::now();
    let id = req
        .headers()
        .get(&REQUEST_ID_HEADER)
        .and_then(accepted)
        .unwrap_or_else(new_request_id);
    req.extensions_mut().insert(RequestId(id.clone()));
    let metrics = req
        .app_data::<web::Data<AppState>>()
        .map(|state| state.metrics.clone());
    let method = req.method().clone();
    let trace = tracing::trace_span!(
        "http_request",
        otel.name = %method,
        otel.kind = "server",
        otel.status_code = tracing::field::Empty,
        "http.request.method" = %method,
        "url.path" = %req.path(),
        "http.route" = tracing::field::Empty,
        "http.response.status_code" = tracing::field::Empty,
        "morpheus.request_id" = %id,
        "gen_ai.operation.name" = tracing::field::Empty,
        "gen_ai.provider.name" = tracing::field::Empty,
        "gen_ai.request.model" = tracing::field::Empty,
        "gen_ai.response.model" = tracing::field::Empty,
        "gen_ai.usage.input_tokens" = tracing::field::Empty,
        "gen_ai.usage.output_tokens" = tracing::field::Empty,
    );
    follow_caller_trace(&trace, &req);
    req.extensions_mut().insert(TraceSpan(trace.clone()));
    let span = tracing::info_span!(
        parent: &trace,
        "request",
        request_id = %id,
        method = %method,
        path = %req.path(),
    );
    let served = async move {
        let result = next.call(req).await;
        (result, UPSTREAM_WAIT.with(Cell::get))
    };
    let (result, upstream_wait) = UPSTREAM_WAIT
        .scope(Cell::new(Duration::ZERO), served)
        .instrument(span.clone())
        .instrument(trace.clone())
        .await;
    let took = started.elapsed();
    let mut response = match result {
        Ok(response) => response,
        Err(error) => {
            let _entered = span.enter();
            tracing::info!(
                status = 500,
                micros = took.as_micros() as u64,
                "request failed"
            );
            if let Some(metrics) = &metrics {
                metrics.observe_request("unmatched", method.as_str(), 500, took);
            }
            return Err(error);
        }
    };
    let status = response.status().as_u16();
    let operation = response
        .request()
        .match_pattern()
        .unwrap_or_else(|| "unmatched".to_owned());
    if let Some(metrics) = &metrics {
        metrics.observe_request(&operation, method.as_str(), status, took);
        if !upstream_wait.is_zero() {
            metrics
                .overhead
                .observe(took.saturating_sub(upstream_wait).as_secs_f64());
        }
    }
    if !trace.is_disabled() {
        use opentelemetry::trace::TraceContextExt;
        use tracing_opentelemetry::OpenTelemetrySpanExt;
        // `otel.name` is read only until the span starts: the route is known later.
        trace
            .context()
            .span()
            .update_name(format!("{method} {operation}"));
        trace.record("http.route", operation.as_str());
        // As i64: the exporter writes unsigned integers as text.
        trace.record("http.response.status_code", i64::from(status));
        if status >= 500 {
            trace.record("otel.status_code", "error");
        }
    }
    span.in_scope(|| {
        tracing::info!(
            status,
            route = %operation,
            micros = took.as_micros() as u64,
            "request served"
        );
    });
    if let Ok(value) = HeaderValue::from_str(&id) {
        response.headers_mut().insert(REQUEST_ID_HEADER, value);
    }
    Ok(response)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_short_printable_ids_are_kept() {
        let keep = |v: &'static str| accepted(&HeaderValue::from_static(v));
        assert_eq!(keep("abc-123_x.y:z").as_deref(), Some("abc-123_x.y:z"));
        assert_eq!(keep(""), None);
        assert_eq!(keep("has space"), None);
        let long = "a".repeat(129);
        assert_eq!(accepted(&HeaderValue::from_str(&long).unwrap()), None);
        let max = "a".repeat(128);
        assert_eq!(accepted(&HeaderValue::from_str(&max).unwrap()), Some(max));
    }

    #[test]
    fn generated_ids_are_distinct_version_4_uuids() {
        let ids: std::collections::HashSet<String> = (0..1000).map(|_| new_request_id()).collect();
        assert_eq!(ids.len(), 1000);
        for id in &ids {
            let uuid = uuid::Uuid::parse_str(id).expect("a UUID");
            assert_eq!(uuid.get_version_num(), 4);
            assert_eq!(uuid.get_variant(), uuid::Variant::RFC4122);
        }
    }
}
