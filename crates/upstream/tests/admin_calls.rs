//! The proxy-router's admin calls against the simulator: happy paths and error mapping.

mod common;

use std::time::{Duration, Instant};

use common::*;
use morpheus_domain::ports::{Marketplace, MarketplaceError, SessionGone, TimeoutPhase};
use morpheus_domain::{BidId, EthAddress, SessionId};
use morpheus_router_sim::{Fault, FaultKind, FaultRoute};

#[tokio::test]
async fn every_admin_call_works_against_the_simulator() {
    let sim = sim().await;
    let c = client(&sim.base_url());

    c.health().await.unwrap();

    let models = c.models().await.unwrap();
    assert_eq!(models.len(), morpheus_router_sim::default_models().len());
    let llama_model = models.iter().find(|m| m.id == llama()).unwrap();
    assert_eq!(llama_model.name, "llama-3.3-70b");
    assert!(models.iter().any(|m| m.is_deleted));

    let bids = c.rated_bids(&llama()).await.unwrap();
    assert_eq!(bids.len(), 2);
    assert_eq!(bids[0].bid.price_per_second, 12_000_000_000_000_000_000);
    // 2^53 + 1: a float on the way would have corrupted it.
    assert_eq!(bids[1].bid.price_per_second, 9_007_199_254_740_993);
    assert_eq!(bids[0].bid.model_agent_id, llama().as_str());

    let spender = EthAddress::parse(&format!("0x{}", "ab".repeat(20))).unwrap();
    c.approve(&spender, 10u128.pow(30)).await.unwrap();
    assert_eq!(sim.counters().approvals, 1);

    let id = c.open_model_session(&llama(), terms()).await.unwrap();
    let s = c.session(&id).await.unwrap();
    assert_eq!(s.id, id);
    assert_eq!(s.model_agent_id, llama().as_str());
    assert_eq!(s.bid_id, bids[0].bid.id.as_str());
    assert!(!s.is_closed());
    assert_eq!(s.ends_at - s.opened_at, 600);
    assert!(
        s.stake > u128::from(u64::MAX),
        "stake {} should exceed u64",
        s.stake
    );

    // The node never fills the outer `ID` (`blockchainapi/service.go:306-317`): the bid's own
    // `Id` is the one to open by.
    assert!(
        bids[1]
            .id
            .as_str()
            .trim_start_matches("0x")
            .bytes()
            .all(|b| b == b'0')
    );
    let second_bid: &BidId = &bids[1].bid.id;
    let by_bid = c.open_bid_session(second_bid, terms()).await.unwrap();
    assert_ne!(by_bid, id);
    assert_eq!(
        c.session(&by_bid).await.unwrap().bid_id,
        second_bid.as_str()
    );
    assert_eq!(sim.counters().sessions_opened, 2);

    c.close_session(&id).await.unwrap();
    assert!(c.session(&id).await.unwrap().is_closed());
    assert_eq!(sim.counters().sessions_closed, 1);
}

#[tokio::test]
async fn wrong_credentials_are_unauthorized_but_health_needs_none() {
    let sim = sim().await;
    let c = client_with(&sim.base_url(), |cfg| {
        cfg.password = Some("wrong".to_owned().into());
    });
    assert_eq!(
        c.models().await.unwrap_err(),
        MarketplaceError::Unauthorized
    );
    let anonymous = client_with(&sim.base_url(), |cfg| {
        cfg.user = None;
        cfg.password = None;
    });
    assert_eq!(
        anonymous.rated_bids(&llama()).await.unwrap_err(),
        MarketplaceError::Unauthorized
    );
    anonymous.health().await.unwrap();
}

#[tokio::test]
async fn credentials_in_the_base_url_are_used_and_never_shown() {
    let sim = sim().await;
    let base = sim
        .base_url()
        .replace("http://", &format!("http://{USER}:{PASSWORD}@"));
    let c = client_with(&base, |cfg| {
        cfg.user = None;
        cfg.password = None;
    });
    c.models().await.unwrap();
    assert!(!format!("{c:?}").contains(PASSWORD));
}

