//! API-key policies: expiry, allowed models, rates and budgets stored, shown and changed;
//! expired keys refused like revoked ones, models off the allow-list refused before anything is
//! spent, and key creations limited per user per day.

use chrono::{Duration, Utc};
use morpheus_router_sim::LLAMA_MODEL_ID;
use reqwest::Method;
use serde_json::{Value, json};

use crate::helpers::{TestApp, error_body, spawn_app, spawn_app_with};
use crate::market::{ask, openai_error, spawn_market_app};

const LLAMA: &str = "llama-3.3-70b";

impl TestApp {
    async fn create_key_with(&self, access: &str, body: &Value) -> reqwest::Response {
        self.authed(Method::POST, "/api/v1/auth/keys", access, Some(body))
            .await
    }

    async fn patch_key(&self, access: &str, id: i64, body: &Value) -> reqwest::Response {
        self.authed(
            Method::PATCH,
            &format!("/api/v1/auth/keys/{id}"),
            access,
            Some(body),
        )
        .await
    }

    /// The listed key with this id.
    async fn listed_key(&self, access: &str, id: i64) -> Value {
        let keys = self.get_json("/api/v1/auth/keys", access).await;
        keys.as_array()
            .unwrap()
            .iter()
            .find(|k| k["id"] == id)
            .cloned()
            .unwrap_or_else(|| panic!("key {id} not in {keys}"))
    }
}

/// The policy members of a key as the API shows it (a budget's use in its current window,
/// which only the listing reads, left out).
fn policy(key: &Value) -> Value {
    let mut budgets = key["budgets"].clone();
    for budget in budgets.as_array_mut().into_iter().flatten() {
        let budget = budget.as_object_mut().unwrap();
        budget.remove("used_usd");
        budget.remove("resets_at");
    }
    json!({
        "expires_at": key["expires_at"],
        "allowed_models": key["allowed_models"],
        "rpm": key["rpm"],
        "tpm": key["tpm"],
        "budgets": budgets,
    })
}

const UNLIMITED: fn() -> Value = || json!({"expires_at": null, "allowed_models": null, "rpm": null, "tpm": null, "budgets": null});

#[tokio::test]
async fn a_key_is_created_with_a_policy_and_shown_with_it() {
    let app = spawn_app().await;
    let user = app.seed_user().await;
    let r = app
        .create_key_with(
            &user.access,
            &json!({
                "name": "ci",
                "expires_at": "2099-01-31T12:00:00+01:00",
                "allowed_models": [LLAMA, "LLAMA-3.3-70B", LLAMA_MODEL_ID],
                "rpm": 60,
                "tpm": 100000,
                "budgets": [
                    {"window": "60m", "limit_usd": "1.5"},
                    {"window": "30d", "limit_usd": "30.00"},
                ],
            }),
        )
        .await;
    assert_eq!(r.status(), 200);
    let created: Value = r.json().await.unwrap();
    let expected = json!({
        "expires_at": "2099-01-31T11:00:00Z",
        "allowed_models": [LLAMA, LLAMA_MODEL_ID],
        "rpm": 60,
        "tpm": 100000,
        "budgets": [
            {"window": "1h", "window_seconds": 3600, "limit_usd": "1.50000000"},
            {"window": "30d", "window_seconds": 2592000, "limit_usd": "30.00000000"},
        ],
    });
    assert_eq!(policy(&created), expected, "{created}");
    assert!(created["key"].as_str().unwrap().starts_with("sk-"));
    let id = created["id"].as_i64().unwrap();
    let listed = app.listed_key(&user.access, id).await;
    assert_eq!(policy(&listed), expected);
    assert_eq!(listed["name"], "ci");
    // Only the listing reads each window's use: nothing yet, and when the window ends.
    assert_eq!(created["budgets"][0]["used_usd"], Value::Null);
    assert_eq!(listed["budgets"][0]["used_usd"], "0.00000000");
    let resets: chrono::DateTime<Utc> = listed["budgets"][0]["resets_at"]
        .as_str()
        .unwrap()
        .parse()
        .unwrap();
    assert_eq!(resets.timestamp() % 3600, 0, "{resets}");
    assert!(resets > Utc::now());

    // Without a policy (the request as before): every field null.
    let plain = app.create_key(&user.access, "plain").await;
    assert_eq!(policy(&plain), UNLIMITED());
    let plain_id = plain["id"].as_i64().unwrap();
    assert_eq!(
        policy(&app.listed_key(&user.access, plain_id).await),
        UNLIMITED()
    );
    let r = app.create_key_with(&user.access, &json!({})).await;
    assert_eq!(r.status(), 200);
}

