//! Chat completions in OpenAI's shapes: JSON, SSE framing, usage, prefill continuation, tools.

mod common;

use common::{
    CHAT_MODEL, chat_request, chunks, finish_reasons, start, stream_request, streamed_text,
};
use serde_json::{Value, json};

#[tokio::test]
async fn json_answer_echoes_the_last_user_message_in_openai_shape() {
    let mock = start().await;
    let (status, body) = mock
        .post_json("/v1/chat/completions", &chat_request("hello   big\nworld"))
        .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["object"], "chat.completion");
    assert!(body["id"].as_str().unwrap().starts_with("chatcmpl-"));
    assert!(body["created"].as_u64().unwrap() > 1_700_000_000);
    assert_eq!(body["model"], CHAT_MODEL);
    let choice = &body["choices"][0];
    assert_eq!(body["choices"].as_array().unwrap().len(), 1);
    assert_eq!(choice["index"], 0);
    assert_eq!(choice["message"]["role"], "assistant");
    assert_eq!(choice["message"]["content"], "Echo: hello big world");
    assert_eq!(choice["finish_reason"], "stop");
    assert!(choice["message"].get("tool_calls").is_none());
    // Words of every message: "be brief" + "hello big world"; the answer's four words.
    assert_eq!(
        body["usage"],
        json!({"prompt_tokens": 5, "completion_tokens": 4, "total_tokens": 9})
    );
}

#[tokio::test]
async fn max_tokens_cuts_the_answer_with_finish_reason_length() {
    let mock = start().await;
    let mut req = chat_request("one two three four");
    req["max_tokens"] = json!(2);
    let (_, body) = mock.post_json("/v1/chat/completions", &req).await;
    assert_eq!(body["choices"][0]["message"]["content"], "Echo: one");
    assert_eq!(body["choices"][0]["finish_reason"], "length");
    assert_eq!(body["usage"]["completion_tokens"], 2);

    req["stream"] = json!(true);
    let (events, err) = mock.stream(&req).await;
    assert!(err.is_none());
    let chunks = chunks(&events);
    assert_eq!(streamed_text(&chunks), "Echo: one");
    assert_eq!(finish_reasons(&chunks), ["length"]);
}

#[tokio::test]
async fn stream_is_sse_chunks_ending_with_done_and_no_usage_unless_asked() {
    let mock = start().await;
    let (events, err) = mock.stream(&stream_request("hello world")).await;
    assert!(err.is_none(), "{err:?}");
    assert_eq!(events.last().unwrap(), "[DONE]");
    let chunks = chunks(&events);
    // Role chunk, one per word, the finish chunk.
    assert_eq!(chunks.len(), 5, "{events:?}");
    for c in &chunks {
        assert_eq!(c["object"], "chat.completion.chunk");
        assert_eq!(c["model"], CHAT_MODEL);
        assert_eq!(c["id"], chunks[0]["id"]);
        assert!(c.get("usage").is_none(), "{c}");
    }
    assert_eq!(
        chunks[0]["choices"][0]["delta"],
        json!({"role": "assistant", "content": ""})
    );
    let words: Vec<&str> = chunks[1..4]
        .iter()
        .map(|c| c["choices"][0]["delta"]["content"].as_str().unwrap())
        .collect();
    assert_eq!(words, ["Echo: ", "hello ", "world"]);
    assert!(
        chunks[..4]
            .iter()
            .all(|c| c["choices"][0]["finish_reason"].is_null())
    );
    assert_eq!(chunks[4]["choices"][0]["delta"], json!({}));
    assert_eq!(chunks[4]["choices"][0]["finish_reason"], "stop");

    // The deltas concatenate to the JSON answer.
    let (_, body) = mock
        .post_json("/v1/chat/completions", &chat_request("hello world"))
        .await;
    assert_eq!(
        body["choices"][0]["message"]["content"],
        streamed_text(&chunks)
    );
    assert_eq!(body["id"], chunks[0]["id"]);
    let c = mock.handle.counters();
    assert_eq!((c.streams_started, c.chat_completions), (1, 2));
}

#[tokio::test]
async fn include_usage_adds_a_final_usage_chunk_with_empty_choices() {
    let mock = start().await;
    let mut req = stream_request("hello world");
    req["stream_options"] = json!({"include_usage": true});
    let (events, err) = mock.stream(&req).await;
    assert!(err.is_none());
    assert_eq!(events.last().unwrap(), "[DONE]");
    let chunks = chunks(&events);
    let (last, rest) = chunks.split_last().unwrap();
    assert_eq!(last["choices"], json!([]));
    assert_eq!(
        last["usage"],
        json!({"prompt_tokens": 4, "completion_tokens": 3, "total_tokens": 7})
    );
    // As OpenAI: every other chunk carries `"usage": null`.
    assert!(
        rest.iter()
            .all(|c| c["usage"] == Value::Null && c.get("usage").is_some())
    );
    assert_eq!(finish_reasons(&chunks), ["stop"]);

    req["stream_options"] = json!({"include_usage": false});
    let (events, _) = mock.stream(&req).await;
    assert!(
        common::chunks(&events)
            .iter()
            .all(|c| c.get("usage").is_none())
    );
}