#[tokio::test]
async fn unknown_sessions_are_gone_not_found() {
    let sim = sim().await;
    let c = client(&sim.base_url());
    let unknown = SessionId::parse(&format!("0x{}", "7".repeat(64))).unwrap();
    assert_eq!(
        c.session(&unknown).await.unwrap_err(),
        MarketplaceError::SessionGone(SessionGone::NotFound)
    );
    assert_eq!(
        c.close_session(&unknown).await.unwrap_err(),
        MarketplaceError::SessionGone(SessionGone::NotFound)
    );
}

#[tokio::test]
async fn refusals_keep_the_upstream_text() {
    let sim = sim().await;
    let c = client(&sim.base_url());
    let deleted = c
        .models()
        .await
        .unwrap()
        .into_iter()
        .find(|m| m.is_deleted)
        .unwrap();
    let err = c
        .open_model_session(&deleted.id, terms())
        .await
        .unwrap_err();
    assert_eq!(
        err,
        MarketplaceError::Rejected {
            status: 500,
            message: "no bids available".into(),
            retry_after: None
        }
    );
    // A clear refusal is not ambiguous: no recovery lookup was made.
    assert_eq!(sim.counters().requests, 2);
}

#[tokio::test]
async fn a_refused_port_is_unreachable_at_once() {
    let base = refused_base().await;
    let c = client(&base);
    let started = Instant::now();
    let err = c
        .close_session(&SessionId::parse(&format!("0x{}", "1".repeat(64))).unwrap())
        .await
        .unwrap_err();
    assert!(
        matches!(&err, MarketplaceError::Unreachable(m) if !m.contains("127.0.0.1")),
        "{err:?}"
    );
    assert!(
        started.elapsed() < Duration::from_millis(100),
        "{:?}",
        started.elapsed()
    );
    // Reads retry twice with a short backoff, and still give up quickly.
    let started = Instant::now();
    assert!(matches!(
        c.models().await,
        Err(MarketplaceError::Unreachable(_))
    ));
    assert!(
        started.elapsed() < Duration::from_millis(400),
        "{:?}",
        started.elapsed()
    );
}

#[tokio::test]
async fn reads_are_retried_on_transient_failures() {
    let sim = sim().await;
    let c = client(&sim.base_url());
    sim.set_fault(Fault {
        route: FaultRoute::Models,
        kind: FaultKind::Status {
            status: 503,
            body: "<html>busy</html>".into(),
            content_type: None,
        },
        times: Some(2),
    });
    assert_eq!(
        c.models().await.unwrap().len(),
        morpheus_router_sim::default_models().len()
    );
    assert_eq!(sim.counters().requests, 3);
    // A 500 is not transient: no retry.
    sim.set_fault(Fault {
        route: FaultRoute::Models,
        kind: FaultKind::Status {
            status: 500,
            body: r#"{"error":"rpc: dial tcp 10.1.2.3:8545: connection refused"}"#.into(),
            content_type: None,
        },
        times: Some(1),
    });
    let err = c.models().await.unwrap_err();
    assert_eq!(
        err,
        MarketplaceError::Rejected {
            status: 500,
            message: "rpc: dial tcp [address]: connection refused".into(),
            retry_after: None
        }
    );
    assert_eq!(sim.counters().requests, 4);
}

#[tokio::test]
async fn close_is_never_retried() {
    let sim = sim().await;
    let c = client(&sim.base_url());
    let id = c.open_model_session(&llama(), terms()).await.unwrap();
    sim.set_fault(Fault {
        route: FaultRoute::CloseSession,
        kind: FaultKind::Status {
            status: 503,
            body: String::new(),
            content_type: None,
        },
        times: Some(1),
    });
    let before = sim.counters().requests;
    assert!(matches!(
        c.close_session(&id).await,
        Err(MarketplaceError::Rejected { status: 503, .. })
    ));
    assert_eq!(sim.counters().requests, before + 1);
}

