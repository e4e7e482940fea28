//! `/api/v1/session/*`: sessions of the calling API key, with real statuses for failures.

use std::time::Duration;

use morpheus_gateway::secrets::secret;
use morpheus_router_sim::{DeadReason, Fault, FaultKind, FaultRoute};
use serde_json::{Value, json};

use crate::helpers::error_body;
use crate::market::{DIAMOND, ask, spawn_market_app, spawn_market_app_with};

const LLAMA_ID: &str = "0xdf474728f624712570170f311a866a6937436c14861568f38593a531b7f45845";

async fn open_model_session(app: &crate::helpers::TestApp, key: &str, model: &str) -> Value {
    let r = app
        .post_with_key(
            &format!("/api/v1/session/modelsession?model_id={model}"),
            key,
            Some(&json!({"sessionDuration": 900})),
        )
        .await;
    assert_eq!(r.status(), 200);
    r.json().await.unwrap()
}

#[tokio::test]
async fn a_model_session_is_opened_once_and_then_returned() {
    let app = spawn_market_app().await;
    let user = app.seed_user().await;
    let first = open_model_session(&app, &user.api_key, "llama-3.3-70b").await;
    assert_eq!(first["success"], true);
    assert_eq!(first["model"], LLAMA_ID);
    assert_eq!(first["api_key_prefix"], &user.api_key[..9]);
    let second = open_model_session(&app, &user.api_key, LLAMA_ID).await;
    assert_eq!(second["session_id"], first["session_id"]);
    assert_eq!(app.sim.counters().sessions_opened, 1);
}

#[tokio::test]
async fn model_session_input_is_checked() {
    let app = spawn_market_app().await;
    let user = app.seed_user().await;
    let r = app
        .post_with_key(
            "/api/v1/session/modelsession?model_id=llama-3.3-70b",
            &user.api_key,
            Some(&json!({"sessionDuration": 299})),
        )
        .await;
    assert_eq!(r.status(), 422, "the contract reverts sessions under 300 s");
    let r = app
        .post_session(
            "/api/v1/session/modelsession?model_id=no-such-model",
            &user.api_key,
        )
        .await;
    error_body(r, 404).await;
    for query in ["", "?model_id=", "?model_id=%20"] {
        let r = app
            .post_session(
                &format!("/api/v1/session/modelsession{query}"),
                &user.api_key,
            )
            .await;
        assert_eq!(r.status(), 422, "{query}");
    }
    assert_eq!(app.sim.counters().sessions_opened, 0);
}

#[tokio::test]
async fn a_bid_session_replaces_the_keys_session_for_that_model() {
    // The simulator answers an unknown bid as today's node does: the zero bid, then a failed
    // handshake. The gateway must recognise it itself.
    let app = spawn_market_app().await;
    let user = app.seed_user().await;
    let first = open_model_session(&app, &user.api_key, "llama-3.3-70b").await;
    let bids = app
        .get_public_json(&format!("/api/v1/models/ratedbids?model_id={LLAMA_ID}"))
        .await;
    // The node never fills the outer `ID` (it is all zeros): the bid's own `Id` is the one.
    let bid = bids["bids"][1]["Bid"]["Id"].as_str().unwrap().to_owned();
    let r = app
        .post_with_key(
            &format!("/api/v1/session/bidsession?bid_id={bid}"),
            &user.api_key,
            Some(&json!({"sessionDuration": 600})),
        )
        .await;
    assert_eq!(r.status(), 200);
    let by_bid: Value = r.json().await.unwrap();
    assert_eq!(by_bid["model"], LLAMA_ID);
    assert_ne!(by_bid["session_id"], first["session_id"]);
    let count = |pooled: bool| {
        app.count(&format!(
            "SELECT COUNT(*) AS n FROM sessions WHERE user_id = {} AND state = 'active' \
             AND pooled = {pooled}",
            user.id
        ))
    };
    assert_eq!(count(false), 1, "one session of the key's own per model");
    // The replaced one is paid for: it serves the shared pool until its end.
    assert_eq!(count(true), 1);

    // Without asking the chain first, the node's handshake failure came back as a 502.
    for unknown in [
        format!("0x{}", "ab".repeat(32)),
        format!("0x{}", "00".repeat(32)),
    ] {
        let r = app
            .post_session(
                &format!("/api/v1/session/bidsession?bid_id={unknown}"),
                &user.api_key,
            )
            .await;
        error_body(r, 404).await;
    }

    let r = app
        .post_session("/api/v1/session/bidsession?bid_id=0x12", &user.api_key)
        .await;
    assert_eq!(r.status(), 422);
}

