//! Auth, errors and the shape of every non-chat route.

mod common;

use common::{PASSWORD, USER, start};
use morpheus_router_sim::{
    DEFAULT_WALLET, FaultKind, FaultRoute, LLAMA_MODEL_ID, SimConfig, SimModel, default_models,
};
use serde_json::{Value, json};

#[tokio::test]
async fn basic_auth_refusals_match_the_proxy_router() {
    let sim = start().await;
    let url = sim.url("/blockchain/models");

    let resp = sim.http.get(&url).send().await.unwrap();
    assert_eq!(resp.status(), 401);
    assert_eq!(
        resp.json::<Value>().await.unwrap(),
        json!({"error": "no basic auth provided"})
    );

    for bad in [
        "Bearer abc",
        "Basic !!!",
        "Basic bm9jb2xvbg==", /* "nocolon" */
        "basic bW9ycGhldXM6eA==",
    ] {
        let resp = sim
            .http
            .get(&url)
            .header("authorization", bad)
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 401, "{bad}");
        assert_eq!(
            resp.json::<Value>().await.unwrap(),
            json!({"error": "invalid basic auth provided"}),
            "{bad}"
        );
    }

    let resp = sim
        .http
        .get(&url)
        .basic_auth(USER, Some("wrong"))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 401);
    assert_eq!(
        resp.json::<Value>().await.unwrap(),
        json!({"error": "invalid username or password"})
    );

    // Public routes.
    let resp = sim.http.get(sim.url("/healthcheck")).send().await.unwrap();
    assert_eq!(resp.status(), 200);
    let resp = sim
        .http
        .get(sim.url("/__sim/counters"))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
}

#[tokio::test]
async fn unknown_paths_get_gins_plain_404() {
    let sim = start().await;
    for (method, path) in [
        ("GET", "/nope"),
        ("GET", "/v1/chat/completions"),
        ("DELETE", "/blockchain/models"),
    ] {
        let req = sim
            .http
            .request(method.parse().unwrap(), sim.url(path))
            .basic_auth(USER, Some(PASSWORD));
        let resp = req.send().await.unwrap();
        assert_eq!(resp.status(), 404, "{method} {path}");
        assert_eq!(resp.headers()["content-type"], "text/plain");
        assert_eq!(resp.text().await.unwrap(), "404 page not found");
    }
    // No auth needed to learn a path does not exist.
    assert_eq!(
        sim.http
            .get(sim.url("/nope"))
            .send()
            .await
            .unwrap()
            .status(),
        404
    );
}

#[tokio::test]
async fn healthcheck_and_wallet() {
    let sim = start().await;
    let resp = sim.http.get(sim.url("/healthcheck")).send().await.unwrap();
    assert!(
        resp.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("application/json")
    );
    let health: Value = resp.json().await.unwrap();
    assert_eq!(health["status"], "healthy");
    assert_eq!(
        health["version"],
        concat!("sim-", env!("CARGO_PKG_VERSION"))
    );
    let uptime = health["uptime"].as_str().unwrap();
    assert!(uptime.ends_with('s'), "{uptime}");

    let (status, wallet) = sim.get_json("/wallet").await;
    assert_eq!(status, 200);
    assert_eq!(wallet, json!({"address": DEFAULT_WALLET}));
}