#[tokio::test]
async fn assistant_prefill_is_continued_not_repeated() {
    let mock = start().await;
    let conversation = |prefill: &str| {
        json!({
            "model": CHAT_MODEL,
            "messages": [
                {"role": "user", "content": "hello big world"},
                {"role": "assistant", "content": prefill}
            ]
        })
    };
    // Cut mid-word: the rest of the word, then the other words.
    let (_, body) = mock
        .post_json("/v1/chat/completions", &conversation("Echo: hello bi"))
        .await;
    assert_eq!(body["choices"][0]["message"]["content"], "g world");
    assert_eq!(body["choices"][0]["finish_reason"], "stop");
    assert_eq!(body["usage"]["completion_tokens"], 2);

    // Streamed, cut after a whole word: the prefill and the deltas make the full answer.
    let mut req = conversation("Echo: hello ");
    req["stream"] = json!(true);
    let (events, _) = mock.stream(&req).await;
    let chunks = chunks(&events);
    assert_eq!(chunks[0]["choices"][0]["delta"]["role"], "assistant");
    assert_eq!(streamed_text(&chunks), "big world");
    assert_eq!(
        format!("Echo: hello {}", streamed_text(&chunks)),
        "Echo: hello big world"
    );

    // `max_tokens` counts the new words only.
    let mut req = conversation("Echo:");
    req["max_tokens"] = json!(2);
    let (_, body) = mock.post_json("/v1/chat/completions", &req).await;
    assert_eq!(body["choices"][0]["message"]["content"], " hello big");
    assert_eq!(body["choices"][0]["finish_reason"], "length");

    // A prefill that is not a prefix of the answer gets the whole answer.
    let (_, body) = mock
        .post_json("/v1/chat/completions", &conversation("Something else"))
        .await;
    assert_eq!(
        body["choices"][0]["message"]["content"],
        "Echo: hello big world"
    );

    // The whole answer as prefill: nothing left to say.
    let (_, body) = mock
        .post_json(
            "/v1/chat/completions",
            &conversation("Echo: hello big world"),
        )
        .await;
    assert_eq!(body["choices"][0]["message"]["content"], "");
    assert_eq!(body["choices"][0]["finish_reason"], "stop");

    // A test can see that the continuation request carried the prefill.
    let last = mock.handle.last_request().unwrap();
    assert_eq!(last.path, "/v1/chat/completions");
    assert_eq!(last.body["messages"][1]["content"], "Echo: hello big world");
}

fn tools() -> Value {
    json!([{"type": "function", "function": {"name": "lookup", "parameters": {"type": "object"}}},
           {"type": "function", "function": {"name": "weather", "parameters": {"type": "object"}}}])
}

#[tokio::test]
async fn lookup_with_tools_is_a_tool_call() {
    let mock = start().await;
    let mut req = chat_request("please lookup rust");
    req["tools"] = tools();
    let (_, body) = mock.post_json("/v1/chat/completions", &req).await;
    let choice = &body["choices"][0];
    assert_eq!(choice["finish_reason"], "tool_calls");
    assert_eq!(choice["message"]["content"], Value::Null);
    let call = &choice["message"]["tool_calls"][0];
    assert!(call["id"].as_str().unwrap().starts_with("call_"));
    assert_eq!(call["type"], "function");
    assert_eq!(call["function"]["name"], "lookup");
    let args: Value =
        serde_json::from_str(call["function"]["arguments"].as_str().unwrap()).unwrap();
    assert_eq!(args, json!({"query": "please lookup rust"}));

    // Streamed: role chunk, id and name, arguments, finish.
    req["stream"] = json!(true);
    let (events, _) = mock.stream(&req).await;
    let chunks = chunks(&events);
    assert_eq!(chunks.len(), 4, "{events:?}");
    let head = &chunks[1]["choices"][0]["delta"]["tool_calls"][0];
    assert_eq!(head["index"], 0);
    assert_eq!(head["id"], call["id"]);
    assert_eq!(head["function"]["name"], "lookup");
    let args = &chunks[2]["choices"][0]["delta"]["tool_calls"][0];
    assert_eq!(args["function"]["arguments"], call["function"]["arguments"]);
    assert_eq!(finish_reasons(&chunks), ["tool_calls"]);

    // A tool named in the text is the one called; `tool_choice` can name one or forbid calls.
    req["stream"] = json!(false);
    req["messages"][1]["content"] = json!("what is the weather");
    let (_, body) = mock.post_json("/v1/chat/completions", &req).await;
    assert_eq!(
        body["choices"][0]["message"]["tool_calls"][0]["function"]["name"],
        "weather"
    );
    req["tool_choice"] = json!({"type": "function", "function": {"name": "lookup"}});
    let (_, body) = mock.post_json("/v1/chat/completions", &req).await;
    assert_eq!(
        body["choices"][0]["message"]["tool_calls"][0]["function"]["name"],
        "lookup"
    );
    req["tool_choice"] = json!("none");
    let (_, body) = mock.post_json("/v1/chat/completions", &req).await;
    assert_eq!(
        body["choices"][0]["message"]["content"],
        "Echo: what is the weather"
    );
}

