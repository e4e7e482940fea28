//! `/api/v1/models…`: served from the in-memory catalogue, in OpenAI's list shape.

use serde_json::Value;

use crate::helpers::{client_from, error_body, spawn_app};
use crate::market::{MarketApp, spawn_market_app, spawn_market_app_with};

pub const LLAMA_ID: &str = "0xdf474728f624712570170f311a866a6937436c14861568f38593a531b7f45845";

#[tokio::test]
async fn models_are_listed_in_openai_shape_without_deleted_ones() {
    let app = spawn_market_app().await;
    let body = app.get_public_json("/api/v1/models").await;
    assert_eq!(body["object"], "list");
    let data = body["data"].as_array().expect("data");
    let names: Vec<&str> = data.iter().map(|m| m["id"].as_str().unwrap()).collect();
    assert!(names.contains(&"llama-3.3-70b"), "{names:?}");
    assert!(
        !names.contains(&"retired-model"),
        "deleted models are hidden: {names:?}"
    );
    let llama = data.iter().find(|m| m["id"] == "llama-3.3-70b").unwrap();
    assert_eq!(llama["object"], "model");
    assert_eq!(llama["blockchainID"], LLAMA_ID);
    assert!(llama["created"].is_i64());
    assert!(llama["owned_by"].is_string());
    assert!(llama["tags"].is_array());
    // The trailing-slash path serves the same list.
    assert_eq!(app.get_public_json("/api/v1/models/").await, body);
    let all = app.get_public_json("/api/v1/models/allmodels").await;
    assert_eq!(all["data"].as_array().unwrap().len(), data.len());
}

#[tokio::test]
async fn listing_models_does_not_call_the_proxy_router() {
    let app = spawn_market_app().await;
    let before = app.quiet_sim().await;
    for _ in 0..5 {
        app.get_public_json("/api/v1/models").await;
    }
    assert_eq!(app.sim.counters().requests, before);
}

#[tokio::test]
async fn rated_bids_keep_big_amounts_exact() {
    let app = spawn_market_app().await;
    let r = app
        .client
        .get(app.url(&format!("/api/v1/models/ratedbids?model_id={LLAMA_ID}")))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let body: Value = r.json().await.unwrap();
    let bids = body["bids"].as_array().expect("bids");
    assert!(!bids.is_empty());
    for bid in bids {
        assert!(bid["ID"].as_str().unwrap().starts_with("0x"));
        assert!(bid["Score"].is_number());
        let price = bid["Bid"]["PricePerSecond"]
            .as_str()
            .expect("decimal string");
        assert!(price.parse::<u128>().is_ok(), "{price}");
        assert_eq!(bid["Bid"]["ModelAgentId"], LLAMA_ID);
    }
    assert!(
        bids.iter().any(|b| b["Bid"]["PricePerSecond"]
            .as_str()
            .unwrap()
            .parse::<u128>()
            .unwrap()
            > 1 << 53),
        "the simulator offers a price beyond 2^53: {body}"
    );
}

/// The simulator's count of proxy-router requests (`GET /__sim/counters`).
async fn proxy_router_requests(app: &MarketApp) -> u64 {
    let counters: Value = app
        .client
        .get(format!("{}/__sim/counters", app.sim.base_url()))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    counters["requests"].as_u64().expect("requests")
}

