//! `chat` against the simulator (and a hand-written server for what it cannot do): whole
//! answers, streams, and every way a stream can break.

mod common;

use std::time::{Duration, Instant};

use common::*;
use futures_util::StreamExt as _;
use morpheus_domain::ports::{
    ChatReply, Marketplace, MarketplaceError, SessionGone, StreamFault, TimeoutPhase,
};
use morpheus_domain::{ReportedUsage, SessionId, TokenUsage, UsageSource};
use morpheus_router_sim::{Fault, FaultKind, FaultRoute, SimConfig, SimHandle, Simulator};
use morpheus_upstream::ProxyRouterClient;

async fn with_session() -> (SimHandle, ProxyRouterClient, SessionId) {
    let sim = sim().await;
    let c = client_with(&sim.base_url(), |cfg| {
        cfg.idle_timeout = Duration::from_millis(400);
    });
    let id = c.open_model_session(&llama(), terms()).await.unwrap();
    (sim, c, id)
}

fn chat_fault(sim: &SimHandle, kind: FaultKind) {
    sim.set_fault(Fault {
        route: FaultRoute::Chat,
        kind,
        times: Some(1),
    });
}

fn content_of(events: &[Result<morpheus_domain::ports::ChatEvent, StreamFault>]) -> String {
    events
        .iter()
        .filter_map(|e| e.as_ref().ok())
        .filter_map(|e| {
            let v: serde_json::Value = serde_json::from_str(&e.data).unwrap();
            v["choices"][0]["delta"]["content"]
                .as_str()
                .map(str::to_owned)
        })
        .collect()
}

#[tokio::test]
async fn a_whole_completion_comes_back_with_its_usage() {
    let (_sim, c, id) = with_session().await;
    let reply = c
        .chat(chat_call(&id, false, "hello there world"))
        .await
        .unwrap();
    let ChatReply::Complete { body, usage } = reply else {
        panic!("{reply:?}")
    };
    let v: serde_json::Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(
        v["choices"][0]["message"]["content"],
        "Echo: hello there world"
    );
    assert_eq!(
        usage,
        Some(ReportedUsage {
            tokens: TokenUsage {
                prompt_tokens: 3,
                completion_tokens: 4
            },
            source: UsageSource::Usage,
        })
    );
    assert!(
        v.get("usage_from_provider").is_none() && v.get("usage_from_consumer").is_none(),
        "the node's own members are not passed on: {v}"
    );
}

#[tokio::test]
async fn a_stream_ends_cleanly_without_done() {
    // Nodes before 2025-11-19 did not relay `[DONE]`.
    let sim = Simulator::start(
        SimConfig {
            done_marker: false,
            ..SimConfig::default()
        },
        "127.0.0.1:0".parse().unwrap(),
    )
    .await
    .unwrap();
    let c = client(&sim.base_url());
    let id = c.open_model_session(&llama(), terms()).await.unwrap();
    let mut call = chat_call(&id, true, "one two three");
    // The backend streams usage only when asked.
    call.body = serde_json::to_vec(&serde_json::json!({
        "messages": [{"role": "user", "content": "one two three"}],
        "stream": true,
        "stream_options": {"include_usage": true},
    }))
    .unwrap()
    .into();
    let reply = c.chat(call).await.unwrap();
    let events = collect(reply).await;
    assert!(events.iter().all(Result::is_ok), "{events:?}");
    assert_eq!(content_of(&events), "Echo: one two three");
    let last = events.last().unwrap().as_ref().unwrap();
    assert_eq!(
        last.usage,
        Some(ReportedUsage {
            tokens: TokenUsage {
                prompt_tokens: 3,
                completion_tokens: 4
            },
            source: UsageSource::Usage,
        })
    );
    assert!(last.usage_only);
    assert!(
        events
            .iter()
            .all(|e| !e.as_ref().unwrap().data.contains("usage_from_")),
        "{events:?}"
    );
}

#[tokio::test]
async fn a_stream_with_done_ends_before_it() {
    let sim = Simulator::start(
        SimConfig {
            done_marker: true,
            ..SimConfig::default()
        },
        "127.0.0.1:0".parse().unwrap(),
    )
    .await
    .unwrap();
    let c = client(&sim.base_url());
    let id = c.open_model_session(&llama(), terms()).await.unwrap();
    let events = collect(c.chat(chat_call(&id, true, "a b")).await.unwrap()).await;
    assert!(events.iter().all(Result::is_ok));
    assert!(
        events
            .iter()
            .all(|e| !e.as_ref().unwrap().data.contains("[DONE]"))
    );
    assert_eq!(content_of(&events), "Echo: a b");
}

