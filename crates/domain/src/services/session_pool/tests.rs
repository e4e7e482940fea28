//! The pool on fake ports: the cap, the queue's deadline, one request per session, leases
//! that another replica cannot take, and failed opens reaching the waiting requests.

use std::sync::Arc;
use std::time::Duration;

use super::*;
use crate::testing::{FakeMarket, MemorySessions, SessionWorld};

fn pool_on(
    store: &Arc<MemorySessions>,
    market: &Arc<FakeMarket>,
    replica: &str,
    settings: PoolSettings,
) -> SessionPool {
    SessionPool::new(
        store.clone(),
        store.clone(),
        market.clone(),
        replica.to_owned(),
        settings,
    )
}

#[tokio::test]
async fn many_concurrent_claims_open_at_most_the_cap_and_share_the_sessions() {
    let w = SessionWorld::new(true).await;
    let pool = w.sessions.pool().clone();
    let claims = (0..40).map(|_| {
        let (pool, model, owner) = (pool.clone(), w.model.clone(), w.owner);
        tokio::spawn(async move {
            let lease = pool.claim(&model, SessionWorld::terms(), owner).await?;
            // Held a while: the others must wait for it or another session.
            tokio::time::sleep(Duration::from_millis(20)).await;
            Ok::<_, ChatSessionError>(lease.session().id.clone())
        })
    });
    let mut served = Vec::new();
    for claim in claims {
        served.push(claim.await.unwrap().unwrap());
    }
    assert_eq!(served.len(), 40);
    let opened = w.market.opens();
    assert!((1..=4).contains(&opened), "{opened} opens for a cap of 4");
    let distinct: std::collections::HashSet<_> = served.iter().collect();
    assert_eq!(distinct.len() as u64, opened);
    let snapshot = pool.snapshot();
    assert_eq!(snapshot[0].busy, 0);
    assert_eq!(snapshot[0].idle, opened);
}

#[tokio::test]
async fn a_session_serves_one_request_at_a_time_and_past_the_deadline_the_answer_is_busy() {
    let w = SessionWorld::new(true).await;
    let settings = PoolSettings {
        max_sessions_per_model: 1,
        queue_wait: Duration::from_millis(100),
        ..SessionWorld::pool_settings()
    };
    let pool = pool_on(&w.store, &w.market, "replica-b", settings);
    let held = pool
        .claim(&w.model, SessionWorld::terms(), w.owner)
        .await
        .unwrap();
    let started = std::time::Instant::now();
    let second = pool.claim(&w.model, SessionWorld::terms(), w.owner).await;
    assert!(
        matches!(second, Err(ChatSessionError::PoolBusy(_))),
        "{second:?}"
    );
    assert!(started.elapsed() >= Duration::from_millis(100));
    // Once the first request is done, the session serves the next.
    let id = held.session().id.clone();
    drop(held);
    let third = pool
        .claim(&w.model, SessionWorld::terms(), w.owner)
        .await
        .unwrap();
    assert_eq!(third.session().id, id);
    assert_eq!(w.market.opens(), 1);
}

#[tokio::test]
async fn a_full_queue_refuses_at_once() {
    let w = SessionWorld::new(true).await;
    let settings = PoolSettings {
        max_sessions_per_model: 1,
        queue_depth: 0,
        ..SessionWorld::pool_settings()
    };
    let pool = pool_on(&w.store, &w.market, "replica-b", settings);
    let got = pool.claim(&w.model, SessionWorld::terms(), w.owner).await;
    assert!(matches!(got, Err(ChatSessionError::PoolBusy(_))), "{got:?}");
    assert_eq!(w.market.opens(), 0);
}