#[tokio::test]
async fn closing_closes_the_keys_sessions_only() {
    let app = spawn_market_app().await;
    let alice = app.seed_user().await;
    let bob = app.seed_user().await;
    let a1 = open_model_session(&app, &alice.api_key, "llama-3.3-70b").await;
    open_model_session(&app, &alice.api_key, "qwen3-235b").await;
    let b1 = open_model_session(&app, &bob.api_key, "llama-3.3-70b").await;

    // Bob cannot close Alice's session, and it stays open.
    let r = app
        .close_session(&bob.api_key, Some(a1["session_id"].as_str().unwrap()))
        .await;
    error_body(r, 404).await;
    assert_eq!(app.sim.counters().sessions_closed, 0);

    let r = app
        .close_session(&alice.api_key, Some(a1["session_id"].as_str().unwrap()))
        .await;
    assert_eq!(r.status(), 200);
    let body: Value = r.json().await.unwrap();
    assert_eq!(body["session_id"], a1["session_id"]);

    let body: Value = app
        .close_session(&alice.api_key, None)
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(body["closed"].as_array().unwrap().len(), 1, "{body}");
    let body: Value = app
        .close_session(&alice.api_key, None)
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(body["message"], "No active session found to close");
    assert_eq!(app.sim.counters().sessions_closed, 2);
    // Bob's session is untouched.
    let ping: Value = app
        .post_with_key("/api/v1/session/pingsession", &bob.api_key, None)
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(ping["status"], "alive");
    assert_eq!(ping["session_id"], b1["session_id"]);
}

#[tokio::test]
async fn ping_reports_alive_ended_and_missing_sessions() {
    let app = spawn_market_app().await;
    let user = app.seed_user().await;
    let ping = |key: String| {
        let app = &app;
        async move {
            let r = app
                .post_with_key("/api/v1/session/pingsession", &key, None)
                .await;
            assert_eq!(r.status(), 200);
            r.json::<Value>().await.unwrap()
        }
    };
    assert_eq!(ping(user.api_key.clone()).await["status"], "no_session");
    open_model_session(&app, &user.api_key, "llama-3.3-70b").await;
    let alive = ping(user.api_key.clone()).await;
    assert_eq!(alive["status"], "alive");
    assert_eq!(
        app.sim.counters().chat_requests,
        0,
        "a ping spends no tokens"
    );
    // Closed on chain by someone else: the ping finds out and stops using it.
    close_on_chain(&app, alive["session_id"].as_str().unwrap()).await;
    assert_eq!(ping(user.api_key.clone()).await["status"], "expired");
    assert_eq!(ping(user.api_key.clone()).await["status"], "no_session");
}

