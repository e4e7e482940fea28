//! Every fault kind, `times`, routes, and the `/__mock/*` control surface.

mod common;

use std::time::{Duration, Instant};

use common::{Mock, chunks, finish_reasons, sse_data, start, stream_request, wait_for};
use morpheus_openai_mock::{Fault, FaultKind, FaultRoute};
use serde_json::{Value, json};

fn status(status: u16, retry_after: Option<u64>) -> Fault {
    Fault::new(FaultKind::Status {
        status,
        retry_after,
    })
}

async fn chat_status(mock: &Mock) -> u16 {
    mock.post("/v1/chat/completions", &common::chat_request("hi"))
        .send()
        .await
        .unwrap()
        .status()
        .as_u16()
}

#[tokio::test]
async fn status_answers_the_next_n_requests_with_an_openai_error() {
    let mock = start().await;
    mock.handle.set_fault(status(503, Some(7)).times(2));
    for _ in 0..2 {
        let resp = mock
            .post("/v1/chat/completions", &common::chat_request("hi"))
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 503);
        assert_eq!(resp.headers()["retry-after"], "7");
        let body: Value = resp.json().await.unwrap();
        assert_eq!(body["error"]["type"], "server_error");
        assert!(
            body["error"]["message"]
                .as_str()
                .unwrap()
                .contains("overloaded")
        );
    }
    assert_eq!(chat_status(&mock).await, 200);

    mock.handle.set_fault(status(429, None));
    let resp = mock
        .post("/v1/chat/completions", &common::chat_request("hi"))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 429);
    assert!(resp.headers().get("retry-after").is_none());
    let body: Value = resp.json().await.unwrap();
    assert_eq!(body["error"]["code"], "rate_limit_exceeded");

    let c = mock.handle.counters();
    assert_eq!((c.faults_fired, c.chat_completions, c.requests), (3, 4, 4));
    assert!(mock.handle.faults().is_empty());
}

#[tokio::test]
async fn a_fault_on_one_route_leaves_the_others_alone() {
    let mock = start().await;
    mock.handle
        .set_fault(status(500, None).on(FaultRoute::Chat));
    assert_eq!(mock.get_json("/v1/models").await.0, 200);
    assert_eq!(chat_status(&mock).await, 500);
    assert_eq!(chat_status(&mock).await, 200);
}

#[tokio::test]
async fn cut_after_chunks_closes_the_connection_mid_stream() {
    let mock = start().await;
    mock.handle
        .set_fault(Fault::new(FaultKind::CutAfterChunks { chunks: 2 }));
    // A JSON answer leaves a stream fault installed.
    assert_eq!(chat_status(&mock).await, 200);

    let (events, err) = mock.stream(&stream_request("one two three four")).await;
    assert!(err.is_some(), "the body must end in an error, not cleanly");
    assert!(!events.contains(&"[DONE]".to_owned()), "{events:?}");
    let chunks = chunks(&events);
    // The role chunk and two words, and no finish reason.
    assert_eq!(chunks.len(), 3, "{events:?}");
    assert_eq!(common::streamed_text(&chunks), "Echo: one ");
    assert!(finish_reasons(&chunks).is_empty());
    wait_for(&mock, |c| c.streams_cut == 1).await;

    // Used up: the next stream is whole.
    let (events, err) = mock.stream(&stream_request("one two")).await;
    assert!(err.is_none());
    assert_eq!(events.last().unwrap(), "[DONE]");
    let c = mock.handle.counters();
    assert_eq!(
        (c.faults_fired, c.streams_started, c.streams_completed),
        (1, 2, 1)
    );
}

#[tokio::test]
async fn cut_beyond_the_answer_still_stops_before_the_finish_chunk() {
    let mock = start().await;
    mock.handle
        .set_fault(Fault::new(FaultKind::CutAfterChunks { chunks: 100 }));
    let (events, err) = mock.stream(&stream_request("hi")).await;
    assert!(err.is_some());
    let chunks = chunks(&events);
    assert_eq!(common::streamed_text(&chunks), "Echo: hi");
    assert!(finish_reasons(&chunks).is_empty());
}

