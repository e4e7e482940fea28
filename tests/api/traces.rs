//! OpenTelemetry traces: the gateway process exports them over OTLP/HTTP to a receiver in the
//! test, follows the caller's `traceparent` and passes its own to the proxy-router.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use actix_web::{App, HttpRequest, HttpResponse, HttpServer, web};
use futures_util::TryStreamExt;
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::common::v1::any_value::Value as AnyValue;
use opentelemetry_proto::tonic::trace::v1::Span;
use opentelemetry_proto::tonic::trace::v1::span::SpanKind;
use prost::Message;
use serde_json::json;

use crate::market::{ask, spawn_market_app};
use crate::process::GatewayProcess;

/// Every span the receiver was sent.
type Received = Arc<Mutex<Vec<Span>>>;

/// An OTLP/HTTP receiver (protobuf, `POST /v1/traces`) on a free port: its base URL.
fn otlp_receiver(received: Received) -> String {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let server = HttpServer::new(move || {
        let received = received.clone();
        App::new().route(
            "/v1/traces",
            web::post().to(move |body: web::Bytes| {
                let received = received.clone();
                async move {
                    let export = ExportTraceServiceRequest::decode(body).expect("an OTLP export");
                    let mut spans = received.lock().unwrap();
                    for resource in export.resource_spans {
                        for scope in resource.scope_spans {
                            spans.extend(scope.spans);
                        }
                    }
                    // An empty ExportTraceServiceResponse.
                    HttpResponse::Ok()
                        .content_type("application/x-protobuf")
                        .finish()
                }
            }),
        )
    })
    .workers(1)
    .disable_signals()
    .listen(listener)
    .unwrap()
    .run();
    tokio::spawn(server);
    url
}

/// The `traceparent` headers the proxy-router received.
type Seen = Arc<Mutex<Vec<String>>>;

/// A relay in front of the simulator that notes each request's `traceparent`: its base URL.
fn recording_relay(upstream: String, seen: Seen) -> String {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let client = reqwest::Client::new();
    let server = HttpServer::new(move || {
        let (client, upstream, seen) = (client.clone(), upstream.clone(), seen.clone());
        App::new().default_service(web::to(move |req: HttpRequest, body: web::Bytes| {
            let (client, upstream, seen) = (client.clone(), upstream.clone(), seen.clone());
            async move {
                if let Some(tp) = req.headers().get("traceparent") {
                    seen.lock().unwrap().push(tp.to_str().unwrap().to_owned());
                }
                let mut forwarded = client.request(
                    reqwest::Method::from_bytes(req.method().as_str().as_bytes()).unwrap(),
                    format!("{upstream}{}", req.uri()),
                );
                for (name, value) in req.headers() {
                    if name != "host" {
                        forwarded = forwarded.header(name.as_str(), value.as_bytes());
                    }
                }
                let answer = forwarded.body(body).send().await.unwrap();
                let mut reply = HttpResponse::build(
                    actix_web::http::StatusCode::from_u16(answer.status().as_u16()).unwrap(),
                );
                for (name, value) in answer.headers() {
                    if name != "content-length" && name != "transfer-encoding" {
                        reply.insert_header((name.as_str(), value.as_bytes()));
                    }
                }
                reply.streaming(answer.bytes_stream().map_err(std::io::Error::other))
            }
        }))
    })
    .workers(1)
    .disable_signals()
    .listen(listener)
    .unwrap()
    .run();
    tokio::spawn(server);
    url
}

fn attribute(span: &Span, key: &str) -> Option<AnyValue> {
    span.attributes
        .iter()
        .find(|kv| kv.key == key)
        .and_then(|kv| kv.value.as_ref()?.value.clone())
}

fn int(span: &Span, key: &str) -> Option<i64> {
    match attribute(span, key)? {
        AnyValue::IntValue(n) => Some(n),
        _ => None,
    }
}

fn text(span: &Span, key: &str) -> Option<String> {
    match attribute(span, key)? {
        AnyValue::StringValue(s) => Some(s),
        _ => None,
    }
}