#[tokio::test]
async fn models_are_pascal_case_and_include_deleted_ones() {
    let sim = start().await;
    let raw = sim.get_text("/blockchain/models").await;
    // Fee and Stake are JSON numbers beyond 2^53, written verbatim.
    assert!(raw.contains("\"Stake\":10000000000000000000"), "{raw}");
    assert!(raw.contains("\"Fee\":100000000000000000"), "{raw}");
    let body: Value = serde_json::from_str(&raw).unwrap();
    let models = body["models"].as_array().unwrap();
    assert_eq!(models.len(), 7);
    let llama = &models[0];
    assert_eq!(llama["Id"], LLAMA_MODEL_ID);
    assert_eq!(llama["Name"], "llama-3.3-70b");
    assert_eq!(llama["IsDeleted"], false);
    assert!(llama["CreatedAt"].is_u64());
    assert_eq!(llama["IpfsCID"].as_str().unwrap().len(), 66);
    assert_eq!(llama["Owner"].as_str().unwrap().len(), 42);
    let keys: Vec<&str> = llama
        .as_object()
        .unwrap()
        .keys()
        .map(String::as_str)
        .collect();
    for key in [
        "Id",
        "IpfsCID",
        "Fee",
        "Stake",
        "Owner",
        "Name",
        "Tags",
        "CreatedAt",
        "IsDeleted",
        "ModelType",
    ] {
        assert!(keys.contains(&key), "{key} missing from {keys:?}");
    }
    // Derived from the tags (`blockchainapi/model_tags.go:20-37`): "LLM" → LLM, none known →
    // UNKNOWN.
    assert_eq!(llama["ModelType"], "LLM");
    let mistral = models
        .iter()
        .find(|m| m["Name"] == "mistral-31-24b")
        .unwrap();
    assert_eq!(mistral["Tags"], json!(["Mistral", "Default"]));
    assert_eq!(mistral["ModelType"], "UNKNOWN");
    assert!(models.iter().any(|m| m["Name"] == "qwen3-235b"));
    let retired = models
        .iter()
        .find(|m| m["Name"] == "retired-model")
        .unwrap();
    assert_eq!(retired["IsDeleted"], true);
    // One model of each other type the node serves.
    for (name, model_type) in [
        ("text-embedding-bge-m3", "EMBEDDING"),
        ("tts-kokoro", "TTS"),
        ("whisper-1", "STT"),
    ] {
        let m = models.iter().find(|m| m["Name"] == name).unwrap();
        assert_eq!(m["ModelType"], model_type, "{name}");
        assert_eq!(m["IsDeleted"], false);
    }
}

#[tokio::test]
async fn rated_bids_use_decimal_strings() {
    let sim = start().await;
    let path = format!("/blockchain/models/{LLAMA_MODEL_ID}/bids/rated");
    let raw = sim.get_text(&path).await;
    assert!(
        raw.contains("\"PricePerSecond\":\"12000000000000000000\""),
        "{raw}"
    );
    assert!(
        raw.contains("\"PricePerSecond\":\"9007199254740993\""),
        "{raw}"
    );
    let body: Value = serde_json::from_str(&raw).unwrap();
    let bids = body["bids"].as_array().unwrap();
    assert_eq!(bids.len(), 2);
    assert!(
        bids[0]["Score"].as_f64().unwrap() > bids[1]["Score"].as_f64().unwrap(),
        "best first"
    );
    let bid = &bids[0]["Bid"];
    // The node never fills the outer ID (`blockchainapi/service.go:306-317`).
    for b in bids {
        assert_eq!(b["ID"], format!("0x{}", "0".repeat(64)));
    }
    assert_ne!(bids[0]["Bid"]["Id"], bids[1]["Bid"]["Id"]);
    assert_eq!(bid["ModelAgentId"], LLAMA_MODEL_ID);
    for key in ["PricePerSecond", "Nonce", "CreatedAt", "DeletedAt"] {
        let v = bid[key]
            .as_str()
            .unwrap_or_else(|| panic!("{key} is not a string"));
        assert!(v.bytes().all(|b| b.is_ascii_digit()), "{key}={v}");
    }
    assert_eq!(bid["Provider"].as_str().unwrap().len(), 42);

    // One bid by id.
    let id = bid["Id"].as_str().unwrap();
    let (status, one) = sim.get_json(&format!("/blockchain/bids/{id}")).await;
    assert_eq!(status, 200);
    assert_eq!(&one["bid"], bid);
    // An unknown id reads as the zero bid.
    let unknown = format!("0x{}", "1".repeat(64));
    let (status, zero) = sim.get_json(&format!("/blockchain/bids/{unknown}")).await;
    assert_eq!(status, 200);
    assert_eq!(zero["bid"]["Id"], unknown.as_str());
    assert_eq!(zero["bid"]["Provider"], format!("0x{}", "0".repeat(40)));
    assert_eq!(zero["bid"]["PricePerSecond"], "0");

    // Unknown but well-formed model: no bids. Malformed: 400.
    assert_eq!(
        sim.get_json(&format!("/blockchain/models/{unknown}/bids/rated"))
            .await,
        (200, json!({"bids": []}))
    );
    assert_eq!(
        sim.get_json("/blockchain/models/0x12/bids/rated").await,
        (400, json!({"error": "invalid model id"}))
    );
}