#[tokio::test]
async fn expired_and_unknown_sessions_are_gone() {
    let (sim, c, id) = with_session().await;
    sim.advance_clock(Duration::from_secs(601));
    for stream in [false, true] {
        assert_eq!(
            c.chat(chat_call(&id, stream, "hi")).await.unwrap_err(),
            MarketplaceError::SessionGone(SessionGone::Expired)
        );
    }
    let unknown = SessionId::parse(&format!("0x{}", "9".repeat(64))).unwrap();
    assert_eq!(
        c.chat(chat_call(&unknown, true, "hi")).await.unwrap_err(),
        MarketplaceError::SessionGone(SessionGone::NotFound)
    );
}

#[tokio::test]
async fn a_stall_before_the_head_is_a_first_byte_timeout() {
    let (sim, _, id) = with_session().await;
    let c = client_with(&sim.base_url(), |cfg| {
        cfg.first_byte_timeout = Duration::from_millis(300);
    });
    chat_fault(&sim, FaultKind::StallBeforeFirstByte);
    let started = Instant::now();
    let err = c.chat(chat_call(&id, true, "hi")).await.unwrap_err();
    let took = started.elapsed();
    assert_eq!(err, MarketplaceError::Timeout(TimeoutPhase::FirstByte));
    assert!(
        took >= Duration::from_millis(300) && took < Duration::from_millis(800),
        "{took:?}"
    );
}

#[tokio::test]
async fn a_whole_answer_may_take_the_chat_timeout_before_its_head() {
    // The node writes a non-streamed answer only once the provider has finished it.
    let (sim, _, id) = with_session().await;
    let c = client_with(&sim.base_url(), |cfg| {
        cfg.first_byte_timeout = Duration::from_millis(200);
        cfg.chat_timeout = Duration::from_secs(5);
    });
    chat_fault(&sim, FaultKind::Latency { ms: 600 });
    assert!(matches!(
        c.chat(chat_call(&id, false, "slow but whole")).await,
        Ok(ChatReply::Complete { .. })
    ));
    let c = client_with(&sim.base_url(), |cfg| {
        cfg.chat_timeout = Duration::from_millis(300);
    });
    chat_fault(&sim, FaultKind::Latency { ms: 600 });
    let err = c.chat(chat_call(&id, false, "too slow")).await.unwrap_err();
    assert_eq!(err, MarketplaceError::Timeout(TimeoutPhase::FirstByte));
}

#[tokio::test]
async fn a_stall_mid_stream_is_reported_as_idle() {
    let (sim, c, id) = with_session().await;
    chat_fault(&sim, FaultKind::StallAfterChunks { chunks: 3 });
    let started = Instant::now();
    let events = collect(c.chat(chat_call(&id, true, "a b c d e f")).await.unwrap()).await;
    assert_eq!(events.len(), 4, "{events:?}");
    assert!(events[..3].iter().all(Result::is_ok));
    assert_eq!(events[3], Err(StreamFault::Idle));
    let took = started.elapsed();
    assert!(
        took >= Duration::from_millis(400) && took < Duration::from_secs(2),
        "{took:?}"
    );
}

#[tokio::test]
async fn a_slow_but_steady_stream_is_not_idle() {
    let (sim, c, id) = with_session().await;
    chat_fault(&sim, FaultKind::DripChunks { every_ms: 150 });
    let events = collect(c.chat(chat_call(&id, true, "a b c")).await.unwrap()).await;
    assert!(events.iter().all(Result::is_ok), "{events:?}");
}

#[tokio::test]
async fn a_cut_stream_is_truncated() {
    let (sim, c, id) = with_session().await;
    chat_fault(&sim, FaultKind::CutAfterChunks { chunks: 3 });
    let events = collect(c.chat(chat_call(&id, true, "a b c d e f")).await.unwrap()).await;
    assert_eq!(events.len(), 4, "{events:?}");
    assert_eq!(events[3], Err(StreamFault::Truncated));
}

#[tokio::test]
async fn garbage_mid_stream_is_malformed_and_ends_it() {
    let (sim, c, id) = with_session().await;
    chat_fault(&sim, FaultKind::GarbageAfterChunks { chunks: 2 });
    let events = collect(c.chat(chat_call(&id, true, "a b c d e f")).await.unwrap()).await;
    assert_eq!(events.len(), 3, "{events:?}");
    assert!(matches!(events[2], Err(StreamFault::Malformed(_))));
}

