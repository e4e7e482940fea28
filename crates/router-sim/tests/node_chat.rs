//! The real node's chat behaviour: what it writes and when, its `providerModelError`s, what the
//! provider receives after go-openai, and errors appended to a 200.

mod common;

use std::time::{Duration, Instant};

use common::{json_events, sse_data, start, start_with, stream_request, user_message};
use morpheus_router_sim::{FaultKind, FaultRoute, ProviderLatency, SimConfig};
use serde_json::{Value, json};

#[tokio::test]
async fn answers_are_written_as_go_writes_them() {
    let sim = start().await;
    let sid = sim.open_llama().await;
    let raw = sim
        .chat(&sid, &user_message("<b>fish & chips</b>"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    // Top-level keys sorted, `<>&` escaped.
    assert!(raw.starts_with(r#"{"choices":[{"#), "{raw}");
    let keys: Vec<usize> = [
        "\"choices\"",
        "\"created\"",
        "\"id\"",
        "\"model\"",
        "\"object\"",
        "\"system_fingerprint\"",
        "\"usage\"",
        "\"usage_from_consumer\"",
        "\"usage_from_provider\"",
    ]
    .iter()
    .map(|k| raw.rfind(k).unwrap_or_else(|| panic!("{k} in {raw}")))
    .collect();
    assert!(keys.windows(2).all(|w| w[0] < w[1]), "{raw}");
    assert!(
        raw.contains(r#"Echo: \u003cb\u003efish \u0026 chips\u003c/b\u003e"#),
        "{raw}"
    );
    let body: Value = serde_json::from_str(&raw).unwrap();
    assert_eq!(
        body["choices"][0]["message"]["content"],
        "Echo: <b>fish & chips</b>"
    );

    let raw = sim
        .chat(&sid, &stream_request("<i>"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        raw.contains(r#"\u003ci\u003e"#) && !raw.contains("<i>"),
        "{raw}"
    );
    assert!(raw.starts_with(r#"data: {"choices":"#), "{raw}");
}

#[tokio::test]
async fn node_usage_fields_can_be_left_out() {
    let sim = start_with(SimConfig {
        node_usage_fields: false,
        ..SimConfig::default()
    })
    .await;
    let sid = sim.open_llama().await;
    let body = sim.chat_json(&sid, &user_message("hi")).await;
    assert!(body.get("usage_from_consumer").is_none() && body["usage"].is_object());
    let text = sim
        .chat(&sid, &stream_request("hi"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(!text.contains("usage"), "{text}");
}

#[tokio::test]
async fn a_tool_call_stream_counts_no_completion_tokens_at_the_node() {
    let sim = start().await;
    let sid = sim.open_llama().await;
    let mut req = stream_request("search this");
    req["tools"] = json!([{"type": "function", "function": {"name": "search"}}]);
    let text = sim
        .chat(&sid, &req)
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let chunks = json_events(&sse_data(&text));
    let finish = chunks.last().unwrap();
    assert_eq!(finish["choices"][0]["finish_reason"], "tool_calls");
    // The node counts only `delta.content`, which a tool call has none of.
    assert_eq!(finish["usage_from_consumer"]["completion_tokens"], 0);
}

#[tokio::test]
async fn a_json_answer_arrives_whole_after_the_whole_generation() {
    let sim = start_with(SimConfig {
        provider_latency: ProviderLatency {
            first_token: Duration::from_millis(100),
            per_token: Duration::from_millis(20),
        },
        ..SimConfig::default()
    })
    .await;
    let sid = sim.open_llama().await;
    // "Echo:" + 9 words: 10 tokens → 100 + 10 × 20 = 300 ms before the head.
    let text = "one two three four five six seven eight nine";
    let t0 = Instant::now();
    let resp = sim.chat(&sid, &user_message(text)).send().await.unwrap();
    assert!(
        t0.elapsed() >= Duration::from_millis(300),
        "{:?}",
        t0.elapsed()
    );
    assert_eq!(resp.status(), 200);

    // A stream's head comes with its first token, before the rest: the events after it follow
    // one token apart (role, 10 words, finish, [DONE]: 12 gaps of 20 ms).
    let t0 = Instant::now();
    let mut resp = sim.chat(&sid, &stream_request(text)).send().await.unwrap();
    let head = t0.elapsed();
    assert!(head >= Duration::from_millis(100), "{head:?}");
    while resp.chunk().await.unwrap().is_some() {}
    let rest = t0.elapsed() - head;
    assert!(
        rest >= Duration::from_millis(12 * 20),
        "{rest:?} after the head"
    );
}

#[tokio::test]
async fn backend_errors_become_provider_model_errors() {
    let sim = start().await;
    let sid = sim.open_llama().await;
    let cases = [
        (
            FaultKind::backend_rate_limited(Some(20)),
            "Please try again in 20s",
            Some("rate_limit_exceeded"),
        ),
        (
            FaultKind::backend_rate_limited(None),
            "Rate limit reached",
            Some("rate_limit_exceeded"),
        ),
        (
            FaultKind::backend_server_error(),
            "The server had an error",
            None,
        ),
        (
            FaultKind::backend_bad_key(),
            "Incorrect API key",
            Some("invalid_api_key"),
        ),
        (
            FaultKind::backend_forbidden(),
            "does not have access",
            Some("model_not_found"),
        ),
        (
            FaultKind::backend_model_not_found(),
            "does not exist",
            Some("model_not_found"),
        ),
        (
            FaultKind::backend_context_length(),
            "maximum context length",
            Some("context_length_exceeded"),
        ),
    ];
    for (kind, message, code) in cases {
        for stream in [false, true] {
            sim.fault(FaultRoute::Chat, kind.clone(), Some(1));
            let req = if stream {
                stream_request("hi")
            } else {
                user_message("hi")
            };
            let resp = sim.chat(&sid, &req).send().await.unwrap();
            assert_eq!(resp.status(), 400, "{kind:?}");
            assert_eq!(resp.headers()["content-type"], "application/json");
            let raw = resp.text().await.unwrap();
            // Re-marshalled from a Go map: keys sorted.
            assert!(
                raw.starts_with(r#"{"providerModelError":{"error":{"code":"#),
                "{raw}"
            );
            let body: Value = serde_json::from_str(&raw).unwrap();
            let error = &body["providerModelError"]["error"];
            assert!(
                error["message"].as_str().unwrap().contains(message),
                "{raw}"
            );
            assert_eq!(error["code"].as_str(), code, "{raw}");
        }
    }
    // A body that is not JSON is wrapped.
    sim.fault(FaultRoute::Chat, FaultKind::backend_unavailable(), Some(1));
    let resp = sim.chat(&sid, &user_message("hi")).send().await.unwrap();
    assert_eq!(resp.status(), 400);
    assert_eq!(
        resp.json::<Value>().await.unwrap(),
        json!({"providerModelError": {"error": {
            "message": "upstream connect error or disconnect/reset before headers. reset reason: connection failure",
            "type": "upstream_error"}}})
    );
    // Over HTTP.
    let f = json!({"route": "chat", "kind": {"type": "backend_error", "status": 502, "body": " Bad Gateway "}, "times": 1});
    common::client()
        .post(sim.url("/__sim/faults"))
        .json(&f)
        .send()
        .await
        .unwrap();
    let body: Value = sim
        .chat(&sid, &user_message("hi"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(
        body["providerModelError"]["error"]["message"],
        "Bad Gateway"
    );
}

#[tokio::test]
async fn the_provider_receives_the_body_go_openai_made() {
    let sim = start().await;
    let sid = sim.open_llama().await;
    let resp = sim
        .chat(
            &sid,
            &json!({"messages": [{"role": "user", "content": "hi"}], "stop": "END"}),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 400);
    assert_eq!(
        resp.json::<Value>().await.unwrap(),
        json!({"error": "json: cannot unmarshal string into Go struct field base.stop of type []string"})
    );
    let resp = sim
        .chat(
            &sid,
            &json!({"messages": [{"role": "user", "content": "hi"}], "metadata": {"tries": 2}}),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 400);
    assert!(
        sim.handle.last_forwarded(&sid).is_none(),
        "refused before the provider"
    );

    let body = json!({
        "model": "llama", "temperature": 0, "top_p": 0.5, "max_tokens": 0, "n": 0,
        "messages": [{"role": "user", "content": [
            {"type": "text", "text": "listen to this"},
            {"type": "input_audio", "input_audio": {"data": "UklGRg==", "format": "wav"}}
        ]}],
        "vendor_option": {"keep": true}
    });
    let out = sim.chat_json(&sid, &body).await;
    // `max_tokens: 0` was dropped, so the answer is not cut to nothing.
    assert_eq!(
        out["choices"][0]["message"]["content"],
        "Echo: listen to this"
    );
    assert_eq!(out["choices"].as_array().unwrap().len(), 1);
    let (got, mut dropped) = sim.handle.last_forwarded(&sid).unwrap();
    dropped.sort();
    assert_eq!(
        dropped,
        [
            "max_tokens",
            "messages[0].content[1].input_audio",
            "n",
            "temperature"
        ]
    );
    assert_eq!(
        got,
        json!({
            "model": "llama-3.3-70b", "top_p": 0.5,
            "messages": [{"role": "user", "content": [
                {"type": "text", "text": "listen to this"}, {"type": "input_audio"}
            ]}],
            "vendor_option": {"keep": true}
        })
    );
    assert_eq!(sim.handle.counters().forwarded_fields_dropped, 4);
    // Over HTTP.
    let over_http: Value = common::client()
        .get(sim.url(&format!("/__sim/sessions/{sid}/forwarded")))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(over_http["body"], got);
    assert_eq!(over_http["dropped"].as_array().unwrap().len(), 4);
}

#[tokio::test]
async fn the_rewrite_can_be_turned_off() {
    let sim = start_with(SimConfig {
        rewrite_requests: false,
        ..SimConfig::default()
    })
    .await;
    let sid = sim.open_llama().await;
    let body =
        json!({"messages": [{"role": "user", "content": "hi"}], "stop": "END", "temperature": 0});
    sim.chat_json(&sid, &body).await;
    let (got, dropped) = sim.handle.last_forwarded(&sid).unwrap();
    assert_eq!(got["stop"], "END");
    assert_eq!(got["temperature"], 0);
    assert!(dropped.is_empty());
}

#[tokio::test]
async fn an_error_after_chunks_is_appended_raw() {
    let sim = start().await;
    let sid = sim.open_llama().await;
    sim.fault(
        FaultRoute::Chat,
        FaultKind::ErrorAfterChunks {
            chunks: 3,
            error: None,
        },
        Some(1),
    );
    let resp = sim
        .chat(&sid, &stream_request("a b c d e"))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let text = resp.text().await.unwrap();
    let (events, tail) = text.rsplit_once("\n\n").unwrap();
    assert_eq!(sse_data(&format!("{events}\n\n")).len(), 3);
    // No `data:`, no newline.
    assert_eq!(
        tail,
        r#"{"error":"provider request failed: provider error: error reading stream: unexpected EOF"}"#
    );
    assert!(
        sim.wait_for_counters(Duration::from_secs(1), |c| c.streams_completed == 1)
            .await
    );

    // On a JSON answer it follows the whole body.
    sim.fault(
        FaultRoute::Chat,
        FaultKind::ErrorAfterChunks {
            chunks: 0,
            error: Some("failed to store chat <history>".into()),
        },
        Some(1),
    );
    let text = sim
        .chat(&sid, &user_message("hi"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let (completion, error) = text.split_at(text.find(r#"}{"error""#).unwrap() + 1);
    assert_eq!(
        serde_json::from_str::<Value>(completion).unwrap()["object"],
        "chat.completion"
    );
    assert_eq!(
        error,
        r#"{"error":"failed to store chat \u003chistory\u003e"}"#
    );
}
