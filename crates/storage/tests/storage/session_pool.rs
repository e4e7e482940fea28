//! The shared pool's decisions on both backends: the cap counts sessions and opens in
//! progress together, a session is leased to one replica at a time, and many replicas asking
//! at once never get past the cap nor share a session.

use std::collections::HashSet;

use chrono::Duration;
use morpheus_domain::ports::{PoolTake, PoolTakeRequest, SessionPoolRepository, SessionRepository};
use morpheus_domain::*;

use crate::harness::{each_backend, now};

fn model() -> ModelId {
    ModelId::parse(&format!("0x{:064x}", 0xabc)).unwrap()
}

fn ask(replica: &str, cap: u32) -> PoolTakeRequest {
    let at = now();
    PoolTakeRequest {
        model: model(),
        replica: replica.to_owned(),
        cap,
        now: at,
        usable_after: at + Duration::seconds(30),
        lease_until: at + Duration::seconds(60),
        opens_stale_before: at - Duration::minutes(10),
    }
}

fn opened(n: u64) -> SessionRecord {
    SessionRecord {
        id: SessionId::parse(&format!("0x{n:064x}")).unwrap(),
        api_key_id: ApiKeyId(1),
        user_id: UserId(1),
        model_id: model(),
        bid_id: None,
        origin: SessionOrigin::Automated,
        state: SessionState::Active,
        opened_at: now(),
        ends_at: now() + Duration::hours(1),
        closed_at: None,
        pooled: true,
    }
}

#[tokio::test]
async fn the_cap_counts_opens_in_progress_and_a_lease_is_one_replicas() {
    each_backend(async |t| {
        let PoolTake::Reserved(first) = t.db.take_or_reserve(ask("a", 2)).await.unwrap() else {
            panic!("room for a first open");
        };
        let PoolTake::Reserved(second) = t.db.take_or_reserve(ask("b", 2)).await.unwrap() else {
            panic!("room for a second open");
        };
        assert_eq!(
            t.db.take_or_reserve(ask("b", 2)).await.unwrap(),
            PoolTake::Full
        );
        // A failed open gives its place back.
        t.db.finish_open(second, None, "b", now()).await.unwrap();
        let PoolTake::Reserved(second) = t.db.take_or_reserve(ask("b", 2)).await.unwrap() else {
            panic!("the failed open's place");
        };
        // Both opens succeed: the sessions are leased to their replicas.
        t.db.finish_open(first, Some(opened(1)), "a", now() + Duration::seconds(60))
            .await
            .unwrap();
        t.db.finish_open(second, Some(opened(2)), "b", now() + Duration::seconds(60))
            .await
            .unwrap();
        assert_eq!(
            t.db.take_or_reserve(ask("c", 2)).await.unwrap(),
            PoolTake::Full
        );
        assert_eq!(
            t.db.renew_leases("a", now() + Duration::seconds(60))
                .await
                .unwrap(),
            [opened(1).id]
        );
        // Let go, A's session is C's; B's stays B's.
        t.db.release_leases("a", vec![opened(1).id], now())
            .await
            .unwrap();
        let PoolTake::Leased(taken) = t.db.take_or_reserve(ask("c", 2)).await.unwrap() else {
            panic!("the session A let go");
        };
        assert_eq!(taken.id, opened(1).id);
        assert!(t.db.renew_leases("a", now()).await.unwrap().is_empty());
        let census = t.db.pool_census(now()).await.unwrap();
        assert_eq!(
            (census[0].active, census[0].leased, census[0].opening),
            (2, 2, 0)
        );
        // A closed session is nobody's to renew.
        t.db.mark_session_closed(&opened(2).id, now())
            .await
            .unwrap();
        assert!(t.db.renew_leases("b", now()).await.unwrap().is_empty());
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn replicas_asking_at_once_stay_within_the_cap_and_never_share_a_session() {
    each_backend(async |t| {
        const CAP: u32 = 3;
        // Two sessions no replica holds, then sixteen replicas asking at once.
        for n in [1, 2] {
            t.db.insert_session(opened(n)).await.unwrap();
        }
        let asks = (0..16).map(|r| {
            let db = t.db.clone();
            tokio::spawn(async move { db.take_or_reserve(ask(&format!("r{r}"), CAP)).await })
        });
        let mut leased = Vec::new();
        let mut reserved = 0;
        for ask in asks {
            match ask.await.unwrap().unwrap() {
                PoolTake::Leased(session) => leased.push(session.id),
                PoolTake::Reserved(_) => reserved += 1,
                PoolTake::Full => {}
            }
        }
        let distinct: HashSet<_> = leased.iter().collect();
        assert_eq!(distinct.len(), leased.len(), "a session leased twice");
        assert_eq!(leased.len(), 2);
        assert_eq!(reserved, CAP as usize - 2);
    })
    .await;
}

#[tokio::test]
async fn sessions_nobody_held_for_the_grace_are_taken_for_closing_but_each_models_last() {
    each_backend(async |t| {
        for n in [1, 2, 3] {
            t.db.insert_session(opened(n)).await.unwrap();
        }
        // One is leased, then let go just now: within the grace.
        let PoolTake::Leased(recent) = t.db.take_or_reserve(ask("a", 9)).await.unwrap() else {
            panic!("an unleased session to lease");
        };
        t.db.release_leases("a", vec![recent.id.clone()], now())
            .await
            .unwrap();
        let until = now() + Duration::seconds(60);
        let taken =
            t.db.take_idle_for_closing("b", now(), now() - Duration::minutes(1), until)
                .await
                .unwrap();
        assert_eq!(taken.len(), 2);
        assert!(taken.iter().all(|s| s.id != recent.id));
        // Taken means leased to B, which closes them; the last one stays, however long idle.
        for session in &taken {
            t.db.mark_session_closed(&session.id, now()).await.unwrap();
        }
        assert!(
            t.db.take_idle_for_closing("c", now(), now() + Duration::minutes(1), until)
                .await
                .unwrap()
                .is_empty(),
            "the model's last session is kept"
        );
    })
    .await;
}
