//! The real node's session behaviour: one request per session at a time, opens that take time
//! and complete without their caller, opens that fail after the money moved, chain-read blips,
//! sessions that die, and failover.

mod common;

use std::time::{Duration, Instant};

use common::{Sim, json_events, sse_data, start, start_with, stream_request, user_message};
use morpheus_router_sim::{
    DEFAULT_WALLET, DeadReason, FaultKind, FaultRoute, LLAMA_MODEL_ID, MinedError, ProviderLatency,
    SimConfig,
};
use serde_json::{Value, json};

fn slow_model(first_token_ms: u64) -> SimConfig {
    SimConfig {
        provider_latency: ProviderLatency {
            first_token: Duration::from_millis(first_token_ms),
            per_token: Duration::ZERO,
        },
        ..SimConfig::default()
    }
}

/// Sends a JSON chat and returns when its whole answer arrived, relative to `t0`.
async fn timed_chat(sim: &Sim, sid: &str, text: &str, t0: Instant) -> (u16, Duration) {
    let resp = sim.chat(sid, &user_message(text)).send().await.unwrap();
    let status = resp.status().as_u16();
    resp.bytes().await.unwrap();
    (status, t0.elapsed())
}

#[tokio::test]
async fn one_request_per_session_the_others_wait_in_arrival_order() {
    let sim = start_with(slow_model(150)).await;
    let sid = sim.open_llama().await;
    let t0 = Instant::now();
    let mut handles = Vec::new();
    for (i, text) in ["first", "second", "third"].into_iter().enumerate() {
        let req = sim.chat(&sid, &user_message(text));
        handles.push(tokio::spawn(async move {
            tokio::time::sleep(Duration::from_millis(20 * i as u64)).await;
            let resp = req.send().await.unwrap();
            let body: Value = resp.json().await.unwrap();
            (
                body["choices"][0]["message"]["content"].clone(),
                t0.elapsed(),
            )
        }));
    }
    let mut done = Vec::new();
    for h in handles {
        done.push(h.await.unwrap());
    }
    assert_eq!(done[0].0, "Echo: first");
    // Served one after the other, in arrival order: each answer a model's time after the last.
    assert!(done[0].1 >= Duration::from_millis(150), "{:?}", done[0].1);
    assert!(
        done[1].1 >= done[0].1 + Duration::from_millis(140),
        "{done:?}"
    );
    assert!(
        done[2].1 >= done[1].1 + Duration::from_millis(140),
        "{done:?}"
    );
    let c = sim.handle.counters();
    assert_eq!((c.session_waits, c.max_session_concurrency), (2, 3));

    // Two sessions do not wait for each other.
    let other = sim.open_llama().await;
    let t0 = Instant::now();
    let (a, b) = tokio::join!(
        timed_chat(&sim, &sid, "x", t0),
        timed_chat(&sim, &other, "y", t0)
    );
    assert_eq!((a.0, b.0), (200, 200));
    assert_eq!(sim.handle.counters().session_waits, 2);
}

#[tokio::test]
async fn older_nodes_serve_a_session_concurrently() {
    let sim = start_with(SimConfig {
        session_concurrency: None,
        ..slow_model(300)
    })
    .await;
    let sid = sim.open_llama().await;
    let t0 = Instant::now();
    let (a, b, c) = tokio::join!(
        timed_chat(&sim, &sid, "a", t0),
        timed_chat(&sim, &sid, "b", t0),
        timed_chat(&sim, &sid, "c", t0)
    );
    // One after the other would take 900 ms.
    assert!(a.1.max(b.1).max(c.1) < Duration::from_millis(600));
    let counters = sim.handle.counters();
    // Nobody waited, but the counter still shows that three requests shared the session.
    assert_eq!(
        (counters.session_waits, counters.max_session_concurrency),
        (0, 3)
    );
}