#[tokio::test]
async fn a_reset_mid_stream_is_a_transport_fault() {
    let (sim, c, id) = with_session().await;
    chat_fault(&sim, FaultKind::ResetAfterChunks { chunks: 2 });
    let events = collect(c.chat(chat_call(&id, true, "a b c d e f")).await.unwrap()).await;
    assert_eq!(events.len(), 3, "{events:?}");
    assert!(
        matches!(events[2], Err(StreamFault::Transport(_))),
        "{events:?}"
    );
}

#[tokio::test]
async fn a_reset_during_a_whole_answer_is_invalid_never_partial() {
    let (sim, c, id) = with_session().await;
    chat_fault(&sim, FaultKind::ResetAfterChunks { chunks: 1 });
    let err = c
        .chat(chat_call(&id, false, "a b c d e f"))
        .await
        .unwrap_err();
    assert!(
        matches!(err, MarketplaceError::InvalidResponse(_)),
        "{err:?}"
    );
}

#[tokio::test]
async fn bad_usage_is_dropped() {
    let (sim, c, id) = with_session().await;
    chat_fault(&sim, FaultKind::BadUsage);
    let ChatReply::Complete { usage, .. } = c.chat(chat_call(&id, false, "a b")).await.unwrap()
    else {
        panic!()
    };
    // The provider's odd `usage` is dropped; the node's own counts stand in for it.
    let not_the_providers =
        |u: Option<ReportedUsage>| u.is_none_or(|u| u.source != UsageSource::Usage);
    assert!(not_the_providers(usage), "{usage:?}");
    chat_fault(&sim, FaultKind::BadUsage);
    let events = collect(c.chat(chat_call(&id, true, "a b")).await.unwrap()).await;
    assert!(
        events
            .iter()
            .all(|e| not_the_providers(e.as_ref().unwrap().usage)),
        "{events:?}"
    );
}

#[tokio::test]
async fn odd_answers_are_invalid() {
    let (sim, c, id) = with_session().await;
    chat_fault(&sim, FaultKind::WrongContentType);
    assert!(matches!(
        c.chat(chat_call(&id, false, "a")).await,
        Err(MarketplaceError::InvalidResponse(_))
    ));
    chat_fault(&sim, FaultKind::WrongContentType);
    assert!(matches!(
        c.chat(chat_call(&id, true, "a")).await,
        Err(MarketplaceError::InvalidResponse(_))
    ));
    chat_fault(
        &sim,
        FaultKind::Redirect {
            location: "http://127.0.0.1:1/elsewhere".into(),
        },
    );
    assert!(matches!(
        c.chat(chat_call(&id, false, "a")).await,
        Err(MarketplaceError::InvalidResponse(_))
    ));
    chat_fault(&sim, FaultKind::HugeBody { bytes: 64 << 20 });
    let before = rss_kib();
    assert!(matches!(
        c.chat(chat_call(&id, false, "a")).await,
        Err(MarketplaceError::InvalidResponse(_))
    ));
    assert!(rss_kib().saturating_sub(before) < 32 * 1024);
}

