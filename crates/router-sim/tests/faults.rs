//! Every fault kind, `times`, and stream cancellation accounting.

mod common;

use std::time::{Duration, Instant};

use common::{Sim, sse_data, start, stream_request, user_message};
use morpheus_router_sim::{Fault, FaultKind, FaultRoute};
use serde_json::{Value, json};

fn fault(route: FaultRoute, kind: FaultKind) -> Fault {
    Fault {
        route,
        kind,
        times: None,
    }
}

/// Reads a streaming body chunk by chunk until it ends or errors; returns the text and the
/// error if any.
async fn read_all(mut resp: reqwest::Response) -> (String, Option<reqwest::Error>) {
    let mut text = String::new();
    loop {
        match resp.chunk().await {
            Ok(Some(b)) => text.push_str(std::str::from_utf8(&b).unwrap()),
            Ok(None) => return (text, None),
            Err(e) => return (text, Some(e)),
        }
    }
}

/// Reads until at least `events` SSE events arrived; returns what was read and the response.
async fn read_events(mut resp: reqwest::Response, events: usize) -> (String, reqwest::Response) {
    let mut text = String::new();
    while text.matches("\n\n").count() < events {
        let chunk = tokio::time::timeout(Duration::from_secs(2), resp.chunk())
            .await
            .unwrap()
            .unwrap()
            .unwrap();
        text.push_str(std::str::from_utf8(&chunk).unwrap());
    }
    (text, resp)
}

/// A fresh simulator with a session and a fault on chat, and one streamed chat read to its end.
async fn faulted_stream(kind: FaultKind, text: &str) -> (Sim, String, Option<reqwest::Error>) {
    let sim = start().await;
    let sid = sim.open_llama().await;
    sim.handle.set_fault(fault(FaultRoute::Chat, kind));
    let (text, err) = read_all(stream(&sim, &sid, text).await).await;
    (sim, text, err)
}

async fn stream(sim: &Sim, sid: &str, text: &str) -> reqwest::Response {
    let resp = sim.chat(sid, &stream_request(text)).send().await.unwrap();
    assert_eq!(resp.status(), 200);
    resp
}

#[tokio::test]
async fn latency_and_times_once() {
    let sim = start().await;
    sim.fault(FaultRoute::Models, FaultKind::Latency { ms: 200 }, Some(1));
    let t = Instant::now();
    assert_eq!(sim.get_json("/blockchain/models").await.0, 200);
    assert!(t.elapsed() >= Duration::from_millis(200));
    let t = Instant::now();
    assert_eq!(sim.get_json("/blockchain/models").await.0, 200);
    assert!(
        t.elapsed() < Duration::from_millis(150),
        "applied only once"
    );
    assert_eq!(sim.handle.counters().faults_applied, 1);
}

#[tokio::test]
async fn status_faults_replace_the_answer() {
    let sim = start().await;
    let sid = sim.open_llama().await;
    sim.fault(
        FaultRoute::Chat,
        FaultKind::Status {
            status: 500,
            body: r#"{"error":"session expired"}"#.into(),
            content_type: None,
        },
        Some(1),
    );
    let resp = sim.chat(&sid, &user_message("hi")).send().await.unwrap();
    assert_eq!(resp.status(), 500);
    assert!(
        resp.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("application/json")
    );
    assert_eq!(
        resp.json::<Value>().await.unwrap(),
        json!({"error": "session expired"})
    );
    assert_eq!(
        sim.chat(&sid, &user_message("hi"))
            .send()
            .await
            .unwrap()
            .status(),
        200,
        "times: Some(1)"
    );

    sim.handle.set_fault(fault(
        FaultRoute::Any,
        FaultKind::Status {
            status: 503,
            body: "<html><body>Service Unavailable</body></html>".into(),
            content_type: None,
        },
    ));
    let resp = sim.get("/wallet").send().await.unwrap();
    assert_eq!(resp.status(), 503);
    assert!(
        resp.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/html")
    );
    sim.handle.clear_faults();
    assert_eq!(sim.get("/wallet").send().await.unwrap().status(), 200);
}

#[tokio::test]
async fn reset_gives_a_connection_error() {
    let sim = start().await;
    sim.fault(FaultRoute::OpenSession, FaultKind::Reset, Some(1));
    let err = sim
        .post(&format!(
            "/blockchain/models/{}/session",
            morpheus_router_sim::LLAMA_MODEL_ID
        ))
        .json(&json!({"sessionDuration": 60}))
        .send()
        .await
        .unwrap_err();
    assert!(!err.is_timeout(), "{err:?}");
    assert!(
        sim.wait_for_counters(Duration::from_secs(1), |c| c.connections_open == 0)
            .await
    );
    // The next request is served normally.
    sim.open_llama().await;
}