#[tokio::test]
async fn the_queue_counts_against_a_streams_first_byte() {
    let sim = start_with(slow_model(100)).await;
    sim.handle.set_chunk_delay(Duration::from_millis(30));
    let sid = sim.open_llama().await;
    let first = sim.chat(&sid, &stream_request("one two three four"));
    let t0 = Instant::now();
    let holder = tokio::spawn(async move { first.send().await.unwrap().text().await.unwrap() });
    tokio::time::sleep(Duration::from_millis(20)).await;
    let second = sim
        .chat(&sid, &stream_request("later"))
        .send()
        .await
        .unwrap();
    // The head came only when the first stream had ended (100 ms + 7 events × 30 ms) and the
    // model had produced its first token for this one (100 ms).
    let head_at = t0.elapsed();
    assert!(head_at >= Duration::from_millis(380), "{head_at:?}");
    assert!(holder.is_finished(), "the first stream still ran");
    assert!(second.text().await.unwrap().ends_with("data: [DONE]\n\n"));
    assert_eq!(sim.handle.counters().session_waits, 1);
}

#[tokio::test]
async fn a_caller_that_leaves_does_not_free_the_session() {
    let sim = start_with(slow_model(300)).await;
    let sid = sim.open_llama().await;
    let t0 = Instant::now();
    // The first caller gives up after 50 ms; the node still runs its request to the end.
    let gave_up = sim
        .chat(&sid, &user_message("abandoned"))
        .timeout(Duration::from_millis(50))
        .send()
        .await;
    assert!(gave_up.unwrap_err().is_timeout());
    let (status, at) = timed_chat(&sim, &sid, "next", t0).await;
    assert_eq!(status, 200);
    // 300 ms for the abandoned generation, then 300 ms for this one.
    assert!(at >= Duration::from_millis(590), "{at:?}");
    assert_eq!(sim.handle.counters().session_waits, 1);
}

#[tokio::test]
async fn an_open_takes_its_time_and_completes_without_its_caller() {
    let sim = start_with(SimConfig {
        open_latency: Duration::from_millis(300),
        ..SimConfig::default()
    })
    .await;
    let t0 = Instant::now();
    sim.open_llama().await;
    assert!(t0.elapsed() >= Duration::from_millis(300));

    let gave_up = sim
        .post(&format!("/blockchain/models/{LLAMA_MODEL_ID}/session"))
        .json(&json!({"sessionDuration": 600}))
        .timeout(Duration::from_millis(50))
        .send()
        .await;
    assert!(gave_up.unwrap_err().is_timeout());
    assert_eq!(sim.handle.counters().sessions_opened, 1, "not yet");
    assert!(
        sim.wait_for_counters(Duration::from_secs(2), |c| c.sessions_opened == 2
            && c.opens_caller_gone == 1)
            .await,
        "{:?}",
        sim.handle.counters()
    );
    let (_, list) = sim
        .get_json(&format!("/blockchain/sessions/user?user={DEFAULT_WALLET}"))
        .await;
    assert_eq!(list["sessions"].as_array().unwrap().len(), 2);
}

#[tokio::test]
async fn opens_that_fail_after_mining_leave_a_session_on_chain() {
    let sim = start().await;
    let expected = [
        (
            MinedError::ParseReceipt,
            "failed to send transaction: parse session receipt failed: failed to wait for confirmations 429 Too Many Requests",
        ),
        (
            MinedError::GetSession,
            "failed to get session: 429 Too Many Requests",
        ),
        (
            MinedError::StoreSession,
            "failed to store session: Writes are blocked",
        ),
        (
            MinedError::NotMined,
            "failed to send transaction: open session failed: transaction not mined after all escalation attempts: last tx 0x",
        ),
        (
            MinedError::NotYetVisible,
            "session created on-chain (tx mined) but not yet visible after retries",
        ),
    ];
    for (n, (error, text)) in expected.into_iter().enumerate() {
        sim.fault(
            FaultRoute::OpenSession,
            FaultKind::OpenFailsAfterMining {
                error,
                visible_after_ms: 0,
            },
            Some(1),
        );
        let resp = sim
            .post(&format!("/blockchain/models/{LLAMA_MODEL_ID}/session"))
            .json(&json!({"sessionDuration": 600}))
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 500, "{error:?}");
        let body: Value = resp.json().await.unwrap();
        assert!(body["error"].as_str().unwrap().starts_with(text), "{body}");
        // Paid for all the same: the wallet's newest session is a new, open one.
        let (_, list) = sim
            .get_json(&format!("/blockchain/sessions/user?user={DEFAULT_WALLET}"))
            .await;
        let sessions = list["sessions"].as_array().unwrap();
        assert_eq!(sessions.len(), n + 1, "{error:?}");
        assert_eq!(sessions[0]["ClosedAt"], 0);
    }
    assert_eq!(sim.handle.counters().sessions_opened, 5);
}