#[tokio::test]
async fn a_patch_sets_clears_or_leaves_each_field() {
    let app = spawn_app().await;
    let user = app.seed_user().await;
    let r = app
        .create_key_with(
            &user.access,
            &json!({"name": "ci", "allowed_models": [LLAMA], "rpm": 60,
                    "budgets": [{"window": "1d", "limit_usd": "5"}]}),
        )
        .await;
    let id = r.json::<Value>().await.unwrap()["id"].as_i64().unwrap();

    // Set one, clear one, leave the rest.
    let r = app
        .patch_key(
            &user.access,
            id,
            &json!({"tpm": 5000, "allowed_models": null}),
        )
        .await;
    assert_eq!(r.status(), 200);
    let changed: Value = r.json().await.unwrap();
    assert_eq!(changed["id"], id);
    assert_eq!(changed["name"], "ci");
    assert_eq!(changed["allowed_models"], Value::Null);
    assert_eq!(changed["rpm"], 60);
    assert_eq!(changed["tpm"], 5000);
    assert_eq!(changed["budgets"][0]["window"], "1d");
    assert_eq!(
        policy(&app.listed_key(&user.access, id).await),
        policy(&changed)
    );

    // `{}` changes nothing.
    let r = app.patch_key(&user.access, id, &json!({})).await;
    assert_eq!(r.status(), 200);
    assert_eq!(policy(&r.json::<Value>().await.unwrap()), policy(&changed));

    // `[]` clears the budgets as null does; the name can be cleared too.
    let r = app
        .patch_key(
            &user.access,
            id,
            &json!({"budgets": [], "rpm": null, "tpm": null, "name": null,
                    "expires_at": "2099-01-01T00:00:00Z"}),
        )
        .await;
    let cleared: Value = r.json().await.unwrap();
    assert_eq!(cleared["name"], Value::Null);
    assert_eq!(
        policy(&cleared),
        json!({"expires_at": "2099-01-01T00:00:00Z", "allowed_models": null, "rpm": null,
               "tpm": null, "budgets": null})
    );
}

