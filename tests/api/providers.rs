//! The operator's plain OpenAI-compatible providers beside the marketplace: provider-only
//! models, the provider's own model names, priority order, failover before the first byte
//! with cooldowns, and the usage record naming who served.

use std::time::Duration;

use morpheus_openai_mock::{Fault, FaultKind, MockConfig, MockHandle, MockProvider};
use serde_json::{Value, json};

use crate::market::{MarketApp, ask, openai_error, spawn_market_app_with, sse_events};

async fn mock(name: &str, models: &[&str]) -> MockHandle {
    MockProvider::start(
        MockConfig {
            name: name.to_owned(),
            models: models.iter().map(|m| (*m).to_owned()).collect(),
            ..MockConfig::default()
        },
        "127.0.0.1:0".parse().unwrap(),
    )
    .await
    .expect("the mock starts")
}

/// The app with a providers file of `text` (`{A}`, `{B}` stand for the mocks' base URLs).
async fn app_with(text: &str, mocks: &[&MockHandle]) -> MarketApp {
    app_continuing(text, mocks, false).await
}

/// The same, with mid-stream continuation `on` or off.
async fn app_continuing(text: &str, mocks: &[&MockHandle], on: bool) -> MarketApp {
    let mut text = text.to_owned();
    for (placeholder, mock) in ["{A}", "{B}"].iter().zip(mocks) {
        text = text.replace(placeholder, &mock.openai_base_url());
    }
    let path = std::env::temp_dir().join(format!("providers-{}.toml", uuid::Uuid::new_v4()));
    std::fs::write(&path, text).unwrap();
    spawn_market_app_with(move |s| {
        s.providers_file = Some(path);
        s.stream_continuation = on;
        s.chat_shed_lateness_ms = 0;
    })
    .await
}

/// Who served each of the user's requests, oldest first.
async fn upstreams_of(app: &MarketApp, user: i64, n: i64) -> Vec<String> {
    app.wait_for_usage(user, n).await;
    let mut served = Vec::new();
    for name in ["marketplace", "a", "b", "local"] {
        let count = app.count(&format!(
            "SELECT COUNT(*) AS n FROM usage_records WHERE user_id = {user} AND upstream = '{name}'"
        ));
        for _ in 0..count {
            served.push(name.to_owned());
        }
    }
    served
}

#[tokio::test]
async fn a_provider_only_model_is_listed_and_served_under_the_providers_own_name() {
    let local = mock("local", &["meta/llama-local", "text-embedding-3-small"]).await;
    let app = app_with(
        r#"
        [[providers]]
        name = "local"
        base_url = "{A}"
        models = [
          { name = "local-llama", upstream = "meta/llama-local", aliases = ["ll"] },
          { name = "small-embedder", upstream = "text-embedding-3-small", type = "EMBEDDING" },
        ]
        "#,
        &[&local],
    )
    .await;
    let user = app.seed_automated_user().await;
    let models = app.get_public_json("/api/v1/models").await;
    let listed: Vec<&Value> = models["data"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|m| m["id"] == "local-llama" || m["id"] == "small-embedder")
        .collect();
    assert_eq!(listed.len(), 2, "{models}");
    assert!(
        models["data"]
            .as_array()
            .unwrap()
            .iter()
            .any(|m| m["id"] == "llama-3.3-70b"),
        "the marketplace's models are still listed"
    );

    let r = app.chat(&user.api_key, &ask("ll", "hello provider")).await;
    assert_eq!(r.status(), 200);
    let body: Value = r.json().await.unwrap();
    assert_eq!(
        body["choices"][0]["message"]["content"],
        "Echo: hello provider"
    );
    assert_eq!(body["model"], "ll", "the name the client asked for");
    let sent = local.last_request().unwrap();
    assert_eq!(
        sent.body["model"], "meta/llama-local",
        "the provider's own name"
    );

    let mut streamed = ask("local-llama", "stream it");
    streamed["stream"] = json!(true);
    let r = app.chat(&user.api_key, &streamed).await;
    assert_eq!(r.status(), 200);
    let events = sse_events(r).await;
    assert_eq!(
        events.last().map(String::as_str),
        Some("[DONE]"),
        "{events:?}"
    );

    let r = app
        .post_with_key(
            "/api/v1/embeddings",
            &user.api_key,
            Some(&json!({"model": "small-embedder", "input": "vectors please"})),
        )
        .await;
    assert_eq!(r.status(), 200);
    let body: Value = r.json().await.unwrap();
    assert_eq!(body["model"], "small-embedder");
    assert_eq!(
        local.last_request().unwrap().body["model"],
        "text-embedding-3-small"
    );

    assert_eq!(
        app.sim.counters().sessions_opened,
        0,
        "no marketplace session"
    );
    assert_eq!(upstreams_of(&app, user.id, 3).await, ["local"; 3]);
}

