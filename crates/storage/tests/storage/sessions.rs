use chrono::{DateTime, Duration, Utc};
use morpheus_domain::ports::{
    ApiKeyRepository, InsertSessionError, SessionRepository, UsageRepository, UserRepository,
};
use morpheus_domain::*;

use crate::harness::{TestDb, each_backend, insert_user, now};

fn hash32(n: u64) -> String {
    format!("0x{n:064x}")
}

fn session_id(n: u64) -> SessionId {
    SessionId::parse(&hash32(n)).unwrap()
}

fn model(n: u64) -> ModelId {
    // Not the same values as the session ids, so a mix-up shows.
    ModelId::parse(&hash32(0xabc0_0000 + n)).unwrap()
}

async fn new_key(t: &TestDb, user: &User, prefix: &str) -> ApiKey {
    t.db.insert_api_key(
        NewApiKey {
            id: ApiKeyId::random(),
            user_id: user.id,
            prefix: KeyPrefix::from_trusted(prefix.into()),
            digest: ApiKeyDigest(prefix.as_bytes().to_vec()),
            name: None,
            created_at: now(),
            policy: morpheus_domain::KeyPolicy::default(),
        },
        morpheus_domain::ports::ApiKeyLimits::NONE,
    )
    .await
    .unwrap()
}

/// An active automated session of `key` for `model(model_n)`, ending in an hour.
fn session(key: &ApiKey, id: u64, model_n: u64) -> SessionRecord {
    SessionRecord {
        id: session_id(id),
        api_key_id: key.id,
        user_id: key.user_id,
        model_id: model(model_n),
        bid_id: None,
        origin: SessionOrigin::Automated,
        state: SessionState::Active,
        opened_at: now(),
        ends_at: now() + Duration::hours(1),
        closed_at: None,
        pooled: false,
    }
}

fn ids(sessions: &[SessionRecord]) -> Vec<SessionId> {
    sessions.iter().map(|s| s.id.clone()).collect()
}

fn count_sessions(t: &TestDb, filter: &str) -> i64 {
    t.count(&format!(
        "SELECT COUNT(*) AS n FROM sessions WHERE {filter}"
    ))
}

#[tokio::test]
async fn a_session_round_trips_and_is_found_only_with_its_key() {
    each_backend(async |t| {
        let alice = insert_user(&t.db, "alice@example.com").await;
        let key = new_key(t, &alice, "sk-aaaaaa").await;
        let other_key = new_key(t, &alice, "sk-bbbbbb").await;

        let mut older = session(&key, 1, 1);
        older.origin = SessionOrigin::Bid;
        older.bid_id = Some(BidId::parse(&hash32(0xb1d)).unwrap());
        older.opened_at = now() - Duration::minutes(5);
        let newer = session(&key, 2, 2);
        t.db.insert_session(older.clone()).await.unwrap();
        t.db.insert_session(newer.clone()).await.unwrap();

        let found = t.db.find_key_session(key.id, &older.id).await.unwrap();
        assert_eq!(found, Some(older.clone()));
        // Another key's session looks like a missing one.
        assert_eq!(
            t.db.find_key_session(other_key.id, &older.id)
                .await
                .unwrap(),
            None
        );
        assert_eq!(
            t.db.find_key_session(key.id, &session_id(99))
                .await
                .unwrap(),
            None
        );

        let active = t.db.find_active_session(key.id, &model(2)).await.unwrap();
        assert_eq!(active, Some(newer.clone()));
        assert_eq!(
            t.db.find_active_session(other_key.id, &model(2))
                .await
                .unwrap(),
            None
        );
        assert_eq!(
            t.db.find_active_session(key.id, &model(3)).await.unwrap(),
            None
        );

        let listed = t.db.list_active_sessions(key.id).await.unwrap();
        assert_eq!(listed, [newer.clone(), older.clone()]);
        assert!(
            t.db.list_active_sessions(other_key.id)
                .await
                .unwrap()
                .is_empty()
        );

        // A retired session is still the key's, but no longer its active one.
        assert!(t.db.retire_session(&newer.id).await.unwrap());
        let retired = t.db.find_key_session(key.id, &newer.id).await.unwrap();
        assert_eq!(retired.map(|s| s.state), Some(SessionState::Retired));
        assert_eq!(
            t.db.find_active_session(key.id, &model(2)).await.unwrap(),
            None
        );
        assert_eq!(
            ids(&t.db.list_active_sessions(key.id).await.unwrap()),
            [older.id.clone()]
        );
    })
    .await;
}

