//! `POST /api/v1/chat/completions` against the simulator: sessions chosen and opened for the
//! key, OpenAI shapes in and out, and one usage record per request.

use std::sync::Arc;

use serde_json::{Value, json};

use crate::helpers::spawn_app;
use std::time::Duration;

use morpheus_router_sim::{ProviderLatency, SimConfig};

use crate::market::{
    ask, openai_error, sim_config, spawn_market_app, spawn_market_app_on, sse_events,
};

#[tokio::test]
async fn a_completion_runs_on_a_session_opened_for_the_key_and_reused() {
    let app = spawn_market_app().await;
    let user = app.seed_automated_user().await;
    let r = app
        .chat(&user.api_key, &ask("llama-3.3-70b", "hello there"))
        .await;
    assert_eq!(r.status(), 200);
    let body: Value = r.json().await.unwrap();
    assert_eq!(body["object"], "chat.completion");
    assert_eq!(
        body["model"], "llama-3.3-70b",
        "the model the client asked for"
    );
    assert_eq!(
        body["choices"][0]["message"]["content"],
        "Echo: hello there"
    );
    assert!(body["usage"]["total_tokens"].as_u64().unwrap() > 0);

    let again = app
        .chat(&user.api_key, &ask("llama-3.3-70b", "again"))
        .await;
    assert_eq!(again.status(), 200);
    assert_eq!(
        app.sim.counters().sessions_opened,
        1,
        "the session is reused"
    );
    assert_eq!(app.sim.counters().chat_requests, 2);
    let stored = app.count(&format!(
        "SELECT COUNT(*) AS n FROM sessions WHERE user_id = {} AND state = 'active'",
        user.id
    ));
    assert_eq!(stored, 1);
}

#[tokio::test]
async fn each_model_gets_its_own_pooled_session_and_keys_share_them() {
    let app = spawn_market_app().await;
    let user = app.seed_automated_user().await;
    let other = app.seed_automated_user().await;
    let second_key = app.create_key(&user.access, "second").await["key"]
        .as_str()
        .unwrap()
        .to_owned();
    for (key, model) in [
        (&user.api_key, "llama-3.3-70b"),
        (&user.api_key, "qwen3-235b"),
        (&second_key, "llama-3.3-70b"),
        (&other.api_key, "llama-3.3-70b"),
        (&user.api_key, "llama-3.3-70b"),
    ] {
        assert_eq!(app.chat(key, &ask(model, "hi")).await.status(), 200);
    }
    // One request at a time: the first session of each model serves every key after it.
    assert_eq!(app.sim.counters().sessions_opened, 2);
    assert_eq!(
        app.count("SELECT COUNT(*) AS n FROM sessions WHERE pooled AND state = 'active'"),
        2
    );
}

#[tokio::test]
async fn with_automation_off_the_error_says_how_to_get_a_session() {
    let app = spawn_market_app().await;
    let user = app.seed_user().await;
    let error = openai_error(
        app.chat(&user.api_key, &ask("llama-3.3-70b", "hi")).await,
        400,
    )
    .await;
    assert_eq!(error["code"], "no_active_session");
    let message = error["message"].as_str().unwrap();
    assert!(message.contains("/api/v1/automation/settings"), "{message}");
    assert!(
        message.contains("/api/v1/session/modelsession"),
        "{message}"
    );
    assert_eq!(app.sim.counters().sessions_opened, 0);

    // A session opened by hand is used even with automation off.
    let r = app
        .post_session(
            "/api/v1/session/modelsession?model_id=llama-3.3-70b",
            &user.api_key,
        )
        .await;
    assert_eq!(r.status(), 200);
    assert_eq!(
        app.chat(&user.api_key, &ask("llama-3.3-70b", "hi"))
            .await
            .status(),
        200
    );
    assert_eq!(app.sim.counters().sessions_opened, 1);
}