#[tokio::test]
async fn a_gateway_without_a_marketplace_serves_its_providers_models() {
    let local = mock("local", &["meta/llama-local"]).await;
    let path = std::env::temp_dir().join(format!("providers-{}.toml", uuid::Uuid::new_v4()));
    let text = r#"
        [[providers]]
        name = "local"
        base_url = "{A}"
        models = [{ name = "local-llama", upstream = "meta/llama-local" }]
        "#
    .replace("{A}", &local.openai_base_url());
    std::fs::write(&path, text).unwrap();
    // No proxy-router at all: only the providers file.
    let app = crate::helpers::spawn_app_with(move |s| {
        s.providers_file = Some(path);
        s.chat_shed_lateness_ms = 0;
    })
    .await;
    let user = app.seed_user().await;
    let models = app.get_public_json("/api/v1/models").await;
    let ids: Vec<&str> = models["data"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|m| m["id"].as_str())
        .collect();
    assert_eq!(ids, ["local-llama"], "{models}");
    let chat = |body: Value| {
        let (app, key) = (&app, user.api_key.clone());
        async move {
            app.authed(
                reqwest::Method::POST,
                "/api/v1/chat/completions",
                &key,
                Some(&body),
            )
            .await
        }
    };
    let r = chat(ask("local-llama", "no marketplace")).await;
    assert_eq!(r.status(), 200);
    let body: Value = r.json().await.unwrap();
    assert_eq!(
        body["choices"][0]["message"]["content"],
        "Echo: no marketplace"
    );
    // With no model named, the default is the providers' chat model.
    let r = chat(json!({"messages": [{"role": "user", "content": "any model"}]})).await;
    assert_eq!(r.status(), 200);
    assert_eq!(local.counters().chat_completions, 2);
    // A model nobody serves is unknown, not "the list is not loaded yet".
    let r = chat(ask("llama-3.3-70b", "hi")).await;
    let error = openai_error(r, 404).await;
    assert_eq!(error["code"], "model_not_found", "{error}");
    // Ready for traffic, with the marketplace said to be absent.
    let r = app.client.get(app.url("/ready")).send().await.unwrap();
    assert_eq!(r.status(), 200);
    let ready: Value = r.json().await.unwrap();
    assert_eq!(ready["marketplace"], "not_configured", "{ready}");
}

