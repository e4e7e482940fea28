//! Session lifecycle and chat completions, JSON and streamed.

mod common;

use std::time::Duration;

use common::{
    json_events, sse_data, start, start_with, stream_request, streamed_text, user_message,
};
use morpheus_router_sim::{DEFAULT_WALLET, LLAMA_MODEL_ID, SimConfig};
use serde_json::{Value, json};

#[tokio::test]
async fn session_open_get_chat_expire() {
    let sim = start().await;
    let sid = sim.open_llama().await;
    assert!(sid.starts_with("0x") && sid.len() == 66, "{sid}");
    assert_ne!(sid, sim.open_llama().await, "session ids are fresh");

    let raw = sim.get_text(&format!("/blockchain/sessions/{sid}")).await;
    // 12e18 wei/s × 600 s, and the price: plain JSON numbers beyond u64 / 2^53, verbatim.
    assert!(raw.contains("\"Stake\":7200000000000000000000"), "{raw}");
    assert!(
        raw.contains("\"PricePerSecond\":12000000000000000000"),
        "{raw}"
    );
    let s: Value = serde_json::from_str::<Value>(&raw).unwrap()["session"].clone();
    assert_eq!(s["Id"], sid.as_str());
    assert_eq!(s["User"], DEFAULT_WALLET);
    assert_eq!(s["ModelAgentId"], LLAMA_MODEL_ID);
    assert_eq!(s["BidID"].as_str().unwrap().len(), 66);
    assert_eq!(s["Provider"].as_str().unwrap().len(), 42);
    assert_eq!(s["CloseoutReceipt"], "");
    assert_eq!(s["CloseoutType"], 0);
    assert_eq!(s["ProviderWithdrawnAmount"], 0);
    assert_eq!(s["ClosedAt"], 0);
    let opened = s["OpenedAt"].as_u64().unwrap();
    assert_eq!(s["EndsAt"].as_u64().unwrap(), opened + 600);
    assert!(opened.abs_diff(sim.handle.now_unix()) <= 1);

    // A JSON completion.
    let resp = sim
        .chat(&sid, &user_message("hello big  world"))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    assert_eq!(resp.headers()["content-type"], "application/json");
    let body: Value = resp.json().await.unwrap();
    assert_eq!(body["object"], "chat.completion");
    assert_eq!(body["model"], "llama-3.3-70b");
    assert_eq!(body["system_fingerprint"], "fp_sim");
    assert!(body["id"].as_str().unwrap().starts_with("chatcmpl-"));
    assert_eq!(body["id"].as_str().unwrap().len(), "chatcmpl-".len() + 16);
    assert_eq!(
        body["choices"][0]["message"],
        json!({"role": "assistant", "content": "Echo: hello big world"})
    );
    assert_eq!(body["choices"][0]["finish_reason"], "stop");
    // "be brief" + "hello big world" = 5 words in; "Echo: hello big world" = 4 out.
    assert_eq!(
        body["usage"],
        json!({"prompt_tokens": 5, "completion_tokens": 4, "total_tokens": 9})
    );
    // The node's own count adds 1 (role) + 3 (formatting) per message: 6 + 7 = 13.
    let node = json!({"completion_tokens": 4, "prompt_tokens": 13, "total_tokens": 17});
    assert_eq!(body["usage_from_consumer"], node);
    assert_eq!(body["usage_from_provider"], node);

    // The chain clock moves past EndsAt: the provider refuses the session without waiting.
    sim.handle.advance_clock(Duration::from_secs(601));
    let resp = sim.chat(&sid, &user_message("hi")).send().await.unwrap();
    assert_eq!(resp.status(), 500);
    assert_eq!(
        resp.json::<Value>().await.unwrap(),
        json!({"error": "provider request failed: provider error: session expired"})
    );
    let c = sim.handle.counters();
    assert_eq!((c.sessions_opened, c.chat_requests), (2, 2));
}