#[tokio::test]
async fn approve_is_an_operator_action_on_the_configured_spender() {
    const OPERATOR: &str = "operator-token-of-this-test";
    let app = spawn_market_app_with(|s| s.admin_token = Some(secret(OPERATOR))).await;
    let user = app.seed_user().await;
    let approve = |amount: &str, token: Option<&str>| {
        let mut r = app
            .client
            .post(app.url(&format!("/api/v1/session/approve?amount={amount}")))
            .bearer_auth(&user.api_key);
        if let Some(token) = token {
            r = r.header("X-Admin-Token", token);
        }
        r.send()
    };
    // Any API key made the node's wallet sign a transaction: now the operator's token is needed.
    for token in [None, Some(""), Some("operator-token-of-this-tesT")] {
        error_body(approve("1000", token).await.unwrap(), 403).await;
    }
    assert_eq!(app.sim.counters().approvals, 0);
    let r = approve("1000", Some(OPERATOR)).await.unwrap();
    assert_eq!(r.status(), 200);
    let body: Value = r.json().await.unwrap();
    assert!(body["tx"].as_str().unwrap().starts_with("0x"));
    assert_eq!(body["spender"], DIAMOND);
    assert_eq!(app.sim.counters().approvals, 1);
    for bad in ["0", "-5", "abc", "", "9223372036854775808"] {
        let r = approve(bad, Some(OPERATOR)).await.unwrap();
        assert_eq!(r.status(), 422, "amount={bad}");
    }
    let r = app
        .post_with_key("/api/v1/session/approve", &user.api_key, None)
        .await;
    assert_eq!(r.status(), 422);
    assert_eq!(app.sim.counters().approvals, 1);

    // Without an operator token configured, nobody can.
    let unset = spawn_market_app().await;
    let user = unset.seed_user().await;
    let r = unset
        .post_with_key("/api/v1/session/approve?amount=1000", &user.api_key, None)
        .await;
    error_body(r, 503).await;
    assert_eq!(unset.sim.counters().approvals, 0);
}

#[tokio::test]
async fn session_routes_need_an_api_key() {
    let app = spawn_market_app().await;
    for path in [
        "/api/v1/session/approve?amount=1",
        "/api/v1/session/closesession",
        "/api/v1/session/pingsession",
    ] {
        let r = app.client.post(app.url(path)).send().await.unwrap();
        error_body(r, 401).await;
    }
}

#[tokio::test]
async fn upstream_failures_get_real_statuses() {
    let app = spawn_market_app().await;
    let user = app.seed_user().await;
    app.sim.set_fault(Fault {
        route: FaultRoute::OpenSession,
        kind: FaultKind::Status {
            status: 500,
            body: r#"{"error":"no provider accepting session"}"#.into(),
            content_type: None,
        },
        times: Some(1),
    });
    let r = app
        .post_session(
            "/api/v1/session/modelsession?model_id=llama-3.3-70b",
            &user.api_key,
        )
        .await;
    let body = error_body(r, 502).await;
    // The node's own text stays in the log; the client gets a fixed message.
    assert_eq!(body["detail"], "The marketplace proxy-router failed");
    assert_eq!(
        app.count(&format!(
            "SELECT COUNT(*) AS n FROM sessions WHERE user_id = {}",
            user.id
        )),
        0,
        "nothing half-written"
    );
}