#[tokio::test]
async fn after_a_tool_result_the_answer_is_text() {
    let mock = start().await;
    let req = json!({
        "model": CHAT_MODEL,
        "tools": tools(),
        "messages": [
            {"role": "user", "content": "lookup rust"},
            {"role": "assistant", "content": null, "tool_calls": [{"id": "call_1", "type": "function",
                "function": {"name": "lookup", "arguments": "{}"}}]},
            {"role": "tool", "tool_call_id": "call_1", "content": "Rust is a language"}
        ]
    });
    let (_, body) = mock.post_json("/v1/chat/completions", &req).await;
    assert_eq!(
        body["choices"][0]["message"]["content"],
        "Echo: lookup rust"
    );
    assert_eq!(body["choices"][0]["finish_reason"], "stop");
}

#[tokio::test]
async fn content_parts_are_read_as_text() {
    let mock = start().await;
    let req = json!({"model": CHAT_MODEL, "messages": [{"role": "user", "content": [
        {"type": "text", "text": "look at"},
        {"type": "image_url", "image_url": {"url": "data:image/png;base64,AAAA"}},
        {"type": "text", "text": "this"}
    ]}]});
    let (_, body) = mock.post_json("/v1/chat/completions", &req).await;
    assert_eq!(
        body["choices"][0]["message"]["content"],
        "Echo: look at this"
    );
}

#[tokio::test]
async fn bad_requests_get_openai_errors() {
    let mock = start().await;
    let error_of = |body: &Value| body["error"].clone();

    let resp = mock
        .http
        .post(mock.url("/v1/chat/completions"))
        .body("{not json")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 400);
    let body: Value = resp.json().await.unwrap();
    let error = error_of(&body);
    assert_eq!(error["type"], "invalid_request_error");
    for key in ["message", "type", "param", "code"] {
        assert!(error.get(key).is_some(), "{key} missing: {body}");
    }

    let mut req = chat_request("hi");
    req["model"] = json!("gpt-9");
    let (status, body) = mock.post_json("/v1/chat/completions", &req).await;
    assert_eq!(status, 404);
    assert_eq!(body["error"]["code"], "model_not_found");
    assert_eq!(body["error"]["param"], "model");

    let (status, body) = mock
        .post_json(
            "/v1/chat/completions",
            &json!({"model": CHAT_MODEL, "messages": []}),
        )
        .await;
    assert_eq!(status, 400);
    assert_eq!(body["error"]["param"], "messages");

    let mut req = chat_request("hi");
    req["max_tokens"] = json!(0);
    let (status, body) = mock.post_json("/v1/chat/completions", &req).await;
    assert_eq!(
        (status, body["error"]["param"].clone()),
        (400, json!("max_tokens"))
    );

    let (status, body) = mock.get_json("/v1/nothing").await;
    assert_eq!(status, 404);
    assert_eq!(body["error"]["message"], "Invalid URL (GET /v1/nothing)");

    let resp = mock
        .http
        .get(mock.url("/v1/chat/completions"))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 405);
    assert_eq!(resp.headers()["allow"], "POST");
}

#[tokio::test]
async fn models_lists_the_configured_names() {
    let mock = common::start_with(morpheus_openai_mock::MockConfig {
        name: "vllm-a".to_owned(),
        models: vec!["qwen-2.5-7b".to_owned()],
        ..Default::default()
    })
    .await;
    let resp = mock.http.get(mock.url("/v1/models")).send().await.unwrap();
    assert_eq!(resp.headers()["x-mock-provider"], "vllm-a");
    let body: Value = resp.json().await.unwrap();
    assert_eq!(
        body,
        json!({"object": "list", "data": [
            {"id": "qwen-2.5-7b", "object": "model", "created": 1_700_000_000u64, "owned_by": "vllm-a"}
        ]})
    );
    let (status, body) = mock.get_json("/v1/models/qwen-2.5-7b").await;
    assert_eq!((status, body["id"].clone()), (200, json!("qwen-2.5-7b")));
    let (status, body) = mock.get_json("/v1/models/llama-3.3-70b").await;
    assert_eq!(
        (status, body["error"]["code"].clone()),
        (404, json!("model_not_found"))
    );
    assert_eq!(mock.handle.counters().models, 3);

    let defaults = start().await;
    let (_, body) = defaults.get_json("/v1/models").await;
    let ids: Vec<&str> = body["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["id"].as_str().unwrap())
        .collect();
    assert_eq!(
        ids,
        [
            "llama-3.3-70b",
            "gpt-4o-mini",
            "text-embedding-3-small",
            "tts-1",
            "whisper-1"
        ]
    );
}