#[tokio::test]
async fn chat_with_n_max_tokens_and_array_content() {
    let sim = start().await;
    let sid = sim.open_llama().await;
    let body = json!({
        "messages": [{"role": "user", "content": [
            {"type": "text", "text": "one two"},
            {"type": "image_url", "image_url": {"url": "http://x"}},
            {"type": "text", "text": "three four five"}
        ]}],
        "n": 2, "max_tokens": 3, "temperature": 0.2, "unknown_field": {"a": 1}
    });
    let out: Value = sim.chat_json(&sid, &body).await;
    let choices = out["choices"].as_array().unwrap();
    assert_eq!(choices.len(), 2);
    for (i, c) in choices.iter().enumerate() {
        assert_eq!(c["index"], i);
        assert_eq!(c["message"]["content"], "Echo: one two");
        assert_eq!(c["finish_reason"], "length");
    }
    assert_eq!(
        out["usage"],
        json!({"prompt_tokens": 5, "completion_tokens": 3, "total_tokens": 8})
    );
}

#[tokio::test]
async fn streams_end_with_done_and_carry_usage_only_when_asked() {
    let sim = start().await;
    let sid = sim.open_llama().await;
    let resp = sim
        .chat(&sid, &stream_request("alpha beta gamma"))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    assert_eq!(resp.headers()["content-type"], "text/event-stream");
    let text = resp.text().await.unwrap();
    let events = sse_data(&text);
    assert_eq!(events.last().unwrap(), "[DONE]");
    let chunks = json_events(&events);
    // role, 4 words, finish; no usage chunk: the request did not ask for one.
    assert_eq!(chunks.len(), 6);
    assert!(!text.contains("\"usage\""), "{text}");
    let id = chunks[0]["id"].as_str().unwrap();
    for c in &chunks {
        assert_eq!(c["id"], id);
        assert_eq!(c["object"], "chat.completion.chunk");
        assert_eq!(c["model"], "llama-3.3-70b");
    }
    assert_eq!(
        chunks[0]["choices"][0]["delta"],
        json!({"role": "assistant", "content": ""})
    );
    assert_eq!(
        chunks[1]["choices"][0]["delta"],
        json!({"content": "Echo: "})
    );
    assert_eq!(streamed_text(&chunks, 0), "Echo: alpha beta gamma");
    assert_eq!(chunks[5]["choices"][0]["delta"], json!({}));
    assert_eq!(chunks[5]["choices"][0]["finish_reason"], "stop");
    // The final chunk carries the node's own counts (13 = 6 + 7, see above).
    let node = json!({"completion_tokens": 4, "prompt_tokens": 13, "total_tokens": 17});
    assert_eq!(chunks[5]["usage_from_consumer"], node);
    assert_eq!(chunks[5]["usage_from_provider"], node);
    assert!(
        chunks[..5]
            .iter()
            .all(|c| c.get("usage_from_consumer").is_none())
    );
    assert!(
        sim.wait_for_counters(Duration::from_secs(1), |c| c.streams_completed == 1
            && c.streams_active == 0)
            .await
    );
    assert_eq!(sim.handle.counters().streams_cancelled, 0);

    // Asked for: the backend's usage chunk, before [DONE], with the node's counts too.
    let mut req = stream_request("alpha beta gamma");
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
    assert_eq!(events.last().unwrap(), "[DONE]");
    let chunks = json_events(&events);
    assert_eq!(chunks.len(), 7);
    let usage = chunks.last().unwrap();
    assert_eq!(usage["choices"], json!([]));
    assert_eq!(
        usage["usage"],
        json!({"prompt_tokens": 5, "completion_tokens": 4, "total_tokens": 9})
    );
    assert_eq!(usage["usage_from_consumer"], node);
}

#[tokio::test]
async fn older_node_streams_without_done_and_with_n_and_max_tokens() {
    let sim = start_with(SimConfig {
        done_marker: false,
        node_usage_fields: false,
        usage_without_include_usage: true,
        ..SimConfig::default()
    })
    .await;
    let sid = sim.open_llama().await;
    let mut req = stream_request("a b c d e f");
    req["n"] = json!(2);
    req["max_tokens"] = json!(3);
    let text = sim
        .chat(&sid, &req)
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        !text.contains("[DONE]") && !text.contains("usage_from"),
        "{text}"
    );
    let chunks = json_events(&sse_data(&text));
    assert_eq!(streamed_text(&chunks, 0), "Echo: a b");
    assert_eq!(streamed_text(&chunks, 1), "Echo: a b");
    let finishes: Vec<&Value> = chunks
        .iter()
        .flat_map(|c| c["choices"].as_array().unwrap())
        .filter(|c| !c["finish_reason"].is_null())
        .collect();
    assert_eq!(finishes.len(), 2);
    assert!(finishes.iter().all(|c| c["finish_reason"] == "length"));
    // The old simulator's usage chunk, unasked.
    assert_eq!(chunks.last().unwrap()["usage"]["completion_tokens"], 3);
}