#[tokio::test]
async fn the_session_lasts_as_long_as_the_automation_settings_say() {
    let app = spawn_market_app().await;
    let user = app.seed_user().await;
    let r = app
        .client
        .put(app.url("/api/v1/automation/settings"))
        .bearer_auth(&user.api_key)
        .json(&json!({"is_enabled": true, "session_duration": 600}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(
        app.chat(&user.api_key, &ask("llama-3.3-70b", "hi"))
            .await
            .status(),
        200
    );
    let lasting = app.count(&format!(
        "SELECT COUNT(*) AS n FROM sessions WHERE user_id = {} AND {}",
        user.id,
        if app.is_postgres() {
            "ends_at - opened_at BETWEEN interval '590 seconds' AND interval '610 seconds'"
        } else {
            "(julianday(ends_at) - julianday(opened_at)) * 86400 BETWEEN 590 AND 610"
        }
    ));
    assert_eq!(lasting, 1, "the chain's EndsAt is opened_at + 600 s");
}

#[tokio::test]
async fn an_unknown_model_is_a_404_not_a_silent_switch() {
    let app = spawn_market_app().await;
    let user = app.seed_automated_user().await;
    let error = openai_error(
        app.chat(&user.api_key, &ask("gpt-3.5-turbo", "hi")).await,
        404,
    )
    .await;
    assert_eq!(error["code"], "model_not_found");
    assert_eq!(error["param"], "model");
    assert_eq!(error["type"], "invalid_request_error");
    assert_eq!(app.sim.counters().chat_requests, 0);
}

#[tokio::test]
async fn no_model_means_the_default_and_ids_and_any_case_resolve() {
    let app = spawn_market_app().await;
    let user = app.seed_automated_user().await;
    let body: Value = app
        .chat(
            &user.api_key,
            &json!({"messages": [{"role": "user", "content": "hi"}]}),
        )
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(body["model"], "mistral-31-24b", "the model tagged Default");
    let by_id = ask(
        "0xDF474728F624712570170F311A866A6937436C14861568F38593A531B7F45845",
        "hi",
    );
    assert_eq!(app.chat(&user.api_key, &by_id).await.status(), 200);
    assert_eq!(
        app.chat(&user.api_key, &ask("LLAMA-3.3-70B", "hi"))
            .await
            .status(),
        200
    );
    assert_eq!(
        app.sim.counters().sessions_opened,
        2,
        "id and name share a session"
    );
}

#[tokio::test]
async fn content_parts_tools_and_choices_reach_the_provider() {
    let app = spawn_market_app().await;
    let user = app.seed_automated_user().await;
    let request = json!({
        "model": "llama-3.3-70b",
        "messages": [{"role": "user", "content": [{"type": "text", "text": "what is the weather"}]}],
        "tools": [{"type": "function", "function": {"name": "weather", "parameters": {"type": "object"}}}],
        "tool_choice": "auto",
        "some_future_field": {"kept": true}
    });
    let body: Value = app
        .chat(&user.api_key, &request)
        .await
        .json()
        .await
        .unwrap();
    let call = &body["choices"][0]["message"]["tool_calls"][0];
    assert_eq!(call["function"]["name"], "weather", "{body}");
    assert_eq!(body["choices"][0]["finish_reason"], "tool_calls");

    let request = json!({
        "model": "llama-3.3-70b",
        "messages": [{"role": "user", "content": "one two three four five"}],
        "n": 2,
        "max_tokens": 3
    });
    let body: Value = app
        .chat(&user.api_key, &request)
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(body["choices"].as_array().unwrap().len(), 2);
    assert_eq!(body["choices"][0]["message"]["content"], "Echo: one two");
    assert_eq!(body["choices"][0]["finish_reason"], "length");
}

#[tokio::test]
async fn a_stream_relays_every_chunk_and_ends_with_done() {
    let app = spawn_market_app().await;
    let user = app.seed_automated_user().await;
    let mut request = ask("llama-3.3-70b", "stream me please");
    request["stream"] = json!(true);
    let r = app.chat(&user.api_key, &request).await;
    assert_eq!(r.status(), 200);
    let headers = r.headers().clone();
    assert_eq!(headers["content-type"], "text/event-stream");
    assert_eq!(headers["cache-control"], "no-cache");
    assert!(headers.get("content-length").is_none());
    assert!(headers.get("content-encoding").is_none());
    let events = sse_events(r).await;
    assert_eq!(
        events.last().map(String::as_str),
        Some("[DONE]"),
        "{events:?}"
    );
    let mut text = String::new();
    let mut ids = std::collections::HashSet::new();
    for event in &events[..events.len() - 1] {
        let chunk: Value = serde_json::from_str(event).expect("each event is JSON");
        assert_eq!(chunk["object"], "chat.completion.chunk");
        ids.insert(chunk["id"].as_str().unwrap().to_owned());
        if let Some(piece) = chunk["choices"][0]["delta"]["content"].as_str() {
            text.push_str(piece);
        }
    }
    assert_eq!(text.trim_end(), "Echo: stream me please");
    assert_eq!(ids.len(), 1, "every chunk belongs to this request");
}

#[tokio::test]
async fn fifty_concurrent_requests_open_at_most_the_cap_and_never_share_a_session() {
    const CAP: u32 = 8;
    // A second per answer, so the requests really overlap and the queue is used; the queue's
    // deadline is long enough for most, not for all.
    let config = SimConfig {
        provider_latency: ProviderLatency {
            first_token: Duration::from_millis(400),
            per_token: Duration::ZERO,
        },
        ..sim_config()
    };
    let app = Arc::new(
        spawn_market_app_on(config, |s| {
            s.pool_max_sessions_per_model = CAP;
            s.pool_queue_ms = 1_000;
        })
        .await,
    );
    let users = [
        app.seed_automated_user().await,
        app.seed_automated_user().await,
    ];
    let started = std::time::Instant::now();
    let tasks: Vec<_> = (0..50)
        .map(|i| {
            let (app, key) = (app.clone(), users[i % 2].api_key.clone());
            tokio::spawn(async move {
                let r = app
                    .chat(&key, &ask("llama-3.3-70b", &format!("request {i}")))
                    .await;
                let retry_after = r.headers().get("retry-after").cloned();
                let status = r.status().as_u16();
                let body: Value = r.json().await.unwrap_or_default();
                (status, retry_after, body)
            })
        })
        .collect();
    let mut statuses = std::collections::BTreeMap::<u16, u32>::new();
    for task in tasks {
        let (status, retry_after, body) = task.await.unwrap();
        *statuses.entry(status).or_default() += 1;
        match status {
            200 => {}
            429 => {
                assert_eq!(body["error"]["code"], "pool_busy", "{body}");
                assert!(retry_after.is_some(), "429 without Retry-After");
            }
            other => panic!("{other}: {body}"),
        }
    }
    let counters = app.sim.counters();
    println!(
        "pool: 50 concurrent requests, cap {CAP} → {} sessions opened, statuses {statuses:?}, \
         most requests on one session at once {}, in {:?}",
        counters.sessions_opened,
        counters.max_session_concurrency,
        started.elapsed()
    );
    assert!(counters.sessions_opened <= u64::from(CAP));
    assert!(statuses.get(&200).copied().unwrap_or(0) >= CAP);
    assert_eq!(
        counters.max_session_concurrency, 1,
        "a session served two at once"
    );
    assert_eq!(counters.session_waits, 0);
}

#[tokio::test]
async fn an_expired_session_is_renewed_once_and_the_request_succeeds() {
    let app = spawn_market_app().await;
    let user = app.seed_automated_user().await;
    assert_eq!(
        app.chat(&user.api_key, &ask("llama-3.3-70b", "one"))
            .await
            .status(),
        200
    );
    // The chain moves past EndsAt: the upstream answers "session expired".
    app.sim
        .advance_clock(std::time::Duration::from_secs(2 * 3600));
    let r = app.chat(&user.api_key, &ask("llama-3.3-70b", "two")).await;
    assert_eq!(r.status(), 200);
    assert_eq!(app.sim.counters().sessions_opened, 2);
    let active = app.count(&format!(
        "SELECT COUNT(*) AS n FROM sessions WHERE user_id = {} AND state = 'active'",
        user.id
    ));
    assert_eq!(active, 1, "the old session is no longer active");
}

#[tokio::test]
async fn a_session_id_must_belong_to_the_calling_key() {
    let app = spawn_market_app().await;
    let alice = app.seed_automated_user().await;
    let bob = app.seed_automated_user().await;
    let opened: Value = app
        .post_session(
            "/api/v1/session/modelsession?model_id=llama-3.3-70b",
            &alice.api_key,
        )
        .await
        .json()
        .await
        .unwrap();
    let session = opened["session_id"].as_str().unwrap();

    let mut request = ask("llama-3.3-70b", "hi");
    request["session_id"] = json!(session);
    assert_eq!(app.chat(&alice.api_key, &request).await.status(), 200);
    let error = openai_error(app.chat(&bob.api_key, &request).await, 404).await;
    assert_eq!(error["code"], "session_not_found");
    // The header form is checked the same way.
    let r = app
        .client
        .post(app.url("/api/v1/chat/completions"))
        .bearer_auth(&bob.api_key)
        .header("session_id", session)
        .json(&ask("llama-3.3-70b", "hi"))
        .send()
        .await
        .unwrap();
    openai_error(r, 404).await;
    let mut garbage = ask("llama-3.3-70b", "hi");
    garbage["session_id"] = json!("not-a-session");
    openai_error(app.chat(&alice.api_key, &garbage).await, 404).await;
    assert_eq!(
        app.sim.counters().chat_requests,
        1,
        "bob's requests never reached upstream"
    );
}

#[tokio::test]
async fn requests_over_the_caps_are_refused_before_anything_is_spent() {
    let app = spawn_market_app().await;
    let user = app.seed_automated_user().await;
    let cases = [
        (
            json!({"max_tokens": 1_000_000}),
            "max_tokens",
            "max_tokens_exceeded",
        ),
        (
            json!({"max_completion_tokens": 1_000_000}),
            "max_tokens",
            "max_tokens_exceeded",
        ),
        (json!({"n": 9}), "n", "too_many_choices"),
    ];
    for (extra, param, code) in cases {
        let mut request = ask("llama-3.3-70b", "hi");
        for (k, v) in extra.as_object().unwrap() {
            request[k] = v.clone();
        }
        let error = openai_error(app.chat(&user.api_key, &request).await, 400).await;
        assert_eq!(error["param"], param);
        assert_eq!(error["code"], code);
    }
    let many: Vec<Value> = (0..1001)
        .map(|_| json!({"role": "user", "content": "x"}))
        .collect();
    let error = openai_error(
        app.chat(
            &user.api_key,
            &json!({"model": "llama-3.3-70b", "messages": many}),
        )
        .await,
        400,
    )
    .await;
    assert_eq!(error["code"], "too_many_messages");
    assert_eq!(app.sim.counters().sessions_opened, 0);
}

/// What the proxy-router would refuse with 400 after a session was opened is either made
/// acceptable (a single `stop` string goes as a list of one) or refused first, with a 422
/// naming the field (values of the wrong type where go-openai has a type).
#[tokio::test]
async fn chats_the_proxy_router_would_refuse_are_fixed_or_refused_first() {
    let app = spawn_market_app().await;
    let user = app.seed_automated_user().await;
    let mut stop = ask("llama-3.3-70b", "hi");
    stop["stop"] = json!("\n\n");
    assert_eq!(app.chat(&user.api_key, &stop).await.status(), 200);

    let sessions_before = app.sim.counters().sessions_opened;
    for (field, value, loc) in [
        (
            "response_format",
            json!(5),
            json!(["body", "response_format"]),
        ),
        (
            "response_format",
            json!({"type": ["json_object"]}),
            json!(["body", "response_format", "type"]),
        ),
        (
            "stream_options",
            json!({"include_usage": "yes"}),
            json!(["body", "stream_options", "include_usage"]),
        ),
    ] {
        let mut request = ask("llama-3.3-70b", "hi");
        request[field] = value;
        let r = app.chat(&user.api_key, &request).await;
        assert_eq!(r.status(), 422, "{field}");
        let body: Value = r.json().await.unwrap();
        assert_eq!(body["detail"][0]["loc"], loc, "{body}");
    }
    for message in [
        json!({"role": "assistant", "content": null, "tool_calls": [5]}),
        json!({"role": "assistant", "tool_calls": [{"id": "c1", "type": "function", "function": {"name": "f", "arguments": {"a": 1}}}]}),
        json!({"role": "user", "content": [{"type": "text", "text": 5}]}),
        json!({"role": "user", "content": [{"type": "image_url", "image_url": "https://x/y.png"}]}),
    ] {
        let request = json!({"model": "llama-3.3-70b", "messages": [message.clone()]});
        let r = app.chat(&user.api_key, &request).await;
        assert_eq!(r.status(), 422, "{message}");
    }
    assert_eq!(
        app.sim.counters().sessions_opened,
        sessions_before,
        "nothing was spent"
    );
}

/// Members the gateway forwards without modelling them cannot ask for more than the caps
/// under another name, nor carry a deeply nested document.
#[tokio::test]
async fn unmodelled_knobs_are_bounded_and_unknown_members_cannot_nest_deeply() {
    let app = spawn_market_app().await;
    let user = app.seed_automated_user().await;
    let nested =
        |levels: usize| -> Value { (0..levels).fold(json!(1), |inner, _| json!({ "x": inner })) };
    let refused = [
        (
            json!({"max_new_tokens": 1_000_000}),
            "max_new_tokens",
            "max_tokens_exceeded",
        ),
        (json!({"num_predict": -1}), "num_predict", "invalid_value"),
        (
            json!({"max_length": "100000"}),
            "max_length",
            "invalid_value",
        ),
        (json!({"best_of": 64}), "best_of", "too_many_choices"),
        (
            json!({"num_return_sequences": 0}),
            "num_return_sequences",
            "invalid_value",
        ),
        (json!({"top_k": 1e12}), "top_k", "invalid_value"),
        (
            json!({"top_logprobs": 1000}),
            "top_logprobs",
            "invalid_value",
        ),
        (
            json!({"x_vendor": nested(9)}),
            "x_vendor",
            "nesting_too_deep",
        ),
        (
            json!({"x_list": [[[[[[[[[1]]]]]]]]]}),
            "x_list",
            "nesting_too_deep",
        ),
    ];
    for (extra, param, code) in refused {
        let mut request = ask("llama-3.3-70b", "hi");
        for (k, v) in extra.as_object().unwrap() {
            request[k] = v.clone();
        }
        let error = openai_error(app.chat(&user.api_key, &request).await, 400).await;
        assert_eq!(error["param"], param, "{extra}");
        assert_eq!(error["code"], code, "{extra}");
        assert_eq!(error["type"], "invalid_request_error");
    }
    assert_eq!(app.sim.counters().sessions_opened, 0, "nothing was spent");

    // Within bounds (or null) they go through, as written.
    let mut fine = ask("llama-3.3-70b", "hi");
    for (k, v) in [
        ("max_new_tokens", json!(256)),
        ("best_of", json!(2)),
        ("top_k", json!(-1)),
        ("top_logprobs", json!(null)),
        ("x_vendor", nested(8)),
    ] {
        fine[k] = v;
    }
    assert_eq!(app.chat(&user.api_key, &fine).await.status(), 200);
}

/// The body goes upstream as the client wrote it, so a repeated member must not slip a second
/// value past the caps: the gateway refuses a body that names a field twice.
#[tokio::test]
async fn a_field_given_twice_is_refused_not_forwarded() {
    let app = spawn_market_app().await;
    let user = app.seed_automated_user().await;
    let body = r#"{"model":"llama-3.3-70b","messages":[{"role":"user","content":"hi"}],"max_tokens":16,"max_tokens":1000000}"#;
    let r = app
        .client
        .post(app.url("/api/v1/chat/completions"))
        .bearer_auth(&user.api_key)
        .header("content-type", "application/json")
        .body(body)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 422, "{}", r.text().await.unwrap_or_default());
    assert_eq!(app.sim.counters().sessions_opened, 0);
}

#[tokio::test]
async fn invalid_requests_are_422_with_located_errors() {
    let app = spawn_market_app().await;
    let user = app.seed_automated_user().await;
    let cases = [
        (json!({"model": "llama-3.3-70b"}), vec!["body", "messages"]),
        (json!({"messages": []}), vec!["body", "messages"]),
        (
            json!({"messages": [{"role": "user", "content": "x"}], "temperature": 3}),
            vec!["body", "temperature"],
        ),
        (
            json!({"messages": [{"role": "user", "content": "x"}], "stream": "yes"}),
            vec!["body", "stream"],
        ),
        (
            json!({"messages": [{"role": "wizard", "content": "x"}]}),
            vec!["body", "messages", "0", "role"],
        ),
    ];
    for (body, loc) in cases {
        let r = app.chat(&user.api_key, &body).await;
        assert_eq!(r.status(), 422, "{body}");
        let detail: Value = r.json().await.unwrap();
        let got: Vec<String> = detail["detail"][0]["loc"]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v.as_str().map_or_else(|| v.to_string(), str::to_owned))
            .collect();
        assert_eq!(got, loc, "{body} → {detail}");
    }
}