#[tokio::test]
async fn bad_policy_values_are_422_pointing_at_the_field() {
    let app = spawn_app().await;
    let user = app.seed_user().await;
    let id = app.create_key(&user.access, "target").await["id"]
        .as_i64()
        .unwrap();
    let past = (Utc::now() - Duration::minutes(1)).to_rfc3339();
    let budget = |window: Value, limit: &str| json!({"window": window, "limit_usd": limit});
    let five_budgets: Vec<Value> = ["1m", "1h", "1d", "7d", "30d"]
        .iter()
        .map(|w| budget(json!(w), "1"))
        .collect();
    let too_many_models: Vec<String> = (0..65).map(|i| format!("m{i}")).collect();
    let cases: Vec<(Value, Value)> = vec![
        (json!({"expires_at": past}), json!(["body", "expires_at"])),
        (
            json!({"expires_at": "tomorrow"}),
            json!(["body", "expires_at"]),
        ),
        (
            json!({"allowed_models": []}),
            json!(["body", "allowed_models"]),
        ),
        (
            json!({"allowed_models": too_many_models}),
            json!(["body", "allowed_models"]),
        ),
        (
            json!({"allowed_models": [LLAMA, ""]}),
            json!(["body", "allowed_models", 1]),
        ),
        (json!({"rpm": 0}), json!(["body", "rpm"])),
        (json!({"rpm": 1_000_001}), json!(["body", "rpm"])),
        (json!({"rpm": "ten"}), json!(["body", "rpm"])),
        (json!({"tpm": -1}), json!(["body", "tpm"])),
        (
            json!({"budgets": [budget(json!("59s"), "1")]}),
            json!(["body", "budgets", 0, "window"]),
        ),
        (
            json!({"budgets": [budget(json!("367d"), "1")]}),
            json!(["body", "budgets", 0, "window"]),
        ),
        (
            json!({"budgets": [budget(json!(3600), "1")]}),
            json!(["body", "budgets", 0, "window"]),
        ),
        (
            json!({"budgets": [budget(json!("1h"), "1"), budget(json!("1w"), "1")]}),
            json!(["body", "budgets", 1, "window"]),
        ),
        (
            json!({"budgets": [budget(json!("1h"), "0")]}),
            json!(["body", "budgets", 0, "limit_usd"]),
        ),
        (
            json!({"budgets": [budget(json!("1h"), "1.000000001")]}),
            json!(["body", "budgets", 0, "limit_usd"]),
        ),
        (
            json!({"budgets": [budget(json!("1h"), "1"), budget(json!("60m"), "2")]}),
            json!(["body", "budgets", 1, "window"]),
        ),
        (json!({"budgets": five_budgets}), json!(["body", "budgets"])),
        (
            json!({"budgets": [{"window": "1h"}]}),
            json!(["body", "budgets", 0, "limit_usd"]),
        ),
    ];
    for (body, loc) in cases {
        for patch in [false, true] {
            let r = if patch {
                app.patch_key(&user.access, id, &body).await
            } else {
                app.create_key_with(&user.access, &body).await
            };
            let error = error_body(r, 422).await;
            let locs: Vec<&Value> = error["detail"]
                .as_array()
                .unwrap()
                .iter()
                .map(|d| &d["loc"])
                .collect();
            assert!(locs.contains(&&loc), "{body} (patch: {patch}): {error}");
        }
    }
    // Several mistakes are reported together.
    let r = app
        .create_key_with(&user.access, &json!({"rpm": 0, "tpm": 0}))
        .await;
    assert_eq!(
        error_body(r, 422).await["detail"].as_array().unwrap().len(),
        2
    );
    // Nothing was created or changed by any of them.
    let keys = app.get_json("/api/v1/auth/keys", &user.access).await;
    assert_eq!(keys.as_array().unwrap().len(), 2, "{keys}");
    assert_eq!(policy(&app.listed_key(&user.access, id).await), UNLIMITED());
}