#[tokio::test]
async fn tool_calls_json_and_stream() {
    let sim = start().await;
    let sid = sim.open_llama().await;
    let tools = json!([
        {"type": "function", "function": {"name": "get_weather", "parameters": {"type": "object"}}},
        {"type": "function", "function": {"name": "search"}}
    ]);
    let mut req = user_message("please search the web");
    req["tools"] = tools.clone();
    let out: Value = sim.chat_json(&sid, &req).await;
    let msg = &out["choices"][0]["message"];
    assert_eq!(msg["content"], Value::Null);
    assert_eq!(out["choices"][0]["finish_reason"], "tool_calls");
    let call = &msg["tool_calls"][0];
    assert_eq!(call["type"], "function");
    assert!(call["id"].as_str().unwrap().starts_with("call_"));
    assert_eq!(call["function"]["name"], "search");
    let args: Value =
        serde_json::from_str(call["function"]["arguments"].as_str().unwrap()).unwrap();
    assert_eq!(args, json!({"query": "please search the web"}));

    // tool_choice names the function even if the message does not.
    let mut req = user_message("what now");
    req["tools"] = tools.clone();
    req["tool_choice"] = json!({"type": "function", "function": {"name": "get_weather"}});
    req["stream"] = json!(true);
    let text = sim
        .chat(&sid, &req)
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let chunks = json_events(&sse_data(&text));
    let head = &chunks[1]["choices"][0]["delta"]["tool_calls"][0];
    assert_eq!(head["function"]["name"], "get_weather");
    assert!(head["id"].as_str().unwrap().starts_with("call_"));
    let args: String = chunks
        .iter()
        .flat_map(|c| c["choices"].as_array().unwrap())
        .filter_map(|c| c["delta"]["tool_calls"][0]["function"]["arguments"].as_str())
        .collect();
    assert_eq!(
        serde_json::from_str::<Value>(&args).unwrap(),
        json!({"query": "what now"})
    );
    let finish = chunks
        .iter()
        .flat_map(|c| c["choices"].as_array().unwrap())
        .find(|c| !c["finish_reason"].is_null())
        .unwrap();
    assert_eq!(finish["finish_reason"], "tool_calls");

    // tool_choice "none": plain text.
    let mut req = user_message("please search");
    req["tools"] = tools;
    req["tool_choice"] = json!("none");
    let out: Value = sim.chat_json(&sid, &req).await;
    assert_eq!(
        out["choices"][0]["message"]["content"],
        "Echo: please search"
    );
}

#[tokio::test]
async fn concurrent_streams_carry_their_own_ids() {
    let sim = start().await;
    sim.handle.set_chunk_delay(Duration::from_millis(5));
    let sid = sim.open_llama().await;
    let texts = [
        "first request here",
        "second one",
        "a third, longer request with words",
    ];
    let results = futures_join(texts.iter().map(|t| {
        let req = sim.chat(&sid, &stream_request(t));
        async move { req.send().await.unwrap().text().await.unwrap() }
    }))
    .await;
    let mut ids = Vec::new();
    for (text, body) in texts.iter().zip(results) {
        let chunks = json_events(&sse_data(&body));
        let id = chunks[0]["id"].as_str().unwrap().to_owned();
        assert!(chunks.iter().all(|c| c["id"] == id.as_str()));
        assert_eq!(streamed_text(&chunks, 0), format!("Echo: {text}"));
        ids.push(id);
    }
    ids.sort();
    ids.dedup();
    assert_eq!(ids.len(), 3);
    // One session serves one request at a time: two of the three waited their turn.
    let c = sim.handle.counters();
    assert_eq!((c.session_waits, c.max_session_concurrency), (2, 3));
}

