//! Session opens are sent once; an ambiguous outcome is resolved by finding the session the
//! open created, never by opening a second one.

mod common;

use std::sync::Arc;
use std::time::Duration;

use common::*;
use morpheus_domain::ports::{Marketplace, MarketplaceError, TimeoutPhase};
use morpheus_router_sim::{Fault, FaultKind, FaultRoute, SimHandle};
use tokio::net::TcpStream;

fn open_fault(sim: &SimHandle, kind: FaultKind) {
    sim.set_fault(Fault {
        route: FaultRoute::OpenSession,
        kind,
        times: Some(1),
    });
}

#[tokio::test]
async fn an_unreadable_success_is_resolved_by_finding_the_session() {
    let sim = sim().await;
    let c = client(&sim.base_url());
    // The simulator opens the session, then ends the body before any of it.
    open_fault(&sim, FaultKind::CutAfterChunks { chunks: 0 });
    let id = c.open_model_session(&llama(), terms()).await.unwrap();
    assert_eq!(sim.counters().sessions_opened, 1);
    let s = c.session(&id).await.unwrap();
    assert_eq!(s.model_agent_id, llama().as_str());
    assert!(!s.is_closed());
}

#[tokio::test]
async fn a_reset_after_processing_is_resolved_by_finding_the_session() {
    let sim = sim().await;
    let c = client(&sim.base_url());
    open_fault(&sim, FaultKind::ResetAfterChunks { chunks: 0 });
    let id = c.open_model_session(&llama(), terms()).await.unwrap();
    assert_eq!(sim.counters().sessions_opened, 1);
    assert_eq!(
        c.session(&id).await.unwrap().model_agent_id,
        llama().as_str()
    );
}

#[tokio::test]
async fn an_open_that_never_ran_returns_the_original_error() {
    let sim = sim().await;
    let c = client(&sim.base_url());
    // Reset before the simulator processed anything.
    open_fault(&sim, FaultKind::Reset);
    let err = c.open_model_session(&llama(), terms()).await.unwrap_err();
    assert!(matches!(err, MarketplaceError::Unreachable(_)), "{err:?}");
    assert_eq!(sim.counters().sessions_opened, 0);
    // One open, then wallet + session list pairs for the recovery window: looked, found
    // nothing, did not re-send the open.
    let requests = sim.counters().requests;
    assert!(requests >= 3 && (requests - 1) % 2 == 0, "{requests}");
}

#[tokio::test]
async fn sessions_already_handed_out_are_never_adopted() {
    let sim = sim().await;
    let c = client(&sim.base_url());
    let first = c.open_model_session(&llama(), terms()).await.unwrap();
    open_fault(
        &sim,
        FaultKind::Status {
            status: 502,
            body: "<html>Bad Gateway</html>".into(),
            content_type: None,
        },
    );
    let err = c.open_model_session(&llama(), terms()).await.unwrap_err();
    assert!(
        matches!(err, MarketplaceError::Rejected { status: 502, .. }),
        "{err:?} (must not adopt {first})"
    );
    assert_eq!(sim.counters().sessions_opened, 1);
}

#[tokio::test]
async fn clear_refusals_are_returned_without_a_lookup() {
    let sim = sim().await;
    let c = client(&sim.base_url());
    open_fault(
        &sim,
        FaultKind::Status {
            status: 400,
            body: r#"{"error":"invalid session duration"}"#.into(),
            content_type: None,
        },
    );
    assert!(matches!(
        c.open_model_session(&llama(), terms()).await,
        Err(MarketplaceError::Rejected { status: 400, .. })
    ));
    assert_eq!(sim.counters().requests, 1);
}

#[tokio::test]
async fn bid_opens_are_recovered_by_bid() {
    let sim = sim().await;
    let c = client(&sim.base_url());
    let bids = c.rated_bids(&llama()).await.unwrap();
    // A session on the other bid of the same model must not be taken for ours.
    c.open_bid_session(&bids[0].bid.id, terms()).await.unwrap();
    open_fault(&sim, FaultKind::CutAfterChunks { chunks: 0 });
    let id = c.open_bid_session(&bids[1].bid.id, terms()).await.unwrap();
    assert_eq!(
        c.session(&id).await.unwrap().bid_id,
        bids[1].bid.id.as_str()
    );
    assert_eq!(sim.counters().sessions_opened, 2);
}