#[tokio::test]
async fn reset_is_a_real_tcp_rst() {
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
    let sim = start().await;
    sim.handle
        .set_fault(fault(FaultRoute::Any, FaultKind::Reset));
    let mut tcp = tokio::net::TcpStream::connect(sim.handle.addr())
        .await
        .unwrap();
    tcp.write_all(b"GET /healthcheck HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .unwrap();
    let mut buf = [0u8; 64];
    let err = tcp.read(&mut buf).await.unwrap_err();
    assert_eq!(err.kind(), std::io::ErrorKind::ConnectionReset);
}

#[tokio::test]
async fn stall_before_first_byte_times_out_on_the_client() {
    let sim = start().await;
    sim.handle
        .set_fault(fault(FaultRoute::Models, FaultKind::StallBeforeFirstByte));
    let err = sim
        .get("/blockchain/models")
        .timeout(Duration::from_millis(300))
        .send()
        .await
        .unwrap_err();
    assert!(err.is_timeout(), "{err:?}");
    // The client went away: the simulator notices and drops the connection.
    assert!(
        sim.wait_for_counters(Duration::from_secs(1), |c| c.connections_open == 0)
            .await
    );
}

#[tokio::test]
async fn client_dropping_a_stream_is_counted_as_cancelled() {
    let sim = start().await;
    let sid = sim.open_llama().await;
    sim.handle.set_chunk_delay(Duration::from_millis(50));
    let resp = stream(
        &sim,
        &sid,
        "one two three four five six seven eight nine ten",
    )
    .await;
    let (text, resp) = read_events(resp, 3).await;
    assert!(sse_data(&text).len() >= 3);
    assert_eq!(sim.handle.counters().streams_active, 1);
    let dropped_at = Instant::now();
    drop(resp);
    assert!(
        sim.wait_for_counters(Duration::from_secs(1), |c| c.streams_cancelled == 1)
            .await
    );
    assert!(dropped_at.elapsed() < Duration::from_secs(1));
    let c = sim.handle.counters();
    assert_eq!((c.streams_active, c.streams_completed), (0, 0));
    assert!(c.last_cancel_unix_ms.is_some());
}

#[tokio::test]
async fn stall_after_chunks_then_client_leaves() {
    let sim = start().await;
    let sid = sim.open_llama().await;
    sim.handle.set_fault(fault(
        FaultRoute::Chat,
        FaultKind::StallAfterChunks { chunks: 3 },
    ));
    let mut resp = stream(&sim, &sid, "a b c d e f").await;
    let mut text = String::new();
    let stalled = loop {
        match tokio::time::timeout(Duration::from_millis(300), resp.chunk()).await {
            Ok(chunk) => text.push_str(std::str::from_utf8(&chunk.unwrap().unwrap()).unwrap()),
            Err(_) => break true,
        }
    };
    assert!(stalled);
    assert_eq!(sse_data(&text).len(), 3);
    drop(resp);
    assert!(
        sim.wait_for_counters(Duration::from_secs(1), |c| c.streams_cancelled == 1
            && c.streams_active == 0)
            .await
    );
}

#[tokio::test]
async fn cut_after_chunks_ends_cleanly_without_finish() {
    let (sim, text, err) =
        faulted_stream(FaultKind::CutAfterChunks { chunks: 3 }, "a b c d e f").await;
    assert!(err.is_none(), "{err:?}");
    let events = sse_data(&text);
    assert_eq!(events.len(), 3);
    assert!(!text.contains("finish_reason\":\"") && !text.contains("usage"));
    assert_eq!(sim.handle.counters().streams_cancelled, 0);
}

#[tokio::test]
async fn garbage_after_chunks_then_continues() {
    let (_sim, text, err) =
        faulted_stream(FaultKind::GarbageAfterChunks { chunks: 2 }, "a b").await;
    assert!(err.is_none());
    let events = sse_data(&text);
    assert_eq!(events[2], "{not json");
    assert_eq!(events.last().unwrap(), "[DONE]");
    let finish: Value = serde_json::from_str(&events[events.len() - 2]).unwrap();
    assert_eq!(finish["usage_from_provider"]["completion_tokens"], 3);
}

#[tokio::test]
async fn reset_after_chunks_breaks_the_stream() {
    let (sim, text, err) =
        faulted_stream(FaultKind::ResetAfterChunks { chunks: 2 }, "a b c d").await;
    assert!(
        err.is_some(),
        "expected a transport error, got a clean end after {text:?}"
    );
    assert!(text.matches("data: ").count() <= 2);
    assert!(
        sim.wait_for_counters(Duration::from_secs(1), |c| c.streams_active == 0)
            .await
    );
    // A reset by the simulator is not a client cancellation.
    assert_eq!(sim.handle.counters().streams_cancelled, 0);

    // On a JSON body: 64-byte pieces, then RST.
    sim.handle.set_fault(fault(
        FaultRoute::Models,
        FaultKind::ResetAfterChunks { chunks: 1 },
    ));
    let resp = sim.get("/blockchain/models").send().await.unwrap();
    assert!(resp.text().await.is_err());
}

#[tokio::test]
async fn redirect_huge_body_wrong_type_huge_headers() {
    let sim = start().await;
    sim.fault(
        FaultRoute::Models,
        FaultKind::Redirect {
            location: "http://elsewhere.invalid/".into(),
        },
        Some(1),
    );
    let resp = sim.get("/blockchain/models").send().await.unwrap();
    assert_eq!(resp.status(), 302);
    assert_eq!(resp.headers()["location"], "http://elsewhere.invalid/");

    sim.fault(
        FaultRoute::Models,
        FaultKind::HugeBody { bytes: 3_000_000 },
        Some(1),
    );
    let resp = sim.get("/blockchain/models").send().await.unwrap();
    assert_eq!(resp.content_length(), Some(3_000_000));
    let body = resp.bytes().await.unwrap();
    assert_eq!(body.len(), 3_000_000);
    assert!(serde_json::from_slice::<Value>(&body).is_ok());

    let sid = sim.open_llama().await;
    sim.fault(FaultRoute::Chat, FaultKind::WrongContentType, Some(1));
    let resp = sim.chat(&sid, &user_message("x")).send().await.unwrap();
    assert_eq!(resp.status(), 200);
    assert!(
        resp.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/html")
    );

    sim.fault(
        FaultRoute::Chat,
        FaultKind::HugeHeaders { bytes: 20_000 },
        Some(1),
    );
    let resp = sim.chat(&sid, &user_message("x")).send().await.unwrap();
    assert_eq!(resp.headers()["x-sim-padding"].len(), 20_000);
    assert_eq!(sim.handle.counters().faults_applied, 4);
}

#[tokio::test]
async fn bad_usage_json_and_stream() {
    let sim = start().await;
    let sid = sim.open_llama().await;
    sim.fault(FaultRoute::Chat, FaultKind::BadUsage, Some(2));
    let out: Value = sim
        .chat(&sid, &user_message("x"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(out["usage"]["prompt_tokens"], -1);
    assert!(out["usage"]["completion_tokens"].is_string());
    let mut req = stream_request("x");
    req["stream_options"] = json!({"include_usage": true});
    let text = sim
        .chat(&sid, &req)
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let events = sse_data(&text);
    let usage: Value = serde_json::from_str(&events[events.len() - 2]).unwrap();
    assert!(usage["usage"]["total_tokens"].as_i64().unwrap() < 0);
}

#[tokio::test]
async fn drip_chunks_paces_the_stream() {
    let sim = start().await;
    let sid = sim.open_llama().await;
    sim.handle.set_fault(fault(
        FaultRoute::Chat,
        FaultKind::DripChunks { every_ms: 40 },
    ));
    let t = Instant::now();
    let text = stream(&sim, &sid, "a b").await.text().await.unwrap();
    // role, 3 words, finish, [DONE]: 5 gaps.
    assert_eq!(sse_data(&text).len(), 6);
    assert!(
        t.elapsed() >= Duration::from_millis(200),
        "{:?}",
        t.elapsed()
    );
}

#[tokio::test]
async fn control_surface_over_http() {
    let sim = start().await;
    let http = common::client();
    let f = json!({"route": "models", "kind": {"type": "status", "status": 502, "body": "bad gateway"}, "times": 1});
    let resp = http
        .post(sim.url("/__sim/faults"))
        .json(&f)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let listed: Value = http
        .get(sim.url("/__sim/faults"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(listed[0]["kind"]["status"], 502);
    assert_eq!(
        sim.get("/blockchain/models").send().await.unwrap().status(),
        502
    );
    assert_eq!(
        sim.get("/blockchain/models").send().await.unwrap().status(),
        200
    );

    let f = json!({"route": "Models", "kind": {"type": "reset"}});
    http.post(sim.url("/__sim/faults"))
        .json(&f)
        .send()
        .await
        .unwrap();
    assert_eq!(
        http.delete(sim.url("/__sim/faults"))
            .send()
            .await
            .unwrap()
            .status(),
        200
    );
    assert_eq!(
        sim.get("/blockchain/models").send().await.unwrap().status(),
        200
    );

    let bad = http
        .post(sim.url("/__sim/faults"))
        .body("{\"route\":\"nowhere\"}")
        .send()
        .await
        .unwrap();
    assert_eq!(bad.status(), 400);

    let before = sim.handle.now_unix();
    let clock: Value = http
        .post(sim.url("/__sim/clock/advance"))
        .json(&json!({"seconds": 3600}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert!(clock["now"].as_u64().unwrap() >= before + 3600);

    let counters: Value = http
        .get(sim.url("/__sim/counters"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(counters["requests"], 3, "control requests are not counted");
    assert_eq!(counters["faults_applied"], 1);
    assert!(counters["last_cancel_unix_ms"].is_null());
    assert!(counters.get("streams_cancelled").is_some());
}

#[tokio::test]
async fn shutdown_stops_serving() {
    let sim = start().await;
    assert_eq!(sim.get("/wallet").send().await.unwrap().status(), 200);
    sim.handle.shutdown();
    tokio::time::sleep(Duration::from_millis(50)).await;
    assert!(
        common::client()
            .get(sim.url("/healthcheck"))
            .send()
            .await
            .is_err()
    );
}