#[tokio::test]
async fn another_users_key_is_not_found_and_left_alone() {
    let app = spawn_app().await;
    let alice = app.seed_user().await;
    let mallory = app.seed_user().await;
    let id = app.create_key(&alice.access, "mine").await["id"]
        .as_i64()
        .unwrap();
    let r = app.patch_key(&mallory.access, id, &json!({"rpm": 1})).await;
    assert_eq!(error_body(r, 404).await["detail"], "API key not found");
    let r = app
        .patch_key(&alice.access, 999_999, &json!({"rpm": 1}))
        .await;
    assert_eq!(r.status(), 404);
    assert_eq!(app.listed_key(&alice.access, id).await["rpm"], Value::Null);
    // Without a token: 401; with an API key instead of one: 401.
    let r = app
        .client
        .patch(app.url(&format!("/api/v1/auth/keys/{id}")))
        .json(&json!({}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
    let r = app.patch_key(&alice.api_key, id, &json!({})).await;
    assert_eq!(r.status(), 401);
}

#[tokio::test]
async fn an_expired_key_is_refused_exactly_like_a_revoked_one() {
    let app = spawn_market_app().await;
    let user = app.seed_automated_user().await;
    let revoked = app.create_key(&user.access, "revoked").await;
    let expiring = app.create_key(&user.access, "expiring").await;
    let key = expiring["key"].as_str().unwrap();
    let chat = ask(LLAMA, "hi");

    // In use (and so in the key cache) before it expires.
    assert_eq!(app.chat(key, &chat).await.status(), 200);
    let expires_at = Utc::now() + Duration::milliseconds(1500);
    let r = app
        .patch_key(
            &user.access,
            expiring["id"].as_i64().unwrap(),
            &json!({"expires_at": expires_at.to_rfc3339()}),
        )
        .await;
    assert_eq!(r.status(), 200);
    assert_eq!(app.chat(key, &chat).await.status(), 200, "not yet");
    let revoked_id = revoked["id"].as_i64().unwrap();
    let r = app
        .delete(&format!("/api/v1/auth/keys/{revoked_id}"), &user.access)
        .await;
    assert_eq!(r.status(), 200);
    let wait = (expires_at - Utc::now()).to_std().unwrap_or_default();
    tokio::time::sleep(wait + std::time::Duration::from_millis(50)).await;

    let revoked_key = revoked["key"].as_str().unwrap();
    let answers = async |key: &str| {
        let chat = app.chat(key, &chat).await;
        let settings = app
            .authed(Method::GET, "/api/v1/automation/settings", key, None)
            .await;
        let session = app
            .post_session(
                &format!("/api/v1/session/modelsession?model_id={LLAMA}"),
                key,
            )
            .await;
        let mut out = Vec::new();
        for r in [chat, settings, session] {
            let status = r.status().as_u16();
            let challenge = r.headers().get("www-authenticate").cloned();
            out.push((status, challenge, r.text().await.unwrap()));
        }
        out
    };
    let expired = answers(key).await;
    assert_eq!(expired[0].0, 401, "{expired:?}");
    assert_eq!(expired, answers(revoked_key).await);
    let body: Value = serde_json::from_str(&expired[0].2).unwrap();
    assert_eq!(body["error"]["code"], "invalid_api_key");
    // The listing still shows it, with its expiry.
    let listed = app
        .listed_key(&user.access, expiring["id"].as_i64().unwrap())
        .await;
    assert!(listed["expires_at"].is_string());

    // Moving the expiry back into the future brings the key back.
    let r = app
        .patch_key(
            &user.access,
            expiring["id"].as_i64().unwrap(),
            &json!({"expires_at": null}),
        )
        .await;
    assert_eq!(r.status(), 200);
    assert_eq!(app.chat(key, &chat).await.status(), 200);
}

#[tokio::test]
async fn a_model_off_the_allow_list_is_refused_before_any_session() {
    let app = spawn_market_app().await;
    let user = app.seed_automated_user().await;
    let r = app
        .create_key_with(
            &user.access,
            &json!({"name": "mistral only", "allowed_models": ["Mistral-31-24B"]}),
        )
        .await;
    let created: Value = r.json().await.unwrap();
    let key = created["key"].as_str().unwrap();
    let id = created["id"].as_i64().unwrap();
    app.quiet_sim().await;
    let before = app.sim.counters();

    for model in [LLAMA, LLAMA_MODEL_ID] {
        let error = openai_error(app.chat(key, &ask(model, "hi")).await, 403).await;
        assert_eq!(error["code"], "model_not_allowed");
        assert_eq!(error["type"], "invalid_request_error");
        assert_eq!(error["param"], "model");
        assert!(
            error["message"].as_str().unwrap().contains(LLAMA),
            "{error}"
        );
    }
    // No default model slips through either: the default (mistral) is allowed here.
    let r = app
        .chat(
            key,
            &json!({"messages": [{"role": "user", "content": "hi"}]}),
        )
        .await;
    assert_eq!(r.status(), 200);
    let after = app.sim.counters();
    assert_eq!(
        after.sessions_opened,
        before.sessions_opened + 1,
        "mistral's only"
    );
    assert_eq!(after.chat_requests, before.chat_requests + 1);

    // Allowed by id, any case.
    let r = app
        .patch_key(
            &user.access,
            id,
            &json!({"allowed_models": [LLAMA_MODEL_ID.to_uppercase().replace("0X", "0x")]}),
        )
        .await;
    assert_eq!(r.status(), 200);
    assert_eq!(app.chat(key, &ask(LLAMA, "hi")).await.status(), 200);

    // The key's own session, named in the request, is refused once its model is not allowed.
    let r = app
        .post_session(
            &format!("/api/v1/session/modelsession?model_id={LLAMA}"),
            key,
        )
        .await;
    assert_eq!(r.status(), 200);
    let session: Value = r.json().await.unwrap();
    let session_id = session["session_id"].as_str().unwrap().to_owned();
    let r = app
        .patch_key(&user.access, id, &json!({"allowed_models": ["qwen3-235b"]}))
        .await;
    assert_eq!(r.status(), 200);
    let chats = app.sim.counters().chat_requests;
    let mut pinned = ask(LLAMA, "hi");
    pinned["session_id"] = json!(session_id);
    let error = openai_error(app.chat(key, &pinned).await, 403).await;
    assert_eq!(error["code"], "model_not_allowed");
    assert_eq!(
        app.sim.counters().chat_requests,
        chats,
        "nothing sent upstream"
    );
}

#[tokio::test]
async fn key_creations_are_limited_per_day_revoked_keys_included() {
    let app = spawn_app_with(|s| s.key_creations_per_day = 3).await;
    let user = app.seed_user().await;
    let second = app.create_key(&user.access, "second").await;
    app.create_key(&user.access, "third").await;
    let id = second["id"].as_i64().unwrap();
    let r = app
        .delete(&format!("/api/v1/auth/keys/{id}"), &user.access)
        .await;
    assert_eq!(r.status(), 200);

    let r = app
        .create_key_with(&user.access, &json!({"name": "fourth"}))
        .await;
    let retry_after: u64 = r.headers()["retry-after"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!(
        (86_390..=86_400).contains(&retry_after),
        "a day after the first: {retry_after}"
    );
    let body = error_body(r, 429).await;
    assert!(
        body["detail"]
            .as_str()
            .unwrap()
            .contains("MORPHEUS_KEY_CREATIONS_PER_DAY"),
        "{body}"
    );
    // Another user is counted apart.
    let other = app.seed_user().await;
    app.create_key(&other.access, "theirs").await;
}

#[tokio::test]
async fn a_key_cannot_open_a_paid_session_for_a_model_off_its_allow_list() {
    let app = spawn_market_app().await;
    let user = app.seed_user().await;
    let created: Value = app
        .create_key_with(
            &user.access,
            &json!({"name": "narrow", "allowed_models": ["some-other-model"]}),
        )
        .await
        .json()
        .await
        .unwrap();
    let key = created["key"].as_str().unwrap().to_owned();
    let bids = app
        .get_public_json(&format!(
            "/api/v1/models/ratedbids?model_id={LLAMA_MODEL_ID}"
        ))
        .await;
    let bid = bids["bids"][0]["Bid"]["Id"].as_str().unwrap().to_owned();
    let before = app.quiet_sim().await;
    let by_model = app
        .post_session(
            &format!("/api/v1/session/modelsession?model_id={LLAMA}"),
            &key,
        )
        .await;
    let refused = error_body(by_model, 403).await;
    assert!(
        refused["detail"]
            .as_str()
            .unwrap()
            .contains("allowed_models"),
        "{refused}"
    );
    let by_bid = app
        .post_session(&format!("/api/v1/session/bidsession?bid_id={bid}"), &key)
        .await;
    assert_eq!(by_bid.status(), 403);
    let counters = app.sim.counters();
    assert_eq!(counters.sessions_opened, 0, "nothing was staked");
    assert!(
        counters.requests - before <= 1,
        "at most the bid was read from the node"
    );
}

#[tokio::test]
async fn a_revoked_key_cannot_be_changed() {
    let app = spawn_app().await;
    let user = app.seed_user().await;
    let created: Value = app
        .create_key_with(&user.access, &json!({"name": "short-lived"}))
        .await
        .json()
        .await
        .unwrap();
    let id = created["id"].as_i64().unwrap();
    let r = app
        .delete(&format!("/api/v1/auth/keys/{id}"), &user.access)
        .await;
    assert!(r.status().is_success(), "{}", r.status());
    let r = app
        .patch_key(&user.access, id, &json!({"name": "revived?", "rpm": 5}))
        .await;
    error_body(r, 404).await;
    // Unchanged: still revoked, still its old name.
    let key = app.listed_key(&user.access, id).await;
    assert_eq!(
        (&key["is_active"], &key["name"]),
        (&json!(false), &json!("short-lived"))
    );
}