#[tokio::test]
async fn default_catalogue_is_deterministic_with_big_prices() {
    let a = default_models();
    assert_eq!(a, default_models());
    assert!(a.iter().all(|m| m.bids.len() == 2));
    assert!(
        a.iter()
            .flat_map(|m| &m.bids)
            .any(|b| b.price_per_second > 1 << 53)
    );
    assert!(a.iter().all(|m| m.id.len() == 66 && m.id.starts_with("0x")));
}

#[tokio::test]
async fn approve_validates_its_query() {
    let sim = start().await;
    let spender = format!("0x{}", "ab".repeat(20));
    let resp = sim
        .post(&format!(
            "/blockchain/approve?spender={spender}&amount=123456789012345678901234567890"
        ))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let body: Value = resp.json().await.unwrap();
    let tx = body["tx"].as_str().unwrap();
    assert!(tx.starts_with("0x") && tx.len() == 66, "{tx}");
    assert_eq!(sim.handle.counters().approvals, 1);

    for query in [
        "amount=5",
        &format!("spender={spender}"),
        "spender=0x12&amount=5",
        &format!("spender={spender}&amount=-5"),
    ] {
        let resp = sim
            .post(&format!("/blockchain/approve?{query}"))
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 400, "{query}");
        let body: Value = resp.json().await.unwrap();
        assert!(body["error"].is_string(), "{query}");
    }
    assert_eq!(sim.handle.counters().approvals, 1);
}

#[tokio::test]
async fn model_without_bids_accepts_no_session() {
    let mut models = default_models();
    models.push(SimModel {
        id: format!("0x{}", "e".repeat(64)),
        name: "lonely".into(),
        tags: vec![],
        created_at: 1,
        is_deleted: false,
        bids: vec![],
    });
    let sim = common::start_with(SimConfig {
        models,
        ..SimConfig::default()
    })
    .await;
    let resp = sim
        .post(&format!("/blockchain/models/0x{}/session", "e".repeat(64)))
        .json(&json!({"sessionDuration": 60}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 500);
    assert_eq!(
        resp.json::<Value>().await.unwrap(),
        json!({"error": "no bids available"})
    );
}

#[tokio::test]
async fn model_types_follow_the_first_known_tag() {
    let mut models = default_models();
    for (i, tags) in [
        vec!["Embeddings", "LLM"],
        vec!["whisper", "Speech"],
        vec!["TTS"],
        vec!["t2t"],
    ]
    .into_iter()
    .enumerate()
    {
        models.push(SimModel {
            id: format!("0x{}{i}", "d".repeat(63)),
            name: format!("typed-{i}"),
            tags: tags.into_iter().map(str::to_owned).collect(),
            created_at: 1,
            is_deleted: false,
            bids: vec![],
        });
    }
    let sim = common::start_with(SimConfig {
        models,
        ..SimConfig::default()
    })
    .await;
    let (_, body) = sim.get_json("/blockchain/models").await;
    let types: Vec<&str> = body["models"].as_array().unwrap()[default_models().len()..]
        .iter()
        .map(|m| m["ModelType"].as_str().unwrap())
        .collect();
    assert_eq!(types, ["EMBEDDING", "STT", "TTS", "LLM"]);
}

#[tokio::test]
async fn a_user_lacking_a_permission_gets_403() {
    let sim = common::start_with(SimConfig {
        extra_users: vec![morpheus_router_sim::SimUser {
            name: "reader".into(),
            password: "r".into(),
            methods: vec!["get_models".into(), "get_bids".into()],
        }],
        ..SimConfig::default()
    })
    .await;
    let as_reader = |req: reqwest::RequestBuilder| req.basic_auth("reader", Some("r"));
    let resp = as_reader(sim.http.get(sim.url("/blockchain/models")))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    for (req, what) in [
        (sim.http.get(sim.url("/wallet")), "wallet"),
        (
            sim.http
                .post(sim.url(&format!("/blockchain/models/{LLAMA_MODEL_ID}/session")))
                .json(&json!({"sessionDuration": 600})),
            "open",
        ),
        (sim.http.post(sim.url("/v1/chat/completions")), "chat"),
    ] {
        let resp = as_reader(req).send().await.unwrap();
        assert_eq!(resp.status(), 403, "{what}");
        assert_eq!(
            resp.json::<Value>().await.unwrap(),
            json!({"error": "method not allowed"}),
            "{what}"
        );
    }
    // Wrong password: still the 401, before permissions.
    let resp = sim
        .http
        .get(sim.url("/wallet"))
        .basic_auth("reader", Some("x"))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 401);
    assert_eq!(sim.handle.counters().sessions_opened, 0);

    // The main user's own permissions are configurable too; none listed means none granted.
    let sim = common::start_with(SimConfig {
        user_methods: vec![],
        ..SimConfig::default()
    })
    .await;
    assert_eq!(
        sim.get("/blockchain/models").send().await.unwrap().status(),
        403
    );
}