#[tokio::test]
async fn a_bad_key_gets_an_openai_authentication_error() {
    let app = spawn_market_app().await;
    let error = openai_error(app.chat("sk-nope", &ask("llama-3.3-70b", "hi")).await, 401).await;
    assert_eq!(error["type"], "authentication_error");
}

#[tokio::test]
async fn without_a_proxy_router_chat_answers_503_saying_what_to_configure() {
    let app = spawn_app().await;
    let user = app.seed_user().await;
    let error = openai_error(
        app.chat(&user.api_key, &ask("llama-3.3-70b", "hi")).await,
        503,
    )
    .await;
    assert_eq!(error["code"], "upstream_not_configured");
    assert!(
        error["message"]
            .as_str()
            .unwrap()
            .contains("MORPHEUS_PROXY_ROUTER_URL")
    );
}

#[tokio::test]
async fn every_request_leaves_one_usage_record() {
    let app = spawn_market_app().await;
    let user = app.seed_automated_user().await;
    assert_eq!(
        app.chat(&user.api_key, &ask("llama-3.3-70b", "one two three"))
            .await
            .status(),
        200
    );
    let mut streamed = ask("llama-3.3-70b", "four five");
    streamed["stream"] = json!(true);
    let events = sse_events(app.chat(&user.api_key, &streamed).await).await;
    assert_eq!(events.last().unwrap(), "[DONE]");
    openai_error(
        app.chat(&user.api_key, &ask("gpt-3.5-turbo", "x")).await,
        404,
    )
    .await;
    let mut over_cap = ask("llama-3.3-70b", "x");
    over_cap["n"] = json!(100);
    openai_error(app.chat(&user.api_key, &over_cap).await, 400).await;
    assert_eq!(app.wait_for_usage(user.id, 4).await, 4);
    let completed = app.count(&format!(
        "SELECT COUNT(*) AS n FROM usage_records WHERE user_id = {} AND outcome = 'completed' \
         AND status = 200 AND completion_tokens > 0 AND prompt_tokens > 0 AND session_id IS NOT NULL",
        user.id
    ));
    assert_eq!(completed, 2, "{}", app.dump_table("usage_records"));
    for status in [404, 400] {
        let failed = app.count(&format!(
            "SELECT COUNT(*) AS n FROM usage_records WHERE user_id = {} AND outcome = 'failed' \
             AND status = {status}",
            user.id
        ));
        assert_eq!(
            failed,
            1,
            "status {status}: {}",
            app.dump_table("usage_records")
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_replicas_share_the_pool_open_within_the_cap_and_never_share_a_session() {
    const CAP: u32 = 4;
    let config = SimConfig {
        provider_latency: ProviderLatency {
            first_token: Duration::from_millis(150),
            per_token: Duration::ZERO,
        },
        ..sim_config()
    };
    let app = Arc::new(spawn_market_app_on(config, |s| s.pool_max_sessions_per_model = CAP).await);
    // A second gateway process on the same database and proxy-router.
    let replica = morpheus_gateway::startup::Application::build(app.settings.clone())
        .await
        .expect("the replica starts");
    let replica_url = format!("http://127.0.0.1:{}", replica.port());
    tokio::spawn(replica.run_until_stopped());
    let user = app.seed_automated_user().await;
    let key = Arc::new(user.api_key);
    let tasks: Vec<_> = (0..40)
        .map(|i| {
            let (app, key) = (app.clone(), key.clone());
            let base = if i % 2 == 0 {
                app.address.clone()
            } else {
                replica_url.clone()
            };
            tokio::spawn(async move {
                app.client
                    .post(format!("{base}/api/v1/chat/completions"))
                    .bearer_auth(&*key)
                    .json(&ask("llama-3.3-70b", &format!("request {i}")))
                    .send()
                    .await
                    .unwrap()
                    .status()
            })
        })
        .collect();
    for task in tasks {
        assert_eq!(task.await.unwrap(), 200);
    }
    // An open started for a waiter that a freed session served meanwhile is still running
    // when the last answer arrives; it must end its reservation on its own, soon.
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while app.count("SELECT COUNT(*) AS n FROM pool_opens") > 0 {
        assert!(
            std::time::Instant::now() < deadline,
            "an open's reservation outlived its open by 10 s"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let counters = app.sim.counters();
    println!(
        "two replicas, 40 concurrent requests, cap {CAP} → {} upstream opens, most requests \
         on one session at once {}",
        counters.sessions_opened, counters.max_session_concurrency
    );
    assert!(
        (1..=u64::from(CAP)).contains(&counters.sessions_opened),
        "{counters:?}; pooled sessions recorded: {}",
        app.count("SELECT COUNT(*) AS n FROM sessions WHERE pooled")
    );
    assert_eq!(
        counters.max_session_concurrency, 1,
        "a session was claimed twice"
    );
    assert_eq!(
        app.count("SELECT COUNT(*) AS n FROM sessions WHERE pooled AND state = 'active'"),
        i64::try_from(counters.sessions_opened).unwrap()
    );
}

#[tokio::test]
async fn chat_bodies_may_carry_images_up_to_the_chat_limit() {
    let app = spawn_market_app().await;
    let user = app.seed_automated_user().await;
    let image = |bytes: usize| {
        json!({
            "model": "llama-3.3-70b",
            "messages": [{"role": "user", "content": [
                {"type": "text", "text": "what is this"},
                {"type": "image_url", "image_url": {"url": format!("data:image/png;base64,{}", "A".repeat(bytes))}}
            ]}]
        })
    };
    // Over the 1 MiB of the other routes, within the 4 MiB of chat.
    let r = app.chat(&user.api_key, &image(2 * 1024 * 1024)).await;
    assert_eq!(r.status(), 200);
    let r = app.chat(&user.api_key, &image(4 * 1024 * 1024)).await;
    crate::helpers::error_body(r, 413).await;
}