#[tokio::test]
async fn redirects_are_not_followed() {
    let sim = sim().await;
    let c = client(&sim.base_url());
    sim.set_fault(Fault {
        route: FaultRoute::Models,
        kind: FaultKind::Redirect {
            location: format!("{}/blockchain/models", sim.base_url()),
        },
        times: Some(1),
    });
    assert!(matches!(
        c.models().await,
        Err(MarketplaceError::InvalidResponse(_))
    ));
    assert_eq!(sim.counters().requests, 1, "the redirect was followed");
}

#[tokio::test]
async fn wrong_content_type_and_huge_bodies_are_invalid() {
    let sim = sim().await;
    let c = client_with(&sim.base_url(), |cfg| cfg.max_body_bytes = 1024 * 1024);
    sim.set_fault(Fault {
        route: FaultRoute::Models,
        kind: FaultKind::WrongContentType,
        times: Some(1),
    });
    assert!(matches!(
        c.models().await,
        Err(MarketplaceError::InvalidResponse(_))
    ));
    sim.set_fault(Fault {
        route: FaultRoute::Models,
        kind: FaultKind::HugeBody {
            bytes: 512 * 1024 * 1024,
        },
        times: Some(1),
    });
    let rss = rss_kib();
    let started = Instant::now();
    assert!(matches!(
        c.models().await,
        Err(MarketplaceError::InvalidResponse(_))
    ));
    assert!(started.elapsed() < Duration::from_secs(2));
    assert!(rss_kib().saturating_sub(rss) < 64 * 1024, "memory grew");
}

#[tokio::test]
async fn a_chunked_body_over_the_cap_is_refused_without_buffering_it() {
    // No Content-Length here, so the cap must bite while reading.
    let base = fake(|_req, mut sock| async move {
        chunked_head(&mut sock, "application/json").await;
        let piece = vec![b' '; 64 * 1024];
        for _ in 0..(256 * 16) {
            if !chunk(&mut sock, &piece).await {
                return;
            }
        }
    })
    .await;
    let c = client_with(&base, |cfg| cfg.max_body_bytes = 1024 * 1024);
    let rss = rss_kib();
    let err = c.models().await.unwrap_err();
    assert!(
        matches!(&err, MarketplaceError::InvalidResponse(m) if m.contains("larger")),
        "{err:?}"
    );
    assert!(rss_kib().saturating_sub(rss) < 64 * 1024, "memory grew");
}

#[tokio::test]
async fn a_stall_before_the_head_times_out_at_the_first_byte_limit() {
    let sim = sim().await;
    let c = client_with(&sim.base_url(), |cfg| {
        cfg.first_byte_timeout = Duration::from_millis(300)
    });
    sim.set_fault(Fault {
        route: FaultRoute::GetSession,
        kind: FaultKind::StallBeforeFirstByte,
        times: Some(1),
    });
    let started = Instant::now();
    let err = c
        .session(&SessionId::parse(&format!("0x{}", "2".repeat(64))).unwrap())
        .await
        .unwrap_err();
    let took = started.elapsed();
    assert_eq!(err, MarketplaceError::Timeout(TimeoutPhase::FirstByte));
    assert!(
        took >= Duration::from_millis(300) && took < Duration::from_millis(800),
        "{took:?}"
    );
}

