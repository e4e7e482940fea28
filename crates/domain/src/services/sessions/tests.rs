//! The session service on fake ports: single-flight opens, automation, ends, bids, and the
//! chain check behind `session not found`.

use std::sync::Arc;

use chrono::Utc;

use super::*;
use crate::testing::{FakeMarket, SessionWorld};

#[tokio::test]
async fn concurrent_chats_of_one_key_open_one_session() {
    let w = Arc::new(SessionWorld::new(true).await);
    let calls = (0..16).map(|_| {
        let w = w.clone();
        tokio::spawn(async move { w.sessions.session_for_chat(w.owner, &w.resolved()).await })
    });
    let mut ids = Vec::new();
    for call in calls {
        ids.push(call.await.unwrap().unwrap().id);
    }
    assert_eq!(w.market.opens(), 1);
    assert!(ids.windows(2).all(|p| p[0] == p[1]));
    assert_eq!(w.sessions.count_active().await.unwrap(), 1);
}

#[tokio::test]
async fn without_automation_no_session_is_opened() {
    let w = SessionWorld::new(false).await;
    let got = w.sessions.session_for_chat(w.owner, &w.resolved()).await;
    assert!(
        matches!(got, Err(ChatSessionError::AutomationDisabled)),
        "{got:?}"
    );
    assert_eq!(w.market.opens(), 0);
}

#[tokio::test]
async fn a_session_near_its_end_is_retired_and_replaced() {
    let w = SessionWorld::new(true).await;
    let first = w
        .sessions
        .session_for_chat(w.owner, &w.resolved())
        .await
        .unwrap();
    // The chain's end comes closer than the margin a request needs.
    w.store
        .update_session_end(&first.id, Utc::now() + chrono::Duration::seconds(5))
        .await
        .unwrap();
    let fresh = SessionService::new(
        w.store.clone(),
        w.market.clone(),
        AutomationService::new(w.store.clone()),
        w.sessions.catalogue().clone(),
        None,
    );
    let second = fresh
        .session_for_chat(w.owner, &w.resolved())
        .await
        .unwrap();
    assert_ne!(second.id, first.id);
    assert_eq!(
        w.store.record(&first.id).unwrap().state,
        SessionState::Retired
    );
    assert_eq!(w.market.opens(), 2);
}

#[tokio::test]
async fn a_failed_open_stores_nothing() {
    let w = SessionWorld::new(true).await;
    FakeMarket::fail_next(
        &w.market.open_failures,
        MarketplaceError::Rejected {
            status: 500,
            message: "no provider accepting session".to_owned(),
            retry_after: None,
        },
    );
    let got = w.sessions.session_for_chat(w.owner, &w.resolved()).await;
    assert!(matches!(got, Err(ChatSessionError::Upstream(_))), "{got:?}");
    assert_eq!(w.sessions.count_active().await.unwrap(), 0);
}

#[tokio::test]
async fn an_unknown_bid_is_not_found_before_anything_is_opened() {
    let w = SessionWorld::new(true).await;
    let bid = BidId::parse(&format!("0x{:064x}", 7)).unwrap();
    let terms = SessionTerms {
        duration: SessionDuration::DEFAULT,
        direct_payment: false,
        failover: false,
    };
    let got = w.sessions.open_for_bid(w.owner, &bid, terms).await;
    assert!(matches!(got, Err(OpenSessionError::BidNotFound)), "{got:?}");
    assert_eq!(w.market.opens(), 0);
}

#[tokio::test]
async fn the_chain_says_whether_a_session_not_found_is_gone() {
    let w = SessionWorld::new(true).await;
    let session = w
        .sessions
        .session_for_chat(w.owner, &w.resolved())
        .await
        .unwrap();
    assert_eq!(w.sessions.still_open_on_chain(&session).await, Some(true));
    FakeMarket::fail_next(
        &w.market.read_failures,
        MarketplaceError::Timeout(TimeoutPhase::Total),
    );
    assert_eq!(w.sessions.still_open_on_chain(&session).await, None);
    w.market.close_on_chain(&session.id);
    assert_eq!(w.sessions.still_open_on_chain(&session).await, Some(false));
}