#[tokio::test]
async fn a_session_mined_late_appears_later() {
    let sim = start().await;
    sim.fault(
        FaultRoute::OpenSession,
        FaultKind::OpenFailsAfterMining {
            error: MinedError::NotMined,
            visible_after_ms: 300,
        },
        Some(1),
    );
    let resp = sim
        .post(&format!("/blockchain/models/{LLAMA_MODEL_ID}/session"))
        .json(&json!({"sessionDuration": 600}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 500);
    let user = format!("/blockchain/sessions/user?user={DEFAULT_WALLET}");
    assert_eq!(sim.get_json(&user).await.1, json!({"sessions": []}));
    let id = sim.handle.session_ids().pop().unwrap();
    assert_eq!(
        sim.get_json(&format!("/blockchain/sessions/{id}")).await,
        (500, json!({"error": "session not found"}))
    );
    tokio::time::sleep(Duration::from_millis(350)).await;
    let (_, list) = sim.get_json(&user).await;
    assert_eq!(list["sessions"][0]["Id"], id.as_str());
    assert_eq!(
        sim.chat_json(&id, &user_message("hi")).await["object"],
        "chat.completion"
    );
}

#[tokio::test]
async fn the_contracts_minimum_can_be_turned_off() {
    let sim = start_with(SimConfig {
        min_session_seconds: 0,
        ..SimConfig::default()
    })
    .await;
    sim.open_session(LLAMA_MODEL_ID, 60).await;
    let resp = sim
        .post(&format!("/blockchain/models/{LLAMA_MODEL_ID}/session"))
        .json(&json!({"sessionDuration": 0}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 500, "zero still reverts");
}

#[tokio::test]
async fn only_the_exact_asc_lists_oldest_first() {
    let sim = start().await;
    let first = sim.open_llama().await;
    let second = sim.open_llama().await;
    let ids = |order: &'static str| {
        let path = format!("/blockchain/sessions/user?user={DEFAULT_WALLET}&order={order}");
        let sim = &sim;
        async move {
            let (status, list) = sim.get_json(&path).await;
            assert_eq!(status, 200, "{order}");
            list["sessions"]
                .as_array()
                .unwrap()
                .iter()
                .map(|s| s["Id"].as_str().unwrap().to_owned())
                .collect::<Vec<_>>()
        }
    };
    assert_eq!(ids("ASC").await, [first.clone(), second.clone()]);
    for order in ["asc", "desc", "whatever"] {
        assert_eq!(ids(order).await, [second.clone(), first.clone()], "{order}");
    }
    let (status, _) = sim
        .get_json(&format!(
            "/blockchain/sessions/user?user={DEFAULT_WALLET}&limit=300"
        ))
        .await;
    assert_eq!(status, 400, "limit is a uint8");
}

#[tokio::test]
async fn a_chain_read_blip_reads_as_session_not_found() {
    let sim = start().await;
    let sid = sim.open_llama().await;
    for route in [
        FaultRoute::Chat,
        FaultRoute::GetSession,
        FaultRoute::CloseSession,
    ] {
        sim.fault(route, FaultKind::ChainReadBlip, Some(1));
    }
    let resp = sim.chat(&sid, &user_message("hi")).send().await.unwrap();
    assert_eq!(resp.status(), 500);
    assert_eq!(
        resp.json::<Value>().await.unwrap(),
        json!({"error": "session not found"})
    );
    assert_eq!(
        sim.get_json(&format!("/blockchain/sessions/{sid}")).await,
        (500, json!({"error": "session not found"}))
    );
    let resp = sim
        .post(&format!("/blockchain/sessions/{sid}/close"))
        .send()
        .await
        .unwrap();
    assert_eq!(
        resp.json::<Value>().await.unwrap(),
        json!({"error": "failed to get session report from user: session not found"})
    );
    // The session was there all along.
    assert_eq!(
        sim.get_json(&format!("/blockchain/sessions/{sid}")).await.0,
        200
    );
    assert_eq!(
        sim.chat_json(&sid, &user_message("hi")).await["object"],
        "chat.completion"
    );
    assert_eq!(sim.handle.counters().sessions_closed, 0);
}

#[tokio::test]
async fn dead_sessions_stay_dead() {
    let cases = [
        (DeadReason::ProviderNotFound, "provider not found"),
        (
            DeadReason::UserNotFound,
            "provider request failed: provider error: user not found",
        ),
        (
            DeadReason::TeeAttestation,
            "p-node tee attestation failed: TLS certificate changed since session was opened",
        ),
        (
            DeadReason::ProviderUnreachable,
            "provider request failed: failed to connect to provider: dial tcp",
        ),
    ];
    let sim = start().await;
    for (reason, text) in cases {
        let sid = sim.open_llama().await;
        sim.fault(FaultRoute::Chat, FaultKind::DeadSession { reason }, Some(1));
        for attempt in 0..3 {
            let resp = sim.chat(&sid, &stream_request("hi")).send().await.unwrap();
            assert_eq!(resp.status(), 500, "{reason:?} {attempt}");
            // The handler had set the stream's content type; gin keeps it for the 500.
            assert_eq!(resp.headers()["content-type"], "text/event-stream");
            let body: Value = resp.json().await.unwrap();
            assert!(body["error"].as_str().unwrap().starts_with(text), "{body}");
        }
        // Other sessions are unaffected.
        let other = sim.open_llama().await;
        assert_eq!(
            sim.chat_json(&other, &user_message("x")).await["object"],
            "chat.completion"
        );
    }
}

#[tokio::test]
async fn some_dead_sessions_fail_before_the_queue() {
    let sim = start_with(slow_model(1000)).await;
    let sid = sim.open_llama().await;
    let busy = sim.chat(&sid, &user_message("busy"));
    let holder = tokio::spawn(async move { busy.send().await.unwrap().status() });
    tokio::time::sleep(Duration::from_millis(30)).await;
    sim.fault(
        FaultRoute::Chat,
        FaultKind::DeadSession {
            reason: DeadReason::ProviderNotFound,
        },
        Some(1),
    );
    let t0 = Instant::now();
    let resp = sim.chat(&sid, &user_message("x")).send().await.unwrap();
    assert_eq!(resp.status(), 500);
    assert!(
        t0.elapsed() < Duration::from_millis(700),
        "answered without queueing"
    );
    // The busy request had passed its checks already.
    assert_eq!(holder.await.unwrap(), 200);
}

#[tokio::test]
async fn todays_node_ignores_failover() {
    let sim = start().await;
    let sid = open_failover(&sim).await;
    sim.fault(
        FaultRoute::Chat,
        FaultKind::DeadSession {
            reason: DeadReason::UserNotFound,
        },
        Some(1),
    );
    let resp = sim.chat(&sid, &user_message("hi")).send().await.unwrap();
    assert_eq!(resp.status(), 500);
    let c = sim.handle.counters();
    assert_eq!(
        (c.failovers, c.sessions_opened, c.sessions_closed),
        (0, 1, 0)
    );
}

async fn open_failover(sim: &Sim) -> String {
    let resp = sim
        .post(&format!("/blockchain/models/{LLAMA_MODEL_ID}/session"))
        .json(&json!({"sessionDuration": 3600, "directPayment": false, "failover": true}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    resp.json::<Value>().await.unwrap()["sessionID"]
        .as_str()
        .unwrap()
        .to_owned()
}

#[tokio::test]
async fn a_failover_session_is_replaced_with_control_chunks() {
    let sim = start_with(SimConfig {
        honour_failover: true,
        ..SimConfig::default()
    })
    .await;
    let dead = DeadReason::ProviderUnreachable;

    // Streaming: two non-JSON control events, then the whole answer from the new session.
    let sid = open_failover(&sim).await;
    sim.fault(
        FaultRoute::Chat,
        FaultKind::DeadSession { reason: dead },
        Some(1),
    );
    let resp = sim
        .chat(&sid, &stream_request("hi there"))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let events = sse_data(&resp.text().await.unwrap());
    assert_eq!(events[0], "provider failed, failover enabled");
    let new_id = events[1]
        .strip_prefix("new session opened: ")
        .unwrap()
        .to_owned();
    assert_ne!(new_id, sid);
    let chunks = json_events(&events[2..]);
    assert_eq!(common::streamed_text(&chunks, 0), "Echo: hi there");
    let (_, old) = sim.get_json(&format!("/blockchain/sessions/{sid}")).await;
    assert!(old["session"]["ClosedAt"].as_u64().unwrap() > 0);
    let (_, new) = sim
        .get_json(&format!("/blockchain/sessions/{new_id}"))
        .await;
    assert_ne!(
        new["session"]["Provider"], old["session"]["Provider"],
        "the failed provider is omitted"
    );
    assert_eq!(new["session"]["EndsAt"], old["session"]["EndsAt"]);

    // JSON: the control messages as JSON strings, concatenated before the completion.
    let sid = open_failover(&sim).await;
    sim.fault(
        FaultRoute::Chat,
        FaultKind::DeadSession { reason: dead },
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
    let rest = text
        .strip_prefix(r#""provider failed, failover enabled""new session opened: 0x"#)
        .unwrap_or_else(|| panic!("{text}"));
    let completion: Value = serde_json::from_str(&rest[64 + 1..]).unwrap();
    assert_eq!(completion["choices"][0]["message"]["content"], "Echo: hi");
    let c = sim.handle.counters();
    assert_eq!(
        (c.failovers, c.sessions_opened, c.sessions_closed),
        (2, 4, 2)
    );
}

#[tokio::test]
async fn a_provider_that_is_down_refuses_handshakes_and_chats() {
    let sim = start().await;
    let (_, rated) = sim
        .get_json(&format!("/blockchain/models/{LLAMA_MODEL_ID}/bids/rated"))
        .await;
    let best = rated["bids"][0]["Bid"].clone();
    let second = rated["bids"][1]["Bid"].clone();
    let on_best = sim.open_llama().await;
    sim.handle
        .set_provider_down(best["Provider"].as_str().unwrap(), true);

    // Its sessions fail once they reach it; by model the node walks on to the next bid.
    let resp = sim
        .chat(&on_best, &user_message("hi"))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 500);
    let body: Value = resp.json().await.unwrap();
    assert!(
        body["error"]
            .as_str()
            .unwrap()
            .starts_with("provider request failed: failed to connect to provider:"),
        "{body}"
    );
    let walked = sim.open_llama().await;
    let (_, s) = sim
        .get_json(&format!("/blockchain/sessions/{walked}"))
        .await;
    assert_eq!(s["session"]["BidID"], second["Id"]);
    let refused = json!({"error": "failed to initiate session: provider request failed: code: 500, msg: <nil>, error: failed to connect to provider: dial tcp 203.0.113.7:3333: connect: connection refused"});
    let resp = sim
        .post(&format!(
            "/blockchain/bids/{}/session",
            best["Id"].as_str().unwrap()
        ))
        .json(&json!({"sessionDuration": 600}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.json::<Value>().await.unwrap(), refused);

    // Every provider down: the node says why each failed, as JSON inside the text.
    common::client()
        .post(sim.url("/__sim/providers"))
        .json(&json!({"provider": second["Provider"], "down": true}))
        .send()
        .await
        .unwrap();
    let resp = sim
        .post(&format!("/blockchain/models/{LLAMA_MODEL_ID}/session"))
        .json(&json!({"sessionDuration": 600}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 500);
    let text = resp.json::<Value>().await.unwrap()["error"]
        .as_str()
        .unwrap()
        .to_owned();
    let listed: Value = serde_json::from_str(
        text.strip_prefix("no provider accepting session: ")
            .unwrap(),
    )
    .unwrap();
    assert_eq!(listed.as_array().unwrap().len(), 2);
    assert_eq!(listed[0]["provider"], best["Provider"]);
    assert_eq!(listed[0]["reason"], refused["error"]);

    // Back up: served again.
    sim.handle
        .set_provider_down(best["Provider"].as_str().unwrap(), false);
    assert_eq!(
        sim.chat_json(&on_best, &user_message("hi")).await["object"],
        "chat.completion"
    );
    assert_eq!(sim.handle.counters().sessions_opened, 2);
}