/// The spans of the trace `trace_id`, once a server span and its client child have arrived.
async fn trace(received: &Received, trace_id: &[u8], spans: usize) -> Vec<Span> {
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let found: Vec<Span> = received
            .lock()
            .unwrap()
            .iter()
            .filter(|s| s.trace_id == trace_id)
            .cloned()
            .collect();
        if found.len() >= spans {
            return found;
        }
        assert!(Instant::now() < deadline, "spans of the trace: {found:#?}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test]
async fn a_chat_is_one_server_span_with_its_upstream_call_as_a_child_in_the_caller_s_trace() {
    let app = spawn_market_app().await;
    let received = Received::default();
    let collector = otlp_receiver(received.clone());
    let seen = Seen::default();
    let relay = recording_relay(app.sim.base_url(), seen.clone());
    let gateway = GatewayProcess::beside(
        &app,
        &[
            ("MORPHEUS_OTLP_ENDPOINT", &collector),
            ("MORPHEUS_PROXY_ROUTER_URL", &relay),
            // Exported every 100 ms instead of every 5 s.
            ("OTEL_BSP_SCHEDULE_DELAY", "100"),
        ],
    )
    .await;
    let user = app.seed_automated_user().await;

    let caller_trace = "4bf92f3577b34da6a3ce929d0e0e4736";
    let caller_span = "00f067aa0ba902b7";
    let chat = |body: serde_json::Value| {
        app.client
            .post(gateway.url("/api/v1/chat/completions"))
            .bearer_auth(&user.api_key)
            .header("traceparent", format!("00-{caller_trace}-{caller_span}-01"))
            .json(&body)
            .send()
    };
    let r = chat(ask("llama-3.3-70b", "hello traces")).await.unwrap();
    assert_eq!(r.status(), 200);
    let answer: serde_json::Value = r.json().await.unwrap();

    let trace_id = hex(caller_trace);
    let spans = trace(&received, &trace_id, 2).await;
    let server = spans
        .iter()
        .find(|s| s.kind == SpanKind::Server as i32 && text(s, "gen_ai.request.model").is_some())
        .expect("the request's span");
    assert_eq!(
        server.parent_span_id,
        hex(caller_span),
        "the caller's span is its parent"
    );
    assert_eq!(server.name, "POST /api/v1/chat/completions");
    assert_eq!(text(server, "http.request.method").as_deref(), Some("POST"));
    assert_eq!(
        text(server, "http.route").as_deref(),
        Some("/api/v1/chat/completions")
    );
    assert_eq!(
        int(server, "http.response.status_code"),
        Some(200),
        "{:?}",
        server.attributes
    );
    assert_eq!(
        text(server, "gen_ai.operation.name").as_deref(),
        Some("chat")
    );
    assert_eq!(
        text(server, "gen_ai.request.model").as_deref(),
        Some("llama-3.3-70b")
    );
    assert_eq!(
        int(server, "gen_ai.usage.input_tokens"),
        answer["usage"]["prompt_tokens"].as_i64()
    );
    assert_eq!(
        int(server, "gen_ai.usage.output_tokens"),
        answer["usage"]["completion_tokens"].as_i64()
    );
    let upstream: Vec<&Span> = spans
        .iter()
        .filter(|s| s.kind == SpanKind::Client as i32 && s.parent_span_id == server.span_id)
        .collect();
    let chat_call = upstream
        .iter()
        .find(|s| s.name == "chat")
        .expect("the upstream chat call, a child of the request");
    // The proxy-router was told the trace, with the upstream call as the parent.
    let sent = format!("00-{caller_trace}-{}-01", to_hex(&chat_call.span_id));
    assert!(
        seen.lock().unwrap().contains(&sent),
        "{sent} in {:?}",
        seen.lock().unwrap()
    );
    // Nothing else of the gateway (storage, logs) is in the trace.
    assert!(
        spans
            .iter()
            .all(|s| s.span_id == server.span_id || s.parent_span_id == server.span_id),
        "{spans:#?}"
    );

    // A stream: the span lasts until its end and learns the tokens from the last chunk.
    let streamed_trace = "0af7651916cd43dd8448eb211c80319c";
    let r = app
        .client
        .post(gateway.url("/api/v1/chat/completions"))
        .bearer_auth(&user.api_key)
        .header(
            "traceparent",
            format!("00-{streamed_trace}-b7ad6b7169203331-01"),
        )
        .json(&json!({
            "model": "llama-3.3-70b",
            "stream": true,
            "messages": [{"role": "user", "content": "stream it"}],
        }))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let _ = r.text().await.unwrap();
    let spans = trace(&received, &hex(streamed_trace), 2).await;
    let server = spans
        .iter()
        .find(|s| s.kind == SpanKind::Server as i32)
        .expect("the streamed request's span");
    assert!(int(server, "gen_ai.usage.output_tokens").unwrap_or(0) > 0);

    // Without a caller's traceparent, the request starts a trace of its own.
    let r = app
        .client
        .get(gateway.url("/api/v1/models"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let root = received
            .lock()
            .unwrap()
            .iter()
            .find(|s| s.name == "GET /api/v1/models")
            .cloned();
        if let Some(root) = root {
            assert!(root.parent_span_id.is_empty(), "a root span: {root:?}");
            assert_ne!(root.trace_id, hex(caller_trace));
            break;
        }
        assert!(Instant::now() < deadline, "no span for GET /api/v1/models");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

fn hex(text: &str) -> Vec<u8> {
    (0..text.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&text[i..i + 2], 16).unwrap())
        .collect()
}

fn to_hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}