/// Issue 15: every anonymous call used to be passed on to the proxy-router. Answers are now
/// shared while fresh, and callers are limited per client address.
#[tokio::test]
async fn rated_bids_are_shared_and_limited_per_client_address() {
    let app = spawn_market_app_with(|s| {
        s.rated_bids_cache_ms = 60_000;
        s.rated_bids_per_client = 30;
        s.rated_bids_client_refill_ms = 60_000;
    })
    .await;
    let path = app.url(&format!("/api/v1/models/ratedbids?model_id={LLAMA_ID}"));
    app.quiet_sim().await;
    let before = proxy_router_requests(&app).await;
    let at_once =
        futures_util::future::join_all((0..20).map(|_| app.client.get(&path).send())).await;
    for r in at_once {
        assert_eq!(r.unwrap().status(), 200);
    }
    for _ in 0..10 {
        assert_eq!(app.client.get(&path).send().await.unwrap().status(), 200);
    }
    let calls = proxy_router_requests(&app).await - before;
    eprintln!("30 anonymous rated-bids calls made {calls} proxy-router request(s)");
    assert!(calls <= 2, "{calls} proxy-router requests for 30 calls");

    let r = app.client.get(&path).send().await.unwrap();
    assert_eq!(r.status(), 429);
    let retry: u64 = r.headers()["retry-after"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!((1..=60).contains(&retry), "{retry}");
    let body: Value = r.json().await.unwrap();
    assert!(body["detail"].is_string(), "{body}");
    // Another address is served, from the shared answer.
    let r = client_from(2).get(&path).send().await.unwrap();
    assert_eq!(r.status(), 200);
    assert!(proxy_router_requests(&app).await - before <= 2);
}

/// Issue 15: the model is named as for `POST /session/modelsession`: its name (any case) or
/// its on-chain id give the same bids; an unknown one is a 404, a missing or blank one a 422.
#[tokio::test]
async fn rated_bids_accept_a_model_name_as_sessions_do() {
    let app = spawn_market_app().await;
    let get = async |query: &str| {
        app.client
            .get(app.url(&format!("/api/v1/models/ratedbids{query}")))
            .send()
            .await
            .unwrap()
    };
    let by_id: Value = get(&format!("?model_id={LLAMA_ID}"))
        .await
        .json()
        .await
        .unwrap();
    assert!(!by_id["bids"].as_array().unwrap().is_empty());
    for name in ["llama-3.3-70b", "LLAMA-3.3-70B", "%20llama-3.3-70b%20"] {
        let r = get(&format!("?model_id={name}")).await;
        assert_eq!(r.status(), 200, "{name}");
        assert_eq!(r.json::<Value>().await.unwrap(), by_id, "{name}");
    }
    for unknown in ["no-such-model", "0x1234"] {
        let body = error_body(get(&format!("?model_id={unknown}")).await, 404).await;
        assert!(body["detail"].as_str().unwrap().contains(unknown), "{body}");
    }
    for query in ["", "?model_id=", "?model_id=%20%20"] {
        let r = get(query).await;
        assert_eq!(r.status(), 422, "{query}");
        let body: Value = r.json().await.unwrap();
        assert_eq!(body["detail"][0]["loc"][1], "model_id", "{body}");
    }
}

#[tokio::test]
async fn without_a_proxy_router_the_model_routes_say_what_to_configure() {
    let app = spawn_app().await;
    for path in ["/api/v1/models", "/api/v1/models/allmodels"] {
        let r = app.client.get(app.url(path)).send().await.unwrap();
        assert_eq!(r.status(), 503, "{path}");
        let body: Value = r.json().await.unwrap();
        let detail = body["detail"].as_str().unwrap();
        assert!(detail.contains("MORPHEUS_PROXY_ROUTER_URL"), "{detail}");
    }
}

#[tokio::test]
async fn aliases_and_the_default_model_are_configurable() {
    let app = crate::market::spawn_market_app_with(|s| {
        s.model_aliases = Some("gpt-4o=llama-3.3-70b".to_owned());
        s.default_model = Some("qwen3-235b".to_owned());
    })
    .await;
    let user = app.seed_automated_user().await;
    let body: Value = app
        .chat(&user.api_key, &crate::market::ask("gpt-4o", "hi"))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(body["model"], "gpt-4o", "the name the client asked for");
    let session_model = app.count(&format!(
        "SELECT COUNT(*) AS n FROM sessions WHERE user_id = {} AND model_id = '{LLAMA_ID}'",
        user.id
    ));
    assert_eq!(session_model, 1, "the alias ran on llama");
    let body: Value = app
        .chat(
            &user.api_key,
            &serde_json::json!({"messages": [{"role": "user", "content": "hi"}]}),
        )
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(body["model"], "qwen3-235b");
}