#[tokio::test]
async fn sighup_re_reads_the_providers_file_without_a_restart() {
    let a = mock("a", &["house-upstream"]).await;
    let b = mock("b", &["house-upstream", "new-upstream"]).await;
    let path = std::env::temp_dir().join(format!("providers-{}.toml", uuid::Uuid::new_v4()));
    let declare = |text: &str| {
        let text = text
            .replace("{A}", &a.openai_base_url())
            .replace("{B}", &b.openai_base_url());
        std::fs::write(&path, text).unwrap();
    };
    declare(
        r#"
        [[providers]]
        name = "a"
        base_url = "{A}"
        models = [{ name = "house-model", upstream = "house-upstream" }]
        "#,
    );
    let file = path.clone();
    let app = spawn_market_app_with(move |s| {
        s.providers_file = Some(file);
        s.chat_shed_lateness_ms = 0;
    })
    .await;
    let user = app.seed_automated_user().await;
    assert_eq!(
        app.chat(&user.api_key, &ask("house-model", "one"))
            .await
            .status(),
        200
    );
    assert_eq!(a.counters().chat_completions, 1);

    // The model moves to `b`, with an alias, and `b` brings a model of its own.
    declare(
        r#"
        [[providers]]
        name = "b"
        base_url = "{B}"
        models = [
          { name = "house-model", upstream = "house-upstream", aliases = ["house"] },
          { name = "new-model", upstream = "new-upstream" },
        ]
        "#,
    );
    // SAFETY: sending a signal to this process; every gateway of the test binary listens.
    unsafe { libc::kill(libc::getpid(), libc::SIGHUP) };
    let (mut status, mut asked) = (0, 0);
    for _ in 0..100 {
        asked += 1;
        status = app
            .chat(&user.api_key, &ask("house", "two"))
            .await
            .status()
            .as_u16();
        if status == 200 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(status, 200, "the new alias resolves");
    assert_eq!(a.counters().chat_completions, 1, "`a` is no longer asked");
    assert_eq!(b.counters().chat_completions, 1);
    assert_eq!(b.last_request().unwrap().body["model"], "house-upstream");
    let models = app.get_public_json("/api/v1/models").await;
    assert!(
        models["data"]
            .as_array()
            .unwrap()
            .iter()
            .any(|m| m["id"] == "new-model"),
        "{models}"
    );
    assert_eq!(
        app.chat(&user.api_key, &ask("new-model", "three"))
            .await
            .status(),
        200
    );

    // A broken file is refused whole: the routing in force stays.
    declare("[[providers]]\nname = \"b\"\n");
    unsafe { libc::kill(libc::getpid(), libc::SIGHUP) };
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(
        app.chat(&user.api_key, &ask("house", "four"))
            .await
            .status(),
        200
    );
    assert_eq!(b.counters().chat_completions, 3);
    // Every request leaves a record; those refused before the re-read name no upstream.
    let records = 1 + asked + 2;
    assert_eq!(
        upstreams_of(&app, user.id, records).await,
        ["a", "b", "b", "b"]
    );
}

#[tokio::test]
async fn failover_from_a_provider_answering_503_to_the_next_with_no_client_visible_error() {
    let a = mock("a", &["llama-3.3-70b"]).await;
    let b = mock("b", &["llama-3.3-70b"]).await;
    let app = app_with(
        r#"
        [marketplace]
        priority = 10
        [[providers]]
        name = "a"
        base_url = "{A}"
        priority = 0
        models = [{ name = "llama-3.3-70b" }]
        [[providers]]
        name = "b"
        base_url = "{B}"
        priority = 1
        models = [{ name = "llama-3.3-70b" }]
        "#,
        &[&a, &b],
    )
    .await;
    let user = app.seed_automated_user().await;
    a.set_fault(
        Fault::new(FaultKind::Status {
            status: 503,
            retry_after: Some(30),
        })
        .times(1000),
    );
    let mut errors = 0;
    for i in 0..20 {
        let mut body = ask("llama-3.3-70b", &format!("request {i}"));
        if i % 2 == 1 {
            body["stream"] = json!(true);
        }
        let r = app.chat(&user.api_key, &body).await;
        if r.status() != 200 {
            errors += 1;
            continue;
        }
        if i % 2 == 1 {
            let events = sse_events(r).await;
            assert_eq!(events.last().map(String::as_str), Some("[DONE]"));
        }
    }
    println!(
        "providers: a answers 503 (Retry-After 30) → 20 requests, {errors} client-visible errors, \
         a asked {} time(s), b served {}",
        a.counters().chat_completions,
        b.counters().chat_completions
    );
    assert_eq!(errors, 0);
    assert_eq!(
        a.counters().chat_completions,
        1,
        "a is left alone for its Retry-After after the first 503"
    );
    assert_eq!(b.counters().chat_completions, 20);
    assert_eq!(app.sim.counters().sessions_opened, 0);
    assert_eq!(upstreams_of(&app, user.id, 20).await, ["b"; 20]);
}

#[tokio::test]
async fn a_stream_that_fails_before_its_first_event_and_an_unreachable_provider_hand_over() {
    let a = mock("a", &["llama-3.3-70b"]).await;
    let app = app_with(
        r#"
        cooldown_seconds = 1
        [marketplace]
        priority = 5
        [[providers]]
        name = "a"
        base_url = "{A}"
        models = [{ name = "llama-3.3-70b" }]
        [[providers]]
        name = "b"
        base_url = "http://127.0.0.1:9/v1"
        priority = 1
        models = [{ name = "llama-3.3-70b" }]
        "#,
        &[&a],
    )
    .await;
    let user = app.seed_automated_user().await;
    // a closes the connection without an answer; b cannot be reached: the marketplace serves.
    a.set_fault(Fault::new(FaultKind::Refuse));
    let mut body = ask("llama-3.3-70b", "anyone there");
    body["stream"] = json!(true);
    let r = app.chat(&user.api_key, &body).await;
    assert_eq!(r.status(), 200);
    let events = sse_events(r).await;
    assert_eq!(events.last().map(String::as_str), Some("[DONE]"));
    assert_eq!(
        app.sim.counters().sessions_opened,
        1,
        "the marketplace served"
    );
    assert_eq!(upstreams_of(&app, user.id, 1).await, ["marketplace"]);

    // After its cooldown, a is first again.
    tokio::time::sleep(Duration::from_millis(1_100)).await;
    let r = app
        .chat(&user.api_key, &ask("llama-3.3-70b", "again"))
        .await;
    assert_eq!(r.status(), 200);
    assert_eq!(upstreams_of(&app, user.id, 2).await, ["marketplace", "a"]);
}

#[tokio::test]
async fn a_request_the_provider_refuses_as_invalid_is_not_sent_elsewhere() {
    let a = mock("a", &["llama-3.3-70b"]).await;
    let b = mock("b", &["llama-3.3-70b"]).await;
    let app = app_with(
        r#"
        [[providers]]
        name = "a"
        base_url = "{A}"
        models = [{ name = "only-here", upstream = "llama-3.3-70b" }]
        [[providers]]
        name = "b"
        base_url = "{B}"
        priority = 1
        models = [{ name = "only-here", upstream = "llama-3.3-70b" }]
        "#,
        &[&a, &b],
    )
    .await;
    let user = app.seed_automated_user().await;
    a.set_fault(Fault::new(FaultKind::Status {
        status: 400,
        retry_after: None,
    }));
    let r = app.chat(&user.api_key, &ask("only-here", "bad?")).await;
    let error = openai_error(r, 400).await;
    assert!(error["message"].is_string(), "{error}");
    assert_eq!(b.counters().chat_completions, 0, "not sent elsewhere");
    // Every upstream failing: the client gets the last one's error, once.
    for mock in [&a, &b] {
        mock.set_fault(Fault::new(FaultKind::Status {
            status: 503,
            retry_after: None,
        }));
    }
    let r = app.chat(&user.api_key, &ask("only-here", "anyone?")).await;
    assert!(r.status().is_server_error(), "{}", r.status());
    assert_eq!(upstreams_of(&app, user.id, 2).await, ["a", "b"]);
}

/// Two providers of `llama-3.3-70b`, a first and b second, with continuation `on` or off.
async fn continuing_app(a: &MockHandle, b: &MockHandle, on: bool) -> MarketApp {
    let text = r#"
        [marketplace]
        priority = 10
        [[providers]]
        name = "a"
        base_url = "{A}"
        models = [{ name = "llama-3.3-70b" }]
        [[providers]]
        name = "b"
        base_url = "{B}"
        priority = 1
        models = [{ name = "llama-3.3-70b" }]
        "#;
    app_continuing(text, &[a, b], on).await
}

/// A key of the user that asks for mid-stream continuation.
async fn continuing_key(app: &MarketApp, access: &str) -> String {
    let r = app
        .authed(
            reqwest::Method::POST,
            "/api/v1/auth/keys",
            access,
            Some(&json!({"name": "continuing", "stream_continuation": true})),
        )
        .await;
    let key: Value = r.json().await.unwrap();
    assert_eq!(key["stream_continuation"], true, "{key}");
    key["key"].as_str().unwrap().to_owned()
}

fn chunks(events: &[String]) -> Vec<Value> {
    events
        .iter()
        .filter(|e| e.as_str() != "[DONE]")
        .map(|e| serde_json::from_str(e).unwrap())
        .collect()
}

#[tokio::test]
async fn a_stream_cut_after_10_chunks_is_continued_elsewhere_as_one_answer() {
    let a = mock("a", &["llama-3.3-70b"]).await;
    let b = mock("b", &["llama-3.3-70b"]).await;
    let app = continuing_app(&a, &b, true).await;
    let user = app.seed_automated_user().await;
    let key = continuing_key(&app, &user.access).await;
    a.set_fault(Fault::new(FaultKind::CutAfterChunks { chunks: 10 }));
    let words: Vec<String> = (1..=30).map(|i| format!("word{i}")).collect();
    let text = words.join(" ");
    let mut body = ask("llama-3.3-70b", &text);
    body["stream"] = json!(true);
    let r = app.chat(&key, &body).await;
    assert_eq!(r.status(), 200);
    let events = sse_events(r).await;
    assert_eq!(
        events.last().map(String::as_str),
        Some("[DONE]"),
        "{events:?}"
    );
    let chunks = chunks(&events);
    assert!(
        chunks.iter().all(|c| c.get("error").is_none()),
        "{events:?}"
    );
    let roles = chunks
        .iter()
        .filter(|c| !c["choices"][0]["delta"]["role"].is_null())
        .count();
    assert_eq!(roles, 1, "exactly one role delta: {events:?}");
    let ids: std::collections::HashSet<&str> =
        chunks.iter().filter_map(|c| c["id"].as_str()).collect();
    assert_eq!(ids.len(), 1, "one completion id: {ids:?}");
    let answer: String = chunks
        .iter()
        .filter_map(|c| c["choices"][0]["delta"]["content"].as_str())
        .collect();
    assert_eq!(answer, format!("Echo: {text}"), "no text lost or repeated");
    assert_eq!(a.counters().streams_cut, 1);
    assert_eq!(b.counters().chat_completions, 1);
    let asked = b.last_request().unwrap().body;
    let last = asked["messages"]
        .as_array()
        .unwrap()
        .last()
        .unwrap()
        .clone();
    assert_eq!(last["role"], "assistant", "a prefill: {asked}");
    assert!(
        format!("Echo: {text}").starts_with(last["content"].as_str().unwrap()),
        "{last}"
    );
    println!(
        "continuation: cut after 10 chunks → {} events, 1 role delta, 1 id, answer complete",
        events.len()
    );
    // Both legs are counted in the one record: the first leg's delivered text (estimated) and
    // the continuation's own count.
    app.wait_for_usage(user.id, 1).await;
    let completion = app.count(&format!(
        "SELECT CAST(completion_tokens AS BIGINT) AS n FROM usage_records WHERE user_id = {}",
        user.id
    ));
    println!("continuation: completion tokens recorded {completion}");
    // The continuation generates 21 of the answer's 31 words; the first leg adds its
    // delivered text's estimate (four characters a token) to that.
    assert!(completion >= 32, "both legs counted: {completion}");
    assert_eq!(upstreams_of(&app, user.id, 1).await, ["b"]);
}

#[tokio::test]
async fn a_cut_tool_call_stream_and_a_cut_not_opted_in_end_with_the_error_event() {
    let a = mock("a", &["llama-3.3-70b"]).await;
    let b = mock("b", &["llama-3.3-70b"]).await;
    let app = continuing_app(&a, &b, true).await;
    let user = app.seed_automated_user().await;
    let key = continuing_key(&app, &user.access).await;
    let tools = json!([{"type": "function", "function": {"name": "lookup", "parameters": {"type": "object", "properties": {"query": {"type": "string"}}}}}]);
    a.set_fault(Fault::new(FaultKind::CutAfterChunks { chunks: 1 }));
    let body = json!({
        "model": "llama-3.3-70b",
        "stream": true,
        "tools": tools,
        "messages": [{"role": "user", "content": "please lookup the weather"}],
    });
    let events = sse_events(app.chat(&key, &body).await).await;
    let last: Value = serde_json::from_str(events.last().unwrap()).unwrap();
    assert!(last.get("error").is_some(), "{events:?}");
    assert_eq!(
        b.counters().chat_completions,
        0,
        "a half tool call is not continued"
    );

    // Allowed by the operator, not asked for by the key: today's behaviour.
    a.set_fault(Fault::new(FaultKind::CutAfterChunks { chunks: 3 }));
    let mut plain = ask("llama-3.3-70b", "one two three four five six seven");
    plain["stream"] = json!(true);
    let events = sse_events(app.chat(&user.api_key, &plain).await).await;
    let last: Value = serde_json::from_str(events.last().unwrap()).unwrap();
    assert!(last.get("error").is_some(), "not opted in: {events:?}");
    assert_eq!(b.counters().chat_completions, 0);

    let off = continuing_app(&a, &b, false).await;
    let user = off.seed_automated_user().await;
    let key = continuing_key(&off, &user.access).await;
    a.set_fault(Fault::new(FaultKind::CutAfterChunks { chunks: 3 }));
    let events = sse_events(off.chat(&key, &plain).await).await;
    let last: Value = serde_json::from_str(events.last().unwrap()).unwrap();
    assert!(
        last.get("error").is_some(),
        "off: today's behaviour: {events:?}"
    );
    assert_eq!(b.counters().chat_completions, 0);
}