#[tokio::test]
async fn retry_after_is_reported_on_429() {
    let base = fake(|_req, sock| async move {
        let body = br#"{"error":"too many requests"}"#;
        let head = format!(
            "HTTP/1.1 429 Too Many Requests\r\nContent-Type: application/json\r\nRetry-After: 12\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
            body.len()
        );
        let mut sock = sock;
        use tokio::io::AsyncWriteExt as _;
        let _ = sock.write_all(head.as_bytes()).await;
        let _ = sock.write_all(body).await;
    })
    .await;
    let c = client(&base);
    assert_eq!(
        c.models().await.unwrap_err(),
        MarketplaceError::Rejected {
            status: 429,
            message: "too many requests".into(),
            retry_after: Some(Duration::from_secs(12))
        }
    );
}

#[tokio::test]
async fn requests_carry_basic_auth_except_the_healthcheck() {
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
    let base = fake(move |req, sock| {
        let tx = tx.clone();
        async move {
            let body: &[u8] = if req.target == "/healthcheck" {
                br#"{"status":"healthy"}"#
            } else {
                br#"{"models":[]}"#
            };
            let _ = tx.send(req);
            respond(sock, 200, "application/json; charset=utf-8", body).await;
        }
    })
    .await;
    let c = client(&base);
    c.health().await.unwrap();
    assert_eq!(c.models().await.unwrap(), vec![]);
    let health = rx.recv().await.unwrap();
    assert_eq!(health.header("authorization"), None);
    let models = rx.recv().await.unwrap();
    assert_eq!(models.target, "/blockchain/models");
    assert_eq!(
        models.header("authorization"),
        Some("Basic bW9ycGhldXM6c2ltLXBhc3N3b3Jk")
    );
}

#[tokio::test]
async fn a_full_accept_queue_is_a_connect_timeout() {
    use socket2::{Domain, Socket, Type};
    // A listener that never accepts, with the smallest backlog: once its queue is full the
    // kernel drops further SYNs, so a connect hangs (all on loopback).
    let socket = Socket::new(Domain::IPV4, Type::STREAM, None).unwrap();
    socket
        .bind(
            &"127.0.0.1:0"
                .parse::<std::net::SocketAddr>()
                .unwrap()
                .into(),
        )
        .unwrap();
    socket.listen(0).unwrap();
    let addr = socket.local_addr().unwrap().as_socket().unwrap();
    let mut fillers = Vec::new();
    for _ in 0..8 {
        match tokio::time::timeout(
            Duration::from_millis(100),
            tokio::net::TcpStream::connect(addr),
        )
        .await
        {
            Ok(Ok(s)) => fillers.push(s),
            _ => break,
        }
    }
    let c = client_with(&format!("http://{addr}"), |cfg| {
        cfg.connect_timeout = Duration::from_millis(300);
    });
    let started = Instant::now();
    let err = c
        .close_session(&SessionId::parse(&format!("0x{}", "3".repeat(64))).unwrap())
        .await
        .unwrap_err();
    assert_eq!(err, MarketplaceError::Timeout(TimeoutPhase::Connect));
    assert!(started.elapsed() < Duration::from_secs(1));
    drop(socket);
}

#[tokio::test]
async fn the_wallets_open_sessions_are_listed_across_pages_newest_first() {
    let sim = sim().await;
    let c = client(&sim.base_url());
    // More than two pages of 100 (the node's `limit` is a uint8).
    let mut opened = Vec::new();
    for _ in 0..205 {
        opened.push(c.open_model_session(&llama(), terms()).await.unwrap());
    }
    for id in [&opened[0], &opened[150], &opened[204]] {
        c.close_session(id).await.unwrap();
    }
    let listed = c.wallet_sessions().await.unwrap();
    assert_eq!(listed.len(), 202);
    assert!(listed.iter().all(|s| !s.is_closed()));
    assert!(listed.windows(2).all(|w| w[0].opened_at >= w[1].opened_at));
    let ids: std::collections::HashSet<&SessionId> = listed.iter().map(|s| &s.id).collect();
    assert_eq!(ids.len(), 202);
    assert!(!ids.contains(&opened[150]));
    assert!(ids.contains(&opened[1]) && ids.contains(&opened[203]));
}