/// A node that carries out the open (forwarding it to the simulator) and then fails to answer:
/// `stall` keeps the connection silent, otherwise it is reset. Everything else is relayed.
async fn lossy_node(sim: &SimHandle, stall: bool) -> String {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let http = reqwest::Client::new();
    let target_base = sim.base_url();
    let ctx = Arc::new((http, target_base));
    fake(move |req, sock: TcpStream| {
        let ctx = Arc::clone(&ctx);
        async move {
            let (http, base) = &*ctx;
            let method = reqwest::Method::from_bytes(req.method.as_bytes()).unwrap();
            let mut rb = http
                .request(method, format!("{base}{}", req.target))
                .body(req.body.clone());
            for name in ["authorization", "content-type"] {
                if let Some(v) = req.header(name) {
                    rb = rb.header(name, v);
                }
            }
            let resp = rb.send().await.unwrap();
            let status = resp.status().as_u16();
            let body = resp.bytes().await.unwrap();
            if req.target.ends_with("/session") && req.method == "POST" {
                if stall {
                    tokio::time::sleep(Duration::from_secs(30)).await;
                } else {
                    reset(sock);
                }
                return;
            }
            respond(sock, status, "application/json; charset=utf-8", &body).await;
        }
    })
    .await
}

#[tokio::test]
async fn a_timeout_after_the_node_opened_adopts_the_session() {
    let sim = sim().await;
    let base = lossy_node(&sim, true).await;
    let c = client_with(&base, |cfg| {
        cfg.open_timeout = Duration::from_millis(500);
    });
    let id = c.open_model_session(&llama(), terms()).await.unwrap();
    assert_eq!(sim.counters().sessions_opened, 1);
    let direct = client(&sim.base_url());
    assert_eq!(
        direct.session(&id).await.unwrap().model_agent_id,
        llama().as_str()
    );
}

#[tokio::test]
async fn a_reset_after_the_node_opened_adopts_the_session() {
    let sim = sim().await;
    let base = lossy_node(&sim, false).await;
    let c = client(&base);
    let id = c.open_model_session(&llama(), terms()).await.unwrap();
    assert_eq!(sim.counters().sessions_opened, 1);
    // The next ambiguous open must not adopt the same session again.
    let err = c.open_model_session(&llama(), terms()).await;
    match err {
        Ok(second) => assert_ne!(second, id),
        Err(e) => panic!("{e:?}"),
    }
    assert_eq!(sim.counters().sessions_opened, 2);
}

#[tokio::test]
async fn an_ambiguous_open_with_nothing_to_find_keeps_its_error() {
    let sim = sim().await;
    let c = client_with(&sim.base_url(), |cfg| {
        cfg.open_timeout = Duration::from_millis(300);
    });
    open_fault(&sim, FaultKind::StallBeforeFirstByte);
    assert_eq!(
        c.open_model_session(&llama(), terms()).await.unwrap_err(),
        MarketplaceError::Timeout(TimeoutPhase::FirstByte)
    );
    assert_eq!(sim.counters().sessions_opened, 0);
}

/// The node answers an open with an ordinary 500 after the money moved (reference §2.1): the
/// session exists, or appears once a lagging RPC node or a late block shows it. Each such text
/// is recovered by watching the node's sessions, and nothing is opened twice.
#[tokio::test]
async fn every_error_after_mining_adopts_the_session_that_appears() {
    use morpheus_router_sim::MinedError;
    for error in [
        MinedError::ParseReceipt,
        MinedError::GetSession,
        MinedError::StoreSession,
        MinedError::NotMined,
        MinedError::NotYetVisible,
    ] {
        let sim = sim().await;
        let c = client(&sim.base_url());
        open_fault(
            &sim,
            FaultKind::OpenFailsAfterMining {
                error,
                visible_after_ms: 400,
            },
        );
        let id = c
            .open_model_session(&llama(), terms())
            .await
            .unwrap_or_else(|e| panic!("{error:?}: {e:?}"));
        assert_eq!(sim.session_ids(), vec![id.as_str().to_owned()], "{error:?}");
        assert!(!c.session(&id).await.unwrap().is_closed());
    }
}

/// The open's own budget: minutes on a real node, not the 30 s of the other calls.
#[tokio::test]
async fn a_slow_open_is_waited_for() {
    let sim = sim().await;
    let c = client_with(&sim.base_url(), |cfg| {
        cfg.request_timeout = Duration::from_millis(200);
        cfg.first_byte_timeout = Duration::from_millis(200);
        cfg.open_timeout = Duration::from_secs(5);
    });
    open_fault(&sim, FaultKind::Latency { ms: 700 });
    c.open_model_session(&llama(), terms()).await.unwrap();
    assert_eq!(sim.counters().sessions_opened, 1);
}
