//! The session service on fake ports: single-flight opens, automation, ends, bids, and the
//! chain check behind `session not found`.

use std::sync::Arc;

use chrono::Utc;

use super::*;
use crate::testing::{FakeMarket, SessionWorld};

#[tokio::test]
async fn concurrent_explicit_opens_of_one_key_open_one_session_which_its_chats_use() {
    let w = Arc::new(SessionWorld::new(true).await);
    let name = w.resolved().name;
    let calls = (0..16).map(|_| {
        let (w, name) = (w.clone(), name.clone());
        tokio::spawn(async move {
            w.sessions
                .open_for_model(w.owner, &name, SessionWorld::terms(), &KeyPolicy::default())
                .await
        })
    });
    let mut ids = Vec::new();
    for call in calls {
        ids.push(call.await.unwrap().unwrap().session.id);
    }
    assert_eq!(w.market.opens(), 1);
    assert!(ids.windows(2).all(|p| p[0] == p[1]));
    let chat = w
        .sessions
        .session_for_chat(w.owner, &w.resolved())
        .await
        .unwrap();
    assert_eq!(chat.session().id, ids[0]);
    assert!(!chat.session().pooled);
    assert_eq!(w.market.opens(), 1);
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
async fn a_pooled_session_near_its_end_is_not_taken_and_another_is_opened() {
    let w = SessionWorld::new(true).await;
    let near = SessionRecord {
        id: SessionId::parse(&format!("0x{:064x}", 99)).unwrap(),
        api_key_id: w.owner.key,
        user_id: w.owner.user,
        model_id: w.model.clone(),
        bid_id: None,
        origin: SessionOrigin::Automated,
        state: SessionState::Active,
        opened_at: Utc::now(),
        // Closer than the margin a request needs.
        ends_at: Utc::now() + chrono::Duration::seconds(5),
        closed_at: None,
        pooled: true,
    };
    w.store.insert_session(near.clone()).await.unwrap();
    let got = w
        .sessions
        .session_for_chat(w.owner, &w.resolved())
        .await
        .unwrap();
    assert_ne!(got.session().id, near.id);
    assert_eq!(w.market.opens(), 1);
}

#[tokio::test]
async fn a_bid_session_that_replaces_the_keys_own_joins_the_pool() {
    let w = SessionWorld::new(true).await;
    let first = w
        .sessions
        .open_for_model(
            w.owner,
            &w.resolved().name,
            SessionWorld::terms(),
            &KeyPolicy::default(),
        )
        .await
        .unwrap()
        .session;
    let bid = BidId::parse(&format!("0x{:064x}", 1)).unwrap();
    w.market.add_bid(&bid, &w.model);
    let second = w
        .sessions
        .open_for_bid(w.owner, &bid, SessionWorld::terms(), &KeyPolicy::default())
        .await
        .unwrap()
        .session;
    assert_ne!(first.id, second.id);
    let first = w.store.record(&first.id).unwrap();
    assert!(
        first.pooled && first.state == SessionState::Active,
        "{first:?}"
    );
    // The pool serves from it instead of opening another.
    let other = crate::services::SessionOwner {
        key: ApiKeyId::random(),
        user: w.owner.user,
    };
    let lease = w
        .sessions
        .session_for_chat(other, &w.resolved())
        .await
        .unwrap();
    assert_eq!(lease.session().id, first.id);
    assert_eq!(w.market.opens(), 2);
}

#[tokio::test]
async fn a_failed_open_stores_nothing() {
    let w = SessionWorld::new(true).await;
    // Not the provider's doing (another bid would fail the same way): no bid walk.
    FakeMarket::fail_next(
        &w.market.open_failures,
        MarketplaceError::Rejected {
            status: 500,
            message: "failed to send transaction: insufficient allowance".to_owned(),
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
    let terms = SessionWorld::terms();
    let got = w
        .sessions
        .open_for_bid(w.owner, &bid, terms, &KeyPolicy::default())
        .await;
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
    let session = session.session().clone();
    assert_eq!(w.sessions.still_open_on_chain(&session).await, Some(true));
    FakeMarket::fail_next(
        &w.market.read_failures,
        MarketplaceError::Timeout(TimeoutPhase::Total),
    );
    assert_eq!(w.sessions.still_open_on_chain(&session).await, None);
    w.market.close_on_chain(&session.id);
    assert_eq!(w.sessions.still_open_on_chain(&session).await, Some(false));
}

#[tokio::test]
async fn a_keys_own_session_serves_one_request_at_a_time() {
    let w = SessionWorld::new(true).await;
    w.sessions
        .open_for_model(
            w.owner,
            &w.resolved().name,
            SessionWorld::terms(),
            &KeyPolicy::default(),
        )
        .await
        .unwrap();
    let first = w
        .sessions
        .session_for_chat(w.owner, &w.resolved())
        .await
        .unwrap();
    // The second waits for the first, up to the queue's deadline.
    let second = w.sessions.session_for_chat(w.owner, &w.resolved()).await;
    assert!(
        matches!(second, Err(ChatSessionError::PoolBusy(_))),
        "{second:?}"
    );
    let waiting = {
        let (sessions, owner, model) = (w.sessions.clone(), w.owner, w.resolved());
        tokio::spawn(async move { sessions.session_for_chat(owner, &model).await })
    };
    tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    let id = first.session().id.clone();
    drop(first);
    assert_eq!(waiting.await.unwrap().unwrap().session().id, id);
    assert_eq!(w.market.opens(), 1);
}
