//! `POST /api/v1/embeddings` against the simulator: a session of an embedding model, the same
//! admission as chat (limits, credit), charged on the provider's input tokens, one usage
//! record per request, and models of another type refused before anything is spent.

use base64::Engine as _;
use reqwest::Method;
use serde_json::{Value, json};

use crate::helpers::TestApp;
use crate::market::{MarketApp, ask, openai_error, sim_config, spawn_market_app_on};

const EMBEDDER: &str = "text-embedding-bge-m3";
/// One USD per million tokens, in and out.
const PRICES: &str = "[default]\ninput = 1\noutput = 1\n";

async fn embedding_app(credit: &str) -> MarketApp {
    let prices = std::env::temp_dir().join(format!("prices-{}.toml", uuid::Uuid::new_v4()));
    std::fs::write(&prices, PRICES).unwrap();
    let credit = credit.to_owned();
    spawn_market_app_on(sim_config(), move |s| {
        s.pricing_file = Some(prices);
        s.signup_credit_usd = credit;
        s.chat_shed_lateness_ms = 0;
    })
    .await
}

impl TestApp {
    async fn embed(&self, key: &str, body: &Value) -> reqwest::Response {
        self.post_with_key("/api/v1/embeddings", key, Some(body))
            .await
    }
}

pub(crate) async fn usage_route(app: &TestApp, key: &str, want: u64) -> Value {
    for _ in 0..100 {
        let usage: Value = app
            .client
            .get(app.url("/api/v1/billing/usage?limit=10"))
            .bearer_auth(key)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        if usage["total"].as_u64() >= Some(want) {
            return usage;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    panic!("fewer than {want} charges listed");
}

#[tokio::test]
async fn embeddings_run_on_an_embedding_models_session_and_are_charged_their_input_tokens() {
    let app = embedding_app("1").await;
    let user = app.seed_automated_user().await;
    let r = app
        .embed(
            &user.api_key,
            &json!({"model": EMBEDDER, "input": ["the food was delicious", "and the wine"]}),
        )
        .await;
    assert_eq!(r.status(), 200);
    let body: Value = r.json().await.unwrap();
    assert_eq!(body["object"], "list", "{body}");
    assert_eq!(body["model"], EMBEDDER, "the model the client asked for");
    let data = body["data"].as_array().unwrap();
    assert_eq!(data.len(), 2, "{body}");
    for (i, item) in data.iter().enumerate() {
        assert_eq!(item["object"], "embedding");
        assert_eq!(item["index"], i);
        let vector = item["embedding"].as_array().unwrap();
        assert!(
            !vector.is_empty() && vector.iter().all(Value::is_f64),
            "{item}"
        );
    }
    assert_ne!(
        data[0]["embedding"], data[1]["embedding"],
        "one vector per text"
    );
    let prompt = body["usage"]["prompt_tokens"].as_u64().unwrap();
    assert!(prompt > 0, "{body}");
    assert_eq!(app.sim.counters().sessions_opened, 1);

    let usage = usage_route(&app, &user.api_key, 1).await;
    let charge = &usage["items"][0];
    assert_eq!(charge["model_name"], EMBEDDER, "{usage}");
    assert_eq!(charge["tokens_input"], prompt, "{usage}");
    assert_eq!(charge["tokens_output"], 0, "{usage}");
    assert_eq!(charge["estimated"], false, "{usage}");
    // One USD per million input tokens, in USD with 8 decimals.
    let expected = format!("-{:.8}", prompt as f64 / 1e6);
    assert_eq!(charge["amount_paid"], expected, "{usage}");
    assert_eq!(app.wait_for_usage(user.id, 1).await, 1);

    // The session is the model's own, reused by the next request.
    let again = app
        .embed(
            &user.api_key,
            &json!({"model": EMBEDDER, "input": "once more"}),
        )
        .await;
    assert_eq!(again.status(), 200);
    assert_eq!(app.sim.counters().sessions_opened, 1);
}

#[tokio::test]
async fn base64_is_encoded_by_the_gateway_from_the_providers_floats() {
    let app = embedding_app("1").await;
    let user = app.seed_automated_user().await;
    let ask_for = |format: &str| json!({"model": EMBEDDER, "input": "a stable text", "encoding_format": format});
    let floats: Value = app
        .embed(&user.api_key, &ask_for("float"))
        .await
        .json()
        .await
        .unwrap();
    let r = app.embed(&user.api_key, &ask_for("base64")).await;
    assert_eq!(r.status(), 200);
    let encoded: Value = r.json().await.unwrap();
    let text = encoded["data"][0]["embedding"].as_str().unwrap();
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(text)
        .unwrap();
    let decoded: Vec<f32> = bytes
        .chunks(4)
        .map(|c| f32::from_le_bytes(c.try_into().unwrap()))
        .collect();
    #[allow(clippy::cast_possible_truncation)]
    let expected: Vec<f32> = floats["data"][0]["embedding"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_f64().unwrap() as f32)
        .collect();
    assert_eq!(decoded, expected);
    assert_eq!(encoded["usage"], floats["usage"]);
}

#[tokio::test]
async fn a_model_of_another_type_is_refused_before_anything_is_spent() {
    let app = embedding_app("1").await;
    let user = app.seed_automated_user().await;
    let error = openai_error(app.chat(&user.api_key, &ask(EMBEDDER, "hi")).await, 400).await;
    assert_eq!(error["code"], "model_type_mismatch", "{error}");
    assert_eq!(error["param"], "model");
    assert_eq!(error["requested_model"], EMBEDDER);
    assert_eq!(error["resolved_model"], EMBEDDER);
    assert_eq!(error["requested_type"], "LLM");
    assert_eq!(error["model_type"], "EMBEDDING");
    assert!(error["resolved_id"].as_str().unwrap().starts_with("0x"));

    let r = app
        .embed(
            &user.api_key,
            &json!({"model": "llama-3.3-70b", "input": "hi"}),
        )
        .await;
    let error = openai_error(r, 400).await;
    assert_eq!(error["code"], "model_type_mismatch", "{error}");
    assert_eq!(
        (&error["requested_type"], &error["model_type"]),
        (&json!("EMBEDDING"), &json!("LLM"))
    );
    assert_eq!(app.sim.counters().sessions_opened, 0, "nothing was opened");
    let usage = app
        .client
        .get(app.url("/api/v1/billing/usage"))
        .bearer_auth(&user.api_key)
        .send()
        .await
        .unwrap()
        .json::<Value>()
        .await
        .unwrap();
    assert_eq!(usage["total"], 0, "nothing was charged: {usage}");

    // Without a model, embeddings go to the embedding model, chat to the chat default.
    let r = app.embed(&user.api_key, &json!({"input": "hi"})).await;
    assert_eq!(r.status(), 200);
    assert_eq!(r.json::<Value>().await.unwrap()["model"], EMBEDDER);

    // The listing says which model does what.
    let models = app.get_public_json("/api/v1/models").await;
    let type_of = |name: &str| {
        models["data"]
            .as_array()
            .unwrap()
            .iter()
            .find(|m| m["id"] == name)
            .map(|m| m["model_type"].clone())
            .unwrap_or_else(|| panic!("{name} not listed: {models}"))
    };
    assert_eq!(type_of(EMBEDDER), "EMBEDDING");
    assert_eq!(type_of("llama-3.3-70b"), "LLM");
}

#[tokio::test]
async fn bad_input_gets_the_documented_errors() {
    let app = embedding_app("1").await;
    let user = app.seed_automated_user().await;
    let many: Vec<String> = (0..2049).map(|i| format!("t{i}")).collect();
    for input in [
        json!(""),
        json!([]),
        json!(["a", ""]),
        json!([[1, 2], []]),
        json!(many),
    ] {
        let r = app
            .embed(&user.api_key, &json!({"model": EMBEDDER, "input": input}))
            .await;
        let error = openai_error(r, 400).await;
        assert_eq!(
            (&error["code"], &error["param"]),
            (&json!("invalid_input"), &json!("input")),
            "{error}"
        );
    }
    for body in [
        json!({"model": EMBEDDER}),
        json!({"model": EMBEDDER, "input": 5}),
        json!({"model": EMBEDDER, "input": "x", "encoding_format": "int8"}),
        json!({"model": EMBEDDER, "input": "x", "dimensions": 0}),
        json!({"model": EMBEDDER, "input": "x", "dimensions": 65_537}),
    ] {
        let r = app.embed(&user.api_key, &body).await;
        assert_eq!(r.status(), 422, "{body}");
    }
    assert_eq!(app.sim.counters().sessions_opened, 0);
}

#[tokio::test]
async fn a_keys_rpm_and_the_users_credit_bind_embeddings_too() {
    let app = embedding_app("1").await;
    let user = app.seed_automated_user().await;
    let r = app
        .authed(
            Method::POST,
            "/api/v1/auth/keys",
            &user.access,
            Some(&json!({"name": "one a minute", "rpm": 1})),
        )
        .await;
    let key = r.json::<Value>().await.unwrap()["key"]
        .as_str()
        .unwrap()
        .to_owned();
    let body = json!({"model": EMBEDDER, "input": "hello"});
    let first = app.embed(&key, &body).await;
    assert_eq!(first.status(), 200);
    assert_eq!(first.headers()["x-ratelimit-limit-requests"], "1");
    let error = openai_error(app.embed(&key, &body).await, 429).await;
    assert_eq!(error["code"], "rate_limit_exceeded", "{error}");

    let broke = embedding_app("0").await;
    let user = broke.seed_automated_user().await;
    let error = openai_error(broke.embed(&user.api_key, &body).await, 402).await;
    assert_eq!(error["code"], "insufficient_balance", "{error}");
    assert_eq!(broke.sim.counters().sessions_opened, 0);
}