#[tokio::test]
async fn stall_after_chunks_keeps_the_connection_open_and_silent() {
    let mock = start().await;
    mock.handle
        .set_fault(Fault::new(FaultKind::StallAfterChunks { chunks: 1 }).times(1));
    let mut resp = mock
        .post("/v1/chat/completions", &stream_request("one two three"))
        .send()
        .await
        .unwrap();
    let mut text = String::new();
    while text.matches("\n\n").count() < 2 {
        let chunk = tokio::time::timeout(Duration::from_secs(2), resp.chunk())
            .await
            .expect("role chunk and one word arrive")
            .unwrap()
            .unwrap();
        text.push_str(std::str::from_utf8(&chunk).unwrap());
    }
    let events = sse_data(&text);
    assert_eq!(common::streamed_text(&chunks(&events)), "Echo: ");
    // Nothing more, and no end either.
    let next = tokio::time::timeout(Duration::from_millis(300), resp.chunk()).await;
    assert!(next.is_err(), "the stream must stall, got {next:?}");
    wait_for(&mock, |c| c.streams_stalled == 1).await;
    assert_eq!(mock.handle.counters().streams_cancelled, 0);

    // The client giving up is noticed.
    drop(resp);
    wait_for(&mock, |c| c.streams_cancelled == 1).await;
}

#[tokio::test]
async fn refuse_closes_the_connection_without_an_answer() {
    let mock = start().await;
    mock.handle
        .set_fault(Fault::new(FaultKind::Refuse).times(2));
    let err = mock
        .post("/v1/chat/completions", &common::chat_request("hi"))
        .send()
        .await
        .unwrap_err();
    assert!(!err.is_status(), "{err:?}");
    assert!(mock.http.get(mock.url("/v1/models")).send().await.is_err());
    assert_eq!(chat_status(&mock).await, 200);
    assert_eq!(mock.handle.counters().faults_fired, 2);
}

#[tokio::test]
async fn delay_ms_holds_the_head_back() {
    let mock = start().await;
    mock.handle
        .set_fault(Fault::new(FaultKind::DelayMs { ms: 250 }));
    let t = Instant::now();
    assert_eq!(mock.get_json("/v1/models").await.0, 200);
    assert!(t.elapsed() >= Duration::from_millis(250));
    let t = Instant::now();
    assert_eq!(mock.get_json("/v1/models").await.0, 200);
    assert!(
        t.elapsed() < Duration::from_millis(200),
        "applied once only"
    );
}

#[tokio::test]
async fn chunk_delay_paces_stream_events() {
    let mock = common::start_with(morpheus_openai_mock::MockConfig {
        chunk_delay: Duration::from_millis(40),
        ..Default::default()
    })
    .await;
    let t = Instant::now();
    // Role, 3 words, finish, [DONE]: five pauses.
    let (events, _) = mock.stream(&stream_request("a b")).await;
    assert_eq!(events.len(), 6);
    assert!(
        t.elapsed() >= Duration::from_millis(200),
        "{:?}",
        t.elapsed()
    );
}

#[tokio::test]
async fn control_surface_over_http() {
    let mock = start().await;
    let control = |path: &str| mock.url(&format!("/__mock/{path}"));

    let resp = mock
        .http
        .post(control("faults"))
        .body(r#"{"kind":"status","status":503,"retry_after":2,"times":2}"#)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let listed: Value = resp.json().await.unwrap();
    assert_eq!(
        listed["faults"],
        json!([{"kind": "status", "status": 503, "retry_after": 2, "times": 2, "route": "any"}])
    );
    mock.http
        .post(control("faults"))
        .body(r#"{"kind":"cut_after_chunks","chunks":1}"#)
        .send()
        .await
        .unwrap();
    let bad = mock
        .http
        .post(control("faults"))
        .body(r#"{"kind":"explode"}"#)
        .send()
        .await
        .unwrap();
    assert_eq!(bad.status(), 400);
    assert_eq!(mock.handle.faults().len(), 2);

    let resp = mock.http.delete(control("faults")).send().await.unwrap();
    assert_eq!(resp.json::<Value>().await.unwrap(), json!({"faults": []}));
    assert!(mock.handle.faults().is_empty());

    let last: Value = mock
        .http
        .get(control("last_request"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(last, Value::Null);
    let mut req = common::chat_request("hi");
    req["model"] = json!("gpt-4o-mini");
    assert_eq!(mock.post_json("/v1/chat/completions", &req).await.0, 200);
    let last: Value = mock
        .http
        .get(control("last_request"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(last["path"], "/v1/chat/completions");
    assert_eq!(last["body"]["model"], "gpt-4o-mini");

    let counters: Value = mock
        .http
        .get(control("counters"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(
        counters["requests"], 1,
        "the control surface is not counted: {counters}"
    );
    assert_eq!(counters["chat_completions"], 1);
    assert_eq!(counters["faults_fired"], 0);
    assert_eq!(
        mock.http
            .get(control("nothing"))
            .send()
            .await
            .unwrap()
            .status(),
        404
    );
}