#[tokio::test]
async fn dropping_a_stream_cancels_it_upstream() {
    let (sim, c, id) = with_session().await;
    sim.set_chunk_delay(Duration::from_millis(30));
    let words = vec!["w"; 200].join(" ");
    let ChatReply::Stream(mut stream) = c.chat(chat_call(&id, true, &words)).await.unwrap() else {
        panic!()
    };
    for _ in 0..3 {
        stream.next().await.unwrap().unwrap();
    }
    assert_eq!(sim.counters().streams_cancelled, 0);
    drop(stream);
    let started = Instant::now();
    while sim.counters().streams_cancelled == 0 {
        assert!(
            started.elapsed() < Duration::from_secs(1),
            "upstream kept streaming"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

#[tokio::test]
async fn a_refused_port_is_unreachable_quickly() {
    let c = client(&refused_base().await);
    let id = SessionId::parse(&format!("0x{}", "3".repeat(64))).unwrap();
    let started = Instant::now();
    let err = c.chat(chat_call(&id, true, "a")).await.unwrap_err();
    assert!(matches!(err, MarketplaceError::Unreachable(_)), "{err:?}");
    assert!(
        started.elapsed() < Duration::from_millis(100),
        "{:?}",
        started.elapsed()
    );
}

#[tokio::test]
async fn the_request_carries_session_headers_and_the_body_as_is() {
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
    let base = fake(move |req, sock| {
        let tx = tx.clone();
        async move {
            let _ = tx.send(req);
            respond(
                sock,
                200,
                "application/json",
                br#"{"choices":[{"message":{"content":"x"},"finish_reason":"stop"}]}"#,
            )
            .await;
        }
    })
    .await;
    let c = client(&base);
    let id = SessionId::parse(&format!("0x{}", "4".repeat(64))).unwrap();
    let call = chat_call(&id, false, "hi");
    let sent = call.body.clone();
    let ChatReply::Complete { usage, .. } = c.chat(call).await.unwrap() else {
        panic!()
    };
    assert_eq!(usage, None);
    let req = rx.recv().await.unwrap();
    assert_eq!(
        (req.method.as_str(), req.target.as_str()),
        ("POST", "/v1/chat/completions")
    );
    assert_eq!(req.header("session_id"), Some(id.as_str()));
    assert_eq!(req.header("accept"), Some("application/json"));
    assert_eq!(req.header("content-type"), Some("application/json"));
    assert_eq!(req.header("x-request-id"), Some("req-123"));
    assert!(req.header("authorization").unwrap().starts_with("Basic "));
    assert_eq!(req.body, sent.to_vec());
}

#[tokio::test]
async fn a_json_answer_to_a_stream_request_is_invalid() {
    let base = fake(|_req, sock| async move {
        respond(sock, 200, "application/json", br#"{"choices":[]}"#).await;
    })
    .await;
    let c = client(&base);
    let id = SessionId::parse(&format!("0x{}", "5".repeat(64))).unwrap();
    assert_eq!(
        c.chat(chat_call(&id, true, "a")).await.unwrap_err(),
        MarketplaceError::InvalidResponse("expected an event stream".into())
    );
}

#[tokio::test]
async fn an_error_inside_a_200_is_mapped_like_an_error_status() {
    let base = fake(|_req, sock| async move {
        respond(
            sock,
            200,
            "application/json",
            br#"{"error":"session expired"}"#,
        )
        .await;
    })
    .await;
    let c = client(&base);
    let id = SessionId::parse(&format!("0x{}", "6".repeat(64))).unwrap();
    assert_eq!(
        c.chat(chat_call(&id, false, "a")).await.unwrap_err(),
        MarketplaceError::SessionGone(SessionGone::Expired)
    );
}

#[tokio::test]
async fn an_error_appended_to_a_stream_is_an_upstream_fault() {
    let base = fake(|_req, mut sock| async move {
        chunked_head(&mut sock, "text/event-stream").await;
        chunk(
            &mut sock,
            b"data: {\"choices\":[{\"delta\":{\"content\":\"x\"},\"finish_reason\":null}]}\n\n",
        )
        .await;
        chunk(
            &mut sock,
            b"data: {\"error\":{\"message\":\"provider 10.0.0.9:3333 failed\"}}\n\n",
        )
        .await;
        chunk(&mut sock, b"").await;
    })
    .await;
    let c = client(&base);
    let id = SessionId::parse(&format!("0x{}", "7".repeat(64))).unwrap();
    let events = collect(c.chat(chat_call(&id, true, "a")).await.unwrap()).await;
    assert_eq!(events.len(), 2);
    assert_eq!(
        events[1],
        Err(StreamFault::Upstream("provider [address] failed".into()))
    );
}

#[tokio::test]
async fn an_oversized_event_is_malformed_without_buffering_it() {
    let base = fake(|_req, mut sock| async move {
        chunked_head(&mut sock, "text/event-stream").await;
        chunk(&mut sock, b"data: {\"choices\":[]").await;
        let piece = vec![b' '; 64 * 1024];
        for _ in 0..(16 * 64) {
            if !chunk(&mut sock, &piece).await {
                return;
            }
        }
    })
    .await;
    let c = client_with(&base, |cfg| cfg.max_event_bytes = 256 * 1024);
    let id = SessionId::parse(&format!("0x{}", "8".repeat(64))).unwrap();
    let before = rss_kib();
    let events = collect(c.chat(chat_call(&id, true, "a")).await.unwrap()).await;
    assert_eq!(events.len(), 1);
    assert!(matches!(&events[0], Err(StreamFault::Malformed(m)) if m.contains("larger")));
    assert!(rss_kib().saturating_sub(before) < 32 * 1024);
}
