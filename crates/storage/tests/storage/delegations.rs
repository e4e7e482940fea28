use chrono::Duration;
use morpheus_domain::ports::{DelegationRepository, InsertDelegationError};
use morpheus_domain::{Delegation, DelegationId, EthAddress, Page, SignedDelegation, User};

use crate::harness::{TestDb, each_backend, insert_user, now};

fn delegation(user: &User, active: bool, minutes_ago: i64) -> Delegation {
    Delegation {
        id: DelegationId::random(),
        user_id: user.id,
        delegate_address: EthAddress::parse("0x52908400098527886E0F7030069857D2E4169EE7").unwrap(),
        signed_delegation_data: SignedDelegation::parse(
            "signed-blob".into(),
            SignedDelegation::MAX_CHARS,
        )
        .unwrap(),
        expiry: Some(now() + Duration::days(30)),
        is_active: active,
        created_at: now() - Duration::minutes(minutes_ago),
    }
}

fn active_count(t: &TestDb, user: &User) -> i64 {
    t.count(&format!(
        "SELECT COUNT(*) AS n FROM delegations WHERE user_id = {} AND is_active",
        user.id
    ))
}

#[tokio::test]
async fn a_new_active_delegation_retires_the_previous_one() {
    each_backend(async |t| {
        let alice = insert_user(&t.db, "alice@example.com").await;
        let bob = insert_user(&t.db, "bob@example.com").await;
        let bobs =
            t.db.insert_delegation(delegation(&bob, true, 10), u64::MAX)
                .await
                .unwrap();

        let first =
            t.db.insert_delegation(delegation(&alice, true, 3), u64::MAX)
                .await
                .unwrap();
        assert!(first.is_active);
        let second =
            t.db.insert_delegation(delegation(&alice, true, 2), u64::MAX)
                .await
                .unwrap();
        // An inactive one leaves the active one alone.
        t.db.insert_delegation(delegation(&alice, false, 1), u64::MAX)
            .await
            .unwrap();

        let active =
            t.db.find_active_delegation(alice.id)
                .await
                .unwrap()
                .unwrap();
        assert_eq!(active.id, second.id);
        assert_eq!(active_count(t, &alice), 1);
        // Other users are not affected.
        let bobs_active = t.db.find_active_delegation(bob.id).await.unwrap().unwrap();
        assert_eq!(bobs_active.id, bobs.id);
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_activations_leave_one_active_delegation() {
    each_backend(async |t| {
        let alice = insert_user(&t.db, "alice@example.com").await;
        let tasks: Vec<_> = (0..8)
            .map(|i| {
                let db = t.db.clone();
                let new = delegation(&alice, true, i);
                tokio::spawn(async move { db.insert_delegation(new, u64::MAX).await })
            })
            .collect();
        for task in tasks {
            task.await.unwrap().unwrap();
        }
        assert_eq!(active_count(t, &alice), 1);
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_insertions_never_pass_the_per_user_limit() {
    each_backend(async |t| {
        let alice = insert_user(&t.db, "alice@example.com").await;
        let bob = insert_user(&t.db, "bob@example.com").await;
        t.db.insert_delegation(delegation(&bob, false, 0), 3)
            .await
            .unwrap();
        let tasks: Vec<_> = (0..8)
            .map(|i| {
                let db = t.db.clone();
                let new = delegation(&alice, i % 2 == 0, i);
                tokio::spawn(async move { db.insert_delegation(new, 3).await })
            })
            .collect();
        let mut refused = 0;
        for task in tasks {
            match task.await.unwrap() {
                Ok(_) => {}
                Err(InsertDelegationError::LimitReached) => refused += 1,
                Err(e) => panic!("{e}"),
            }
        }
        assert_eq!(refused, 5);
        let page = Page {
            skip: 0,
            limit: 100,
        };
        assert_eq!(
            t.db.list_delegations(alice.id, page).await.unwrap().len(),
            3
        );
        // Bob's one counts for Bob only.
        assert_eq!(t.db.list_delegations(bob.id, page).await.unwrap().len(), 1);
    })
    .await;
}

#[tokio::test]
async fn delegations_are_listed_newest_first_in_pages() {
    each_backend(async |t| {
        let alice = insert_user(&t.db, "alice@example.com").await;
        let mut ids = Vec::new();
        for minutes_ago in [5, 4, 3, 2, 1] {
            let stored =
                t.db.insert_delegation(delegation(&alice, false, minutes_ago), u64::MAX)
                    .await
                    .unwrap();
            ids.push(stored.id);
        }
        ids.reverse();

        let page = |skip, limit| t.db.list_delegations(alice.id, Page { skip, limit });
        let listed: Vec<_> = page(0, 10).await.unwrap().iter().map(|d| d.id).collect();
        assert_eq!(listed, ids);
        let second: Vec<_> = page(2, 2).await.unwrap().iter().map(|d| d.id).collect();
        assert_eq!(second, ids[2..4]);
        assert!(page(5, 10).await.unwrap().is_empty());
    })
    .await;
}

#[tokio::test]
async fn a_stored_delegation_round_trips() {
    each_backend(async |t| {
        let alice = insert_user(&t.db, "alice@example.com").await;
        let new = delegation(&alice, true, 0);
        let stored = t.db.insert_delegation(new.clone(), u64::MAX).await.unwrap();
        assert_eq!(stored.id, new.id);
        assert_eq!(stored.delegate_address, new.delegate_address);
        assert_eq!(stored.signed_delegation_data, new.signed_delegation_data);
        assert_eq!(stored.expiry, new.expiry);
        assert_eq!(stored.created_at, new.created_at);

        let mut clash = delegation(&alice, false, 0);
        clash.id = new.id;
        assert!(matches!(
            t.db.insert_delegation(clash, u64::MAX).await,
            Err(InsertDelegationError::IdTaken)
        ));
        // The failed insert rolled back: the first delegation is still the active one.
        let active =
            t.db.find_active_delegation(alice.id)
                .await
                .unwrap()
                .unwrap();
        assert_eq!(active.id, new.id);
    })
    .await;
}

#[tokio::test]
async fn only_the_owner_can_delete_a_delegation() {
    each_backend(async |t| {
        let alice = insert_user(&t.db, "alice@example.com").await;
        let mallory = insert_user(&t.db, "mallory@example.com").await;
        let stored =
            t.db.insert_delegation(delegation(&alice, true, 0), u64::MAX)
                .await
                .unwrap();

        assert!(!t.db.delete_delegation(mallory.id, stored.id).await.unwrap());
        assert!(t.db.delete_delegation(alice.id, stored.id).await.unwrap());
        assert!(!t.db.delete_delegation(alice.id, stored.id).await.unwrap());
        assert!(
            t.db.find_active_delegation(alice.id)
                .await
                .unwrap()
                .is_none()
        );
    })
    .await;
}