#[tokio::test]
async fn a_waiting_request_gets_the_session_another_gives_back() {
    let w = SessionWorld::new(true).await;
    let settings = PoolSettings {
        max_sessions_per_model: 1,
        ..SessionWorld::pool_settings()
    };
    let pool = pool_on(&w.store, &w.market, "replica-b", settings);
    let held = pool
        .claim(&w.model, SessionWorld::terms(), w.owner)
        .await
        .unwrap();
    let waiting = {
        let (pool, model, owner) = (pool.clone(), w.model.clone(), w.owner);
        tokio::spawn(async move { pool.claim(&model, SessionWorld::terms(), owner).await })
    };
    tokio::time::sleep(Duration::from_millis(30)).await;
    assert_eq!(pool.snapshot()[0].waiting, 1);
    let id = held.session().id.clone();
    drop(held);
    let got = waiting.await.unwrap().unwrap();
    assert_eq!(got.session().id, id);
}

#[tokio::test]
async fn two_replicas_never_hold_one_session_and_open_within_the_cap_together() {
    let w = SessionWorld::new(true).await;
    let settings = PoolSettings {
        max_sessions_per_model: 2,
        // Longer than the wait between two looks at a full pool.
        queue_wait: Duration::from_millis(600),
        ..SessionWorld::pool_settings()
    };
    let a = pool_on(&w.store, &w.market, "a", settings.clone());
    let b = pool_on(&w.store, &w.market, "b", settings);
    let on_a = a
        .claim(&w.model, SessionWorld::terms(), w.owner)
        .await
        .unwrap();
    let on_b = b
        .claim(&w.model, SessionWorld::terms(), w.owner)
        .await
        .unwrap();
    assert_ne!(on_a.session().id, on_b.session().id);
    // Both sessions are leased: a third request on either replica waits, then is refused.
    let third = b.claim(&w.model, SessionWorld::terms(), w.owner).await;
    assert!(
        matches!(third, Err(ChatSessionError::PoolBusy(_))),
        "{third:?}"
    );
    assert_eq!(w.market.opens(), 2);
    // A's session, let go at shutdown, can be leased by B.
    let a_session = on_a.session().id.clone();
    drop(on_a);
    a.release_all().await.unwrap();
    let moved = b
        .claim(&w.model, SessionWorld::terms(), w.owner)
        .await
        .unwrap();
    assert_eq!(moved.session().id, a_session);
    assert_eq!(w.market.opens(), 2);
}

#[tokio::test]
async fn a_failed_open_reaches_the_waiting_request_and_frees_its_reservation() {
    let w = SessionWorld::new(true).await;
    FakeMarket::fail_next(
        &w.market.open_failures,
        MarketplaceError::Rejected {
            status: 500,
            message: "no provider accepted the session".to_owned(),
            retry_after: None,
        },
    );
    let pool = w.sessions.pool().clone();
    let got = pool.claim(&w.model, SessionWorld::terms(), w.owner).await;
    assert!(matches!(got, Err(ChatSessionError::Upstream(_))), "{got:?}");
    assert!(w.store.opens.lock().unwrap().is_empty());
    // The next request opens afresh.
    pool.claim(&w.model, SessionWorld::terms(), w.owner)
        .await
        .unwrap();
}

#[tokio::test]
async fn a_gone_session_is_retired_and_not_handed_out_again() {
    let w = SessionWorld::new(true).await;
    let pool = w.sessions.pool().clone();
    let mut lease = pool
        .claim(&w.model, SessionWorld::terms(), w.owner)
        .await
        .unwrap();
    let gone = lease.session().id.clone();
    lease.spoil();
    drop(lease);
    let next = pool
        .claim(&w.model, SessionWorld::terms(), w.owner)
        .await
        .unwrap();
    assert_ne!(next.session().id, gone);
    tokio::time::sleep(Duration::from_millis(20)).await;
    assert_eq!(w.store.record(&gone).unwrap().state, SessionState::Retired);
}