#[tokio::test]
async fn a_key_has_at_most_one_active_session_per_model() {
    each_backend(async |t| {
        let alice = insert_user(&t.db, "alice@example.com").await;
        let key = new_key(t, &alice, "sk-aaaaaa").await;
        let other_key = new_key(t, &alice, "sk-bbbbbb").await;
        let first = session(&key, 1, 1);
        t.db.insert_session(first.clone()).await.unwrap();

        assert!(matches!(
            t.db.insert_session(session(&key, 2, 1)).await,
            Err(InsertSessionError::ActiveExists)
        ));
        // The refused session left nothing behind.
        assert_eq!(
            t.db.find_key_session(key.id, &session_id(2)).await.unwrap(),
            None
        );
        // Another model, or another key for the same model, is fine.
        t.db.insert_session(session(&key, 3, 2)).await.unwrap();
        t.db.insert_session(session(&other_key, 4, 1))
            .await
            .unwrap();
        // So are sessions that are not active.
        for (id, state) in [(5, SessionState::Retired), (6, SessionState::Closed)] {
            let mut inactive = session(&key, id, 1);
            inactive.state = state;
            t.db.insert_session(inactive).await.unwrap();
        }

        assert!(t.db.retire_session(&first.id).await.unwrap());
        assert!(!t.db.retire_session(&first.id).await.unwrap());
        assert!(!t.db.retire_session(&session_id(99)).await.unwrap());
        t.db.insert_session(session(&key, 7, 1)).await.unwrap();
        let active = t.db.find_active_session(key.id, &model(1)).await.unwrap();
        assert_eq!(active.map(|s| s.id), Some(session_id(7)));
        assert_eq!(
            count_sessions(t, &format!("api_key_id = {} AND state = 'active'", key.id)),
            2
        );
    })
    .await;
}