#[tokio::test]
async fn healthcheck_can_be_degraded() {
    let sim = start().await;
    sim.handle.set_degraded(Some("Writes are blocked"));
    let resp = sim.http.get(sim.url("/healthcheck")).send().await.unwrap();
    assert_eq!(resp.status(), 503);
    let body: Value = resp.json().await.unwrap();
    assert_eq!(body["status"], "degraded");
    assert_eq!(
        body["components"],
        json!({"badgerdb": "unhealthy: Writes are blocked"})
    );
    // Over HTTP too, and back.
    let http = common::client();
    let resp = http
        .post(sim.url("/__sim/health"))
        .json(&json!({"degraded": null}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let body: Value = sim
        .http
        .get(sim.url("/healthcheck"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(body["status"], "healthy");
    assert!(
        body["components"]["badgerdb"]
            .as_str()
            .unwrap()
            .starts_with("healthy")
    );
    assert!(
        !body["uptime"].as_str().unwrap().contains('.'),
        "rounded to seconds: {body}"
    );
}

#[tokio::test]
async fn every_answer_carries_x_request_id() {
    let sim = start().await;
    for (req, status) in [
        (sim.get("/wallet"), 200),
        (sim.http.get(sim.url("/wallet")), 401),
        (sim.get("/nope"), 404),
        (sim.http.get(sim.url("/healthcheck")), 200),
    ] {
        let resp = req.header("x-request-id", "req-42").send().await.unwrap();
        assert_eq!(resp.status(), status);
        assert_eq!(resp.headers()["x-request-id"], "req-42");
    }
    // Without one, the node makes one up: 8 hex digits.
    let resp = sim.get("/wallet").send().await.unwrap();
    let id = resp.headers()["x-request-id"].to_str().unwrap().to_owned();
    assert!(
        id.len() == 8 && id.bytes().all(|b| b.is_ascii_hexdigit()),
        "{id}"
    );
}

#[tokio::test]
async fn chain_read_failures_of_the_catalogue() {
    let sim = start().await;
    for (route, path, status) in [
        (FaultRoute::Models, "/blockchain/models".to_owned(), 400),
        (
            FaultRoute::RatedBids,
            format!("/blockchain/models/{LLAMA_MODEL_ID}/bids/rated"),
            500,
        ),
    ] {
        sim.fault(route, FaultKind::ChainReadBlip, Some(1));
        let (got, body) = sim.get_json(&path).await;
        assert_eq!(got, status, "{path}");
        assert!(
            body["error"]
                .as_str()
                .unwrap()
                .starts_with("429 Too Many Requests")
        );
        assert_eq!(sim.get_json(&path).await.0, 200, "once only");
    }
}

#[tokio::test]
async fn config_reports_the_chat_storage_settings_as_the_node_does() {
    let sim = common::start_with(SimConfig {
        store_chat_context: false,
        ..SimConfig::default()
    })
    .await;
    let config: Value = sim
        .get("/config")
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(
        config["Config"]["Proxy"]["StoreChatContext"],
        json!({"Bool": false})
    );
    let sim = common::start().await;
    let config: Value = sim
        .get("/config")
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(
        config["Config"]["Proxy"]["StoreChatContext"],
        json!({"Bool": true})
    );
    assert_eq!(
        sim.http
            .get(sim.url("/config"))
            .send()
            .await
            .unwrap()
            .status(),
        401
    );
}