/// Runs futures concurrently on the test runtime without a futures crate.
async fn futures_join<F: std::future::Future<Output = String> + Send + 'static>(
    futs: impl Iterator<Item = F>,
) -> Vec<String> {
    let handles: Vec<_> = futs.map(tokio::spawn).collect();
    let mut out = Vec::new();
    for h in handles {
        out.push(h.await.unwrap());
    }
    out
}

#[tokio::test]
async fn chat_errors() {
    let sim = start().await;
    let resp = sim
        .post("/v1/chat/completions")
        .json(&user_message("x"))
        .send()
        .await
        .unwrap();
    // No session: the node looks for a local model with the zero id.
    assert_eq!(resp.status(), 500);
    assert_eq!(
        resp.json::<Value>().await.unwrap(),
        json!({"error": "model not found: 0x0000000000000000000000000000000000000000000000000000000000000000"})
    );
    let unknown = format!("0x{}", "2".repeat(64));
    let resp = sim.chat(&unknown, &user_message("x")).send().await.unwrap();
    assert_eq!(resp.status(), 500);
    assert_eq!(
        resp.json::<Value>().await.unwrap(),
        json!({"error": "session not found"})
    );
    let sid = sim.open_llama().await;
    let resp = sim
        .post("/v1/chat/completions")
        .header("session_id", &sid)
        .body("{not json")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 400);
}