#[tokio::test]
async fn the_sweep_closes_ended_sessions_and_keeps_records_on_a_flaky_upstream() {
    let app = spawn_market_app_with(|s| s.session_sweep_seconds = 1).await;
    let user = app.seed_automated_user().await;
    assert_eq!(
        app.chat(&user.api_key, &ask("llama-3.3-70b", "hi"))
            .await
            .status(),
        200
    );

    // The proxy-router fails every session lookup for a while: nothing may be marked.
    app.sim.set_fault(Fault {
        route: FaultRoute::GetSession,
        kind: FaultKind::Status {
            status: 500,
            body: r#"{"error":"rpc timeout"}"#.into(),
            content_type: None,
        },
        times: None,
    });
    tokio::time::sleep(Duration::from_millis(2500)).await;
    let active = format!(
        "SELECT COUNT(*) AS n FROM sessions WHERE user_id = {} AND state = 'active'",
        user.id
    );
    assert_eq!(app.count(&active), 1, "a transient failure changes nothing");
    app.sim.clear_faults();

    // Once its end has passed the sweep closes it, upstream and in the database.
    app.execute_sql(&format!(
        "UPDATE sessions SET ends_at = '2000-01-01 00:00:00' WHERE user_id = {}",
        user.id
    ));
    let closed = format!(
        "SELECT COUNT(*) AS n FROM sessions WHERE user_id = {} AND state = 'closed'",
        user.id
    );
    for _ in 0..60 {
        if app.count(&closed) == 1 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(app.count(&closed), 1);
    assert_eq!(app.sim.counters().sessions_closed, 1);
}

#[tokio::test]
async fn a_deleted_accounts_sessions_join_the_pool_and_are_closed_at_their_end() {
    let app = spawn_market_app_with(|s| s.session_sweep_seconds = 1).await;
    let user = app.seed_automated_user().await;
    open_model_session(&app, &user.api_key, "llama-3.3-70b").await;
    let r = app
        .authed(
            reqwest::Method::DELETE,
            "/api/v1/auth/register",
            &user.access,
            None,
        )
        .await;
    assert_eq!(r.status(), 200);
    let body: serde_json::Value = r.json().await.unwrap();
    assert_eq!(body["deleted_data"]["sessions"], 1, "{body}");
    // Paid for on chain: the session serves the shared pool until its end has passed;
    // under the account's pseudonym (a negative id), not the user's id.
    assert_eq!(
        app.count(&format!(
            "SELECT COUNT(*) AS n FROM sessions WHERE user_id = {}",
            user.id
        )),
        0
    );
    let state = |state: &str| {
        app.count(&format!(
            "SELECT COUNT(*) AS n FROM sessions WHERE user_id < 0 AND state = '{state}'"
        ))
    };
    assert_eq!(state("active"), 1);
    assert_eq!(
        app.count("SELECT COUNT(*) AS n FROM sessions WHERE user_id < 0 AND pooled"),
        1
    );
    app.execute_sql("UPDATE sessions SET ends_at = '2000-01-01 00:00:00' WHERE user_id < 0");
    for _ in 0..60 {
        if state("closed") == 1 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(state("closed"), 1);
    assert_eq!(app.sim.counters().sessions_closed, 1);
}

/// The node says `session not found` for any failed chain read (reference §2.6): the gateway
/// asks the chain before it retires the session, so a blip costs no new paid session.
#[tokio::test]
async fn a_chain_read_blip_does_not_open_a_new_session() {
    let app = spawn_market_app().await;
    let user = app.seed_automated_user().await;
    let question = ask("llama-3.3-70b", "still there?");
    let chat = || app.chat(&user.api_key, &question);
    assert_eq!(chat().await.status(), 200);
    assert_eq!(app.sim.counters().sessions_opened, 1);
    app.sim.set_fault(Fault {
        route: FaultRoute::Chat,
        kind: FaultKind::ChainReadBlip,
        times: Some(1),
    });
    assert_eq!(chat().await.status(), 200, "retried on the same session");
    assert_eq!(app.sim.counters().sessions_opened, 1, "no new paid session");
    let active = app.count(&format!(
        "SELECT COUNT(*) AS n FROM sessions WHERE user_id = {} AND state = 'active'",
        user.id
    ));
    assert_eq!(active, 1);

    // When the chain confirms the session is gone, it is renewed as before.
    close_on_chain(&app, &app.sim.session_ids().pop().unwrap()).await;
    assert_eq!(chat().await.status(), 200);
    assert_eq!(app.sim.counters().sessions_opened, 2);
}

/// The node finishes an open whose caller left (its Go handler keeps running): the gateway's
/// open runs on its own task too, so the paid session is recorded and used, not orphaned.
#[tokio::test]
async fn an_open_whose_client_left_is_recorded_and_used() {
    let app = spawn_market_app().await;
    let user = app.seed_automated_user().await;
    app.sim.set_fault(Fault {
        route: FaultRoute::OpenSession,
        kind: FaultKind::Latency { ms: 1_000 },
        times: Some(1),
    });
    let gone = app
        .client
        .post(app.url("/api/v1/chat/completions"))
        .bearer_auth(&user.api_key)
        .json(&ask("llama-3.3-70b", "I will not wait"))
        .timeout(Duration::from_millis(200))
        .send()
        .await;
    assert!(gone.is_err(), "the client gave up");
    let recorded = format!(
        "SELECT COUNT(*) AS n FROM sessions WHERE user_id = {} AND state = 'active'",
        user.id
    );
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    while app.count(&recorded) == 0 && std::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(
        app.count(&recorded),
        1,
        "the open completed and was recorded"
    );
    let r = app
        .chat(&user.api_key, &ask("llama-3.3-70b", "now I wait"))
        .await;
    assert_eq!(r.status(), 200);
    assert_eq!(app.sim.counters().sessions_opened, 1, "and it was used");
}

/// Someone else closes `session` on the node, behind the gateway's back.
async fn close_on_chain(app: &crate::market::MarketApp, session: &str) {
    let closed = app
        .client
        .post(format!(
            "{}/blockchain/sessions/{session}/close",
            app.sim.base_url()
        ))
        .basic_auth("morpheus", Some("sim-password"))
        .send()
        .await
        .unwrap();
    assert_eq!(closed.status(), 200);
}

/// A session the node says will not work again (its provider is gone) is left before the first
/// byte for another session, and is never used again.
#[tokio::test]
async fn a_dead_session_is_retired_and_the_request_served_on_another() {
    // No cooldown: each dead session's provider may serve the next one.
    let app = spawn_market_app_with(|s| s.pool_provider_cooldown_seconds = 0).await;
    let user = app.seed_automated_user().await;
    let question = ask("llama-3.3-70b", "are you there?");
    assert_eq!(app.chat(&user.api_key, &question).await.status(), 200);
    for reason in [
        DeadReason::ProviderNotFound,
        DeadReason::UserNotFound,
        DeadReason::TeeAttestation,
        DeadReason::ProviderUnreachable,
    ] {
        app.sim.set_fault(Fault {
            route: FaultRoute::Chat,
            kind: FaultKind::DeadSession { reason },
            times: Some(1),
        });
        let r = app.chat(&user.api_key, &question).await;
        assert_eq!(r.status(), 200, "{reason:?}: {}", r.text().await.unwrap());
    }
    assert_eq!(app.sim.counters().sessions_opened, 5);
    let retired = app.count("SELECT COUNT(*) AS n FROM sessions WHERE state = 'retired'");
    assert_eq!(retired, 4, "each dead session is retired, never used again");
}

/// The provider of a dead session gets no new sessions while it cools down: the next goes to
/// another provider's bid, and when none is left the model is unavailable (503), not retried
/// on the dead provider.
#[tokio::test]
async fn a_dead_sessions_provider_cools_down_until_none_is_left() {
    let app = spawn_market_app().await;
    let user = app.seed_automated_user().await;
    let question = ask("llama-3.3-70b", "are you there?");
    assert_eq!(app.chat(&user.api_key, &question).await.status(), 200);
    let bids = app.count("SELECT COUNT(DISTINCT bid_id) AS n FROM sessions");
    assert_eq!(bids, 1);
    let dead = |reason| Fault {
        route: FaultRoute::Chat,
        kind: FaultKind::DeadSession { reason },
        times: Some(1),
    };
    app.sim.set_fault(dead(DeadReason::ProviderNotFound));
    assert_eq!(app.chat(&user.api_key, &question).await.status(), 200);
    // Two providers' sessions so far, each on its own bid.
    assert_eq!(
        app.count("SELECT COUNT(DISTINCT bid_id) AS n FROM sessions"),
        2
    );
    app.sim.set_fault(dead(DeadReason::TeeAttestation));
    let r = app.chat(&user.api_key, &question).await;
    let statuses = r.status().as_u16();
    let body: Value = r.json().await.unwrap();
    println!("dead sessions with cooldown: third request {statuses} {body}");
    // The simulator's llama has two bids, of two providers: none is left.
    assert_eq!(statuses, 503, "{body}");
    assert_eq!(body["error"]["code"], "model_unavailable");
}