#[tokio::test]
async fn a_recorded_session_id_is_a_duplicate() {
    each_backend(async |t| {
        let alice = insert_user(&t.db, "alice@example.com").await;
        let key = new_key(t, &alice, "sk-aaaaaa").await;
        let other_key = new_key(t, &alice, "sk-bbbbbb").await;
        let first = session(&key, 1, 1);
        t.db.insert_session(first.clone()).await.unwrap();

        let mut retired_copy = first.clone();
        retired_copy.state = SessionState::Retired;
        let mut other_model = session(&key, 1, 2);
        other_model.origin = SessionOrigin::Model;
        // The same record again clashes on both unique keys: still a duplicate.
        for clash in [
            first.clone(),
            retired_copy,
            other_model,
            session(&other_key, 1, 1),
        ] {
            assert!(
                matches!(
                    t.db.insert_session(clash.clone()).await,
                    Err(InsertSessionError::Duplicate)
                ),
                "{clash:?}"
            );
        }
        assert_eq!(
            t.db.find_key_session(key.id, &first.id).await.unwrap(),
            Some(first)
        );
        assert_eq!(count_sessions(t, "1 = 1"), 1);
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_inserts_for_one_key_and_model_store_exactly_one() {
    each_backend(async |t| {
        let alice = insert_user(&t.db, "alice@example.com").await;
        let key = new_key(t, &alice, "sk-aaaaaa").await;
        let tasks: Vec<_> = (0..10)
            .map(|n| {
                let db = t.db.clone();
                let new = session(&key, 100 + n, 1);
                tokio::spawn(async move { db.insert_session(new).await })
            })
            .collect();
        let mut stored = 0;
        for task in tasks {
            match task.await.unwrap() {
                Ok(()) => stored += 1,
                Err(InsertSessionError::ActiveExists) => {}
                Err(other) => panic!("unexpected {other:?}"),
            }
        }
        assert_eq!(stored, 1);
        assert_eq!(count_sessions(t, "1 = 1"), 1);
        assert!(
            t.db.find_active_session(key.id, &model(1))
                .await
                .unwrap()
                .is_some()
        );
    })
    .await;
}

#[tokio::test]
async fn sessions_due_for_close_come_oldest_end_first_within_the_limit() {
    each_backend(async |t| {
        let alice = insert_user(&t.db, "alice@example.com").await;
        let key = new_key(t, &alice, "sk-aaaaaa").await;
        let at = now();
        let with = |id: u64, model_n: u64, state: SessionState, ends_at: DateTime<Utc>| {
            let mut s = session(&key, id, model_n);
            s.state = state;
            s.ends_at = ends_at;
            s
        };
        for s in [
            with(1, 1, SessionState::Active, at - Duration::minutes(10)),
            with(2, 2, SessionState::Retired, at - Duration::minutes(30)),
            with(3, 3, SessionState::Closed, at - Duration::minutes(40)),
            with(4, 4, SessionState::Active, at + Duration::minutes(10)),
            // Exactly at its end is due.
            with(5, 5, SessionState::Active, at),
            with(6, 6, SessionState::Retired, at - Duration::minutes(20)),
        ] {
            t.db.insert_session(s).await.unwrap();
        }

        let due = t.db.sessions_due_for_close(at, 10).await.unwrap();
        assert_eq!(ids(&due), [2, 6, 1, 5].map(session_id));
        let due = t.db.sessions_due_for_close(at, 2).await.unwrap();
        assert_eq!(ids(&due), [2, 6].map(session_id));

        let closed_at = at + Duration::seconds(1);
        t.db.mark_session_closed(&session_id(2), closed_at)
            .await
            .unwrap();
        // Closing again (the reconciliation finding it closed) keeps the first time.
        t.db.mark_session_closed(&session_id(2), closed_at + Duration::minutes(1))
            .await
            .unwrap();
        let closed = t.db.find_key_session(key.id, &session_id(2)).await.unwrap();
        let closed = closed.unwrap();
        assert_eq!(closed.state, SessionState::Closed);
        assert_eq!(closed.closed_at, Some(closed_at));
        // An active one closes directly too.
        t.db.mark_session_closed(&session_id(5), closed_at)
            .await
            .unwrap();
        let due = t.db.sessions_due_for_close(at, 10).await.unwrap();
        assert_eq!(ids(&due), [6, 1].map(session_id));

        // A corrected end moves a session in or out of the sweep.
        t.db.update_session_end(&session_id(4), at - Duration::minutes(50))
            .await
            .unwrap();
        t.db.update_session_end(&session_id(1), at + Duration::hours(2))
            .await
            .unwrap();
        let due = t.db.sessions_due_for_close(at, 10).await.unwrap();
        assert_eq!(ids(&due), [4, 6].map(session_id));
        let moved = t.db.find_key_session(key.id, &session_id(1)).await.unwrap();
        assert_eq!(moved.unwrap().ends_at, at + Duration::hours(2));
    })
    .await;
}

#[tokio::test]
async fn open_sessions_are_listed_in_id_order_page_by_page() {
    each_backend(async |t| {
        let alice = insert_user(&t.db, "alice@example.com").await;
        let key = new_key(t, &alice, "sk-aaaaaa").await;
        // Inserted out of order; ids with letters check the order is the string's.
        let numbers = [0xf0, 0x3, 0xa1, 0x10, 0x7, 0xee, 0x2b, 0x99];
        for (n, id) in (0..).zip(numbers) {
            let mut s = session(&key, id, n);
            if id == 0x10 || id == 0xee {
                s.state = SessionState::Closed;
            } else if id == 0x7 {
                s.state = SessionState::Retired;
            }
            t.db.insert_session(s).await.unwrap();
        }
        let expected = [0x3, 0x7, 0x2b, 0x99, 0xa1, 0xf0].map(session_id);

        let mut listed = Vec::new();
        let mut after: Option<SessionId> = None;
        loop {
            let page = t.db.list_open_sessions(after.as_ref(), 4).await.unwrap();
            assert!(page.len() <= 4);
            let Some(last) = page.last() else { break };
            after = Some(last.id.clone());
            listed.extend(ids(&page));
        }
        assert_eq!(listed, expected);

        let page = t.db.list_open_sessions(None, 2).await.unwrap();
        assert_eq!(ids(&page), expected[..2]);
        // `after` need not be a listed (or existing) session.
        let page =
            t.db.list_open_sessions(Some(&session_id(0x10)), 2)
                .await
                .unwrap();
        assert_eq!(ids(&page), expected[2..4]);
        let page =
            t.db.list_open_sessions(Some(&session_id(0xf0)), 2)
                .await
                .unwrap();
        assert!(page.is_empty());
    })
    .await;
}

#[tokio::test]
async fn sessions_outlive_their_key_and_account_until_closed() {
    each_backend(async |t| {
        let alice = insert_user(&t.db, "alice@example.com").await;
        let bob = insert_user(&t.db, "bob@example.com").await;
        let alices_key = new_key(t, &alice, "sk-aaaaaa").await;
        let alices_other_key = new_key(t, &alice, "sk-bbbbbb").await;
        let bobs_key = new_key(t, &bob, "sk-cccccc").await;
        t.db.insert_session(session(&alices_key, 1, 1))
            .await
            .unwrap();
        t.db.insert_session(session(&alices_other_key, 2, 1))
            .await
            .unwrap();
        t.db.insert_session(session(&bobs_key, 3, 1)).await.unwrap();
        let usage = |user: &User, key: &ApiKey| UsageRecord {
            user_id: user.id,
            api_key_id: key.id,
            model_id: Some(model(1)),
            session_id: None,
            upstream: None,
            usage: None,
            usage_source: None,
            outcome: UsageOutcome::Completed,
            status: 200,
            stream: false,
            latency_ms: 10,
            created_at: now(),
        };
        t.db.insert_usage(vec![
            usage(&alice, &alices_key),
            usage(&alice, &alices_other_key),
            usage(&bob, &bobs_key),
        ])
        .await
        .unwrap();

        // A session outlives its key: it is paid for on chain and must still be closed.
        t.execute(&format!(
            "DELETE FROM api_keys WHERE id = {}",
            alices_other_key.id
        ));
        assert!(
            t.db.find_key_session(alices_other_key.id, &session_id(2))
                .await
                .unwrap()
                .is_some()
        );
        // Usage records outlive keys.
        assert_eq!(t.db.list_usage(alice.id, 10).await.unwrap().len(), 2);

        t.db.delete_user(alice.id).await.unwrap().unwrap();
        // The account's sessions join the shared pool, not deleted: the sweep closes them at
        // their end. They stay under the account's pseudonym, as its usage records do.
        assert_eq!(
            count_sessions(t, "user_id < 0 AND state = 'active' AND pooled"),
            2
        );
        assert_eq!(count_sessions(t, &format!("user_id = {}", alice.id)), 0);
        assert!(t.db.list_usage(alice.id, 10).await.unwrap().is_empty());
        assert_eq!(
            ids(&t.db.list_active_sessions(bobs_key.id).await.unwrap()),
            [session_id(3)]
        );
        assert_eq!(t.db.list_usage(bob.id, 10).await.unwrap().len(), 1);
    })
    .await;
}

#[tokio::test]
async fn operators_find_and_list_sessions_across_keys() {
    each_backend(async |t| {
        let alice = insert_user(&t.db, "alice@example.com").await;
        let bob = insert_user(&t.db, "bob@example.com").await;
        let (a_key, b_key) = (
            new_key(t, &alice, "sk-alice1").await,
            new_key(t, &bob, "sk-bob111").await,
        );
        let mut older = session(&a_key, 1, 1);
        older.opened_at -= Duration::minutes(5);
        t.db.insert_session(older.clone()).await.unwrap();
        t.db.insert_session(session(&a_key, 2, 2)).await.unwrap();
        t.db.insert_session(session(&b_key, 3, 1)).await.unwrap();
        t.db.mark_session_closed(&session_id(1), now())
            .await
            .unwrap();

        let found = t.db.find_session(&session_id(3)).await.unwrap().unwrap();
        assert_eq!(found.user_id, bob.id);
        assert!(t.db.find_session(&session_id(9)).await.unwrap().is_none());

        let open = t.db.list_sessions(None, false, 10).await.unwrap();
        assert_eq!(open.len(), 2);
        let alices = t.db.list_sessions(Some(alice.id), true, 10).await.unwrap();
        assert_eq!(
            ids(&alices),
            [session_id(2), session_id(1)],
            "newest first, closed too"
        );
        let alices_open = t.db.list_sessions(Some(alice.id), false, 10).await.unwrap();
        assert_eq!(ids(&alices_open), [session_id(2)]);
        assert_eq!(t.db.list_sessions(None, true, 1).await.unwrap().len(), 1);
    })
    .await;
}