#[tokio::test]
async fn close_list_and_bid_sessions() {
    let sim = start().await;
    let first = sim.open_llama().await;
    let second = sim.open_llama().await;

    let user =
        format!("/blockchain/sessions/user?user={DEFAULT_WALLET}&offset=0&limit=10&order=desc");
    let (status, list) = sim.get_json(&user).await;
    assert_eq!(status, 200);
    let ids: Vec<&str> = list["sessions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["Id"].as_str().unwrap())
        .collect();
    assert_eq!(ids, [second.as_str(), first.as_str()], "newest first");
    let (_, limited) = sim
        .get_json(&format!(
            "/blockchain/sessions/user?user={DEFAULT_WALLET}&limit=1&offset=1"
        ))
        .await;
    assert_eq!(limited["sessions"][0]["Id"], first.as_str());
    let other = format!("0x{}", "c".repeat(40));
    assert_eq!(
        sim.get_json(&format!("/blockchain/sessions/user?user={other}"))
            .await,
        (200, json!({"sessions": []}))
    );

    let resp = sim
        .post(&format!("/blockchain/sessions/{first}/close"))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let tx: Value = resp.json().await.unwrap();
    assert_eq!(tx["tx"].as_str().unwrap().len(), 66);
    let (_, s) = sim.get_json(&format!("/blockchain/sessions/{first}")).await;
    assert!(s["session"]["ClosedAt"].as_u64().unwrap() > 0);
    let resp = sim
        .post(&format!("/blockchain/sessions/{first}/close"))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 500);
    assert_eq!(
        resp.json::<Value>().await.unwrap(),
        json!({"error": "failed to send transaction: close session failed: failed to build transaction: EVM error: SessionAlreadyClosed() []"})
    );
    let resp = sim.chat(&first, &user_message("x")).send().await.unwrap();
    assert_eq!(
        resp.json::<Value>().await.unwrap(),
        json!({"error": "provider request failed: provider error: session expired"})
    );
    let unknown = format!("0x{}", "3".repeat(64));
    let resp = sim
        .post(&format!("/blockchain/sessions/{unknown}/close"))
        .send()
        .await
        .unwrap();
    assert_eq!(
        (resp.status().as_u16(), resp.json::<Value>().await.unwrap()),
        (
            500,
            json!({"error": "failed to get session report from user: session not found"})
        )
    );
    assert_eq!(
        sim.get_json(&format!("/blockchain/sessions/{unknown}"))
            .await,
        (500, json!({"error": "session not found"}))
    );
    assert_eq!(sim.handle.counters().sessions_closed, 1);

    // By bid: the second-best llama bid.
    let (_, bids) = sim
        .get_json(&format!("/blockchain/models/{LLAMA_MODEL_ID}/bids/rated"))
        .await;
    let bid = bids["bids"][1]["Bid"]["Id"].as_str().unwrap();
    let resp = sim
        .post(&format!("/blockchain/bids/{bid}/session"))
        .json(&json!({"sessionDuration": 300}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let sid = resp.json::<Value>().await.unwrap()["sessionID"]
        .as_str()
        .unwrap()
        .to_owned();
    let raw = sim.get_text(&format!("/blockchain/sessions/{sid}")).await;
    assert!(raw.contains("\"PricePerSecond\":9007199254740993"), "{raw}");
    assert!(raw.contains(&format!("\"BidID\":\"{bid}\"")));
    // An unknown bid reads as a zeroed bid, whose provider has no address to dial.
    let resp = sim
        .post(&format!("/blockchain/bids/{unknown}/session"))
        .json(&json!({"sessionDuration": 300}))
        .send()
        .await
        .unwrap();
    assert_eq!(
        (resp.status().as_u16(), resp.json::<Value>().await.unwrap()),
        (
            500,
            json!({"error": "failed to initiate session: provider request failed: code: 500, msg: <nil>, error: failed to connect to provider: dial tcp: missing address"})
        )
    );
}

#[tokio::test]
async fn session_open_errors() {
    let sim = start().await;
    let open = |model: String, body: Value| {
        let req = sim
            .post(&format!("/blockchain/models/{model}/session"))
            .json(&body);
        async move {
            let resp = req.send().await.unwrap();
            (resp.status().as_u16(), resp.json::<Value>().await.unwrap())
        }
    };
    let no_bids = json!({"error": "no bids available"});
    let retired = morpheus_router_sim::default_models()
        .into_iter()
        .find(|m| m.is_deleted)
        .unwrap()
        .id;
    assert_eq!(
        open(retired, json!({"sessionDuration": 600})).await,
        (500, no_bids.clone())
    );
    assert_eq!(
        open(
            format!("0x{}", "4".repeat(64)),
            json!({"sessionDuration": 600})
        )
        .await,
        (500, no_bids)
    );
    // Below the contract's 5 minutes (zero and negative included): the open transaction reverts.
    let too_short = json!({"error": "failed to send transaction: open session failed: failed to build transaction: EVM error: SessionTooShort() []"});
    for body in [
        json!({"sessionDuration": 0}),
        json!({"sessionDuration": -5}),
        json!({"sessionDuration": 299}),
        json!({"sessionDuration": "299"}),
    ] {
        assert_eq!(
            open(LLAMA_MODEL_ID.to_owned(), body.clone()).await,
            (500, too_short.clone()),
            "{body}"
        );
    }
    assert_eq!(
        open(LLAMA_MODEL_ID.to_owned(), json!({"sessionDuration": "ten"})).await,
        (400, json!({"error": "invalid big.Int string: ten"}))
    );
    assert_eq!(
        open("0xnothex".into(), json!({"sessionDuration": 600}))
            .await
            .0,
        400
    );
    assert_eq!(sim.handle.counters().sessions_opened, 0);
    // Exactly the minimum, as a number or a decimal string, is accepted.
    for body in [
        json!({"sessionDuration": 300}),
        json!({"sessionDuration": "300"}),
    ] {
        assert_eq!(open(LLAMA_MODEL_ID.to_owned(), body).await.0, 200);
    }
}

#[tokio::test]
async fn an_open_without_a_duration_drops_the_connection() {
    let sim = start().await;
    for body in [
        json!({}),
        json!({"sessionDuration": null, "failover": false}),
    ] {
        let err = sim
            .post(&format!("/blockchain/models/{LLAMA_MODEL_ID}/session"))
            .json(&body)
            .send()
            .await
            .unwrap_err();
        assert!(!err.is_timeout() && !err.is_status(), "{err:?}");
    }
    let err = sim
        .post(&format!("/blockchain/bids/0x{}/session", "5".repeat(64)))
        .json(&json!({}))
        .send()
        .await
        .unwrap_err();
    assert!(!err.is_timeout(), "{err:?}");
    assert_eq!(sim.handle.counters().sessions_opened, 0);
}