#[tokio::test]
async fn idle_sessions_are_let_go_for_other_replicas_and_closed_after_the_grace_but_one() {
    let w = SessionWorld::new(true).await;
    let settings = PoolSettings {
        idle_release: Duration::from_millis(10),
        idle_grace: Some(Duration::from_millis(10)),
        ..SessionWorld::pool_settings()
    };
    let a = pool_on(&w.store, &w.market, "a", settings.clone());
    let first = a
        .claim(&w.model, SessionWorld::terms(), w.owner)
        .await
        .unwrap();
    let second = a
        .claim(&w.model, SessionWorld::terms(), w.owner)
        .await
        .unwrap();
    let third = a
        .claim(&w.model, SessionWorld::terms(), w.owner)
        .await
        .unwrap();
    drop((first, second, third));
    tokio::time::sleep(Duration::from_millis(20)).await;
    // Two are let go, the warmest stays A's.
    a.let_go().await.unwrap();
    assert_eq!(a.snapshot()[0].idle, 1);
    // B takes one of them without opening.
    let b = pool_on(&w.store, &w.market, "b", settings);
    let on_b = b
        .claim(&w.model, SessionWorld::terms(), w.owner)
        .await
        .unwrap();
    assert_eq!(w.market.opens(), 3);
    // The other, nobody's for longer than the grace, is closed; the held ones are not.
    tokio::time::sleep(Duration::from_millis(20)).await;
    b.let_go().await.unwrap();
    assert_eq!(w.market.closes.lock().unwrap().len(), 1);
    assert_ne!(w.market.closes.lock().unwrap()[0], on_b.session().id);
}

fn handshake_failed() -> MarketplaceError {
    MarketplaceError::Rejected {
        status: 500,
        message: "failed to initiate session: provider request failed: code: 500, msg: <nil>, \
                  error: failed to connect to provider: connection refused"
            .to_owned(),
        retry_after: None,
    }
}

#[tokio::test]
async fn a_refusing_provider_is_skipped_for_the_next_bid_and_left_alone_while_it_cools_down() {
    let w = SessionWorld::new(true).await;
    let pool = w.sessions.pool().clone();
    FakeMarket::fail_next(&w.market.open_failures, handshake_failed());
    let first = pool
        .claim(&w.model, SessionWorld::terms(), w.owner)
        .await
        .unwrap();
    let second_bid = BidId::parse(&format!("0x{:064x}", 0xb1d1)).unwrap();
    assert_eq!(first.session().bid_id.as_ref(), Some(&second_bid));
    // The next open does not ask the refusing provider again.
    let second = pool
        .claim(&w.model, SessionWorld::terms(), w.owner)
        .await
        .unwrap();
    assert_eq!(second.session().bid_id.as_ref(), Some(&second_bid));
    assert_eq!(w.market.opens(), 2);
    assert_eq!(
        pool.counters()
            .bid_walk_steps
            .load(std::sync::atomic::Ordering::Relaxed),
        3
    );
}

#[tokio::test]
async fn when_every_provider_refuses_the_model_is_unavailable() {
    let w = SessionWorld::new(true).await;
    let pool = w.sessions.pool().clone();
    for _ in 0..2 {
        FakeMarket::fail_next(&w.market.open_failures, handshake_failed());
    }
    let got = pool.claim(&w.model, SessionWorld::terms(), w.owner).await;
    assert!(
        matches!(got, Err(ChatSessionError::ModelUnavailable)),
        "{got:?}"
    );
    // Both cool down: nothing is asked until they may have recovered.
    let got = pool.claim(&w.model, SessionWorld::terms(), w.owner).await;
    assert!(
        matches!(got, Err(ChatSessionError::ModelUnavailable)),
        "{got:?}"
    );
    assert_eq!(w.market.opens(), 0);
    assert!(
        w.store.opens.lock().unwrap().is_empty(),
        "reservations freed"
    );
}

#[tokio::test]
async fn a_session_whose_provider_is_gone_sends_new_sessions_to_another_provider() {
    let w = SessionWorld::new(true).await;
    let pool = w.sessions.pool().clone();
    let mut lease = pool
        .claim(&w.model, SessionWorld::terms(), w.owner)
        .await
        .unwrap();
    let first_bid = BidId::parse(&format!("0x{:064x}", 0xb1d0)).unwrap();
    assert_eq!(lease.session().bid_id.as_ref(), Some(&first_bid));
    pool.provider_failed(lease.session());
    lease.spoil();
    drop(lease);
    let next = pool
        .claim(&w.model, SessionWorld::terms(), w.owner)
        .await
        .unwrap();
    assert_ne!(next.session().bid_id.as_ref(), Some(&first_bid));
}
