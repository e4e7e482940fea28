use chrono::Duration;
use morpheus_domain::ports::{ApiKeyLimits, ApiKeyRepository, InsertApiKeyError};
use morpheus_domain::{ApiKeyDigest, ApiKeyId, KeyPrefix, LimitMultiplier, NewApiKey, Page, User};

use crate::harness::{TestDb, each_backend, insert_user, now};

fn active_keys(t: &TestDb, user: &User) -> i64 {
    t.count(&format!(
        "SELECT COUNT(*) AS n FROM api_keys WHERE user_id = {} AND is_active = true",
        user.id.0
    ))
}

fn new_key(user: &User, prefix: &str, digest: u8) -> NewApiKey {
    NewApiKey {
        id: ApiKeyId::random(),
        user_id: user.id,
        prefix: KeyPrefix::from_trusted(prefix.into()),
        digest: ApiKeyDigest(vec![digest; 32]),
        name: Some(format!("key {prefix}")),
        created_at: now(),
        policy: morpheus_domain::KeyPolicy::default(),
    }
}

#[tokio::test]
async fn keys_are_listed_newest_first_and_counted_while_active() {
    each_backend(async |t| {
        let alice = insert_user(&t.db, "alice@example.com").await;
        let mut older = new_key(&alice, "sk-aaaaaa", 1);
        older.created_at = now() - Duration::minutes(5);
        let newer = new_key(&alice, "sk-bbbbbb", 2);
        let stored =
            t.db.insert_api_key(older.clone(), ApiKeyLimits::NONE)
                .await
                .unwrap();
        assert_eq!(stored.prefix, older.prefix);
        assert_eq!(stored.name, older.name);
        assert!(stored.is_active);
        assert_eq!(stored.created_at, older.created_at);
        assert_eq!(stored.last_used_at, None);
        t.db.insert_api_key(newer.clone(), ApiKeyLimits::NONE)
            .await
            .unwrap();

        let listed = t.db.list_api_keys(alice.id, Page::ALL).await.unwrap();
        let ids: Vec<_> = listed.iter().map(|k| k.id).collect();
        assert_eq!(ids, [newer.id, older.id]);
        assert_eq!(active_keys(t, &alice), 2);

        t.db.deactivate_api_key(alice.id, older.id)
            .await
            .unwrap()
            .unwrap();
        assert_eq!(active_keys(t, &alice), 1);
        // Revoked keys stay in the list.
        assert_eq!(
            t.db.list_api_keys(alice.id, Page::ALL).await.unwrap().len(),
            2
        );
    })
    .await;
}

#[tokio::test]
async fn a_clashing_prefix_id_or_digest_is_a_collision() {
    each_backend(async |t| {
        let alice = insert_user(&t.db, "alice@example.com").await;
        let first = new_key(&alice, "sk-aaaaaa", 1);
        t.db.insert_api_key(first.clone(), ApiKeyLimits::NONE)
            .await
            .unwrap();

        let same_prefix = new_key(&alice, "sk-aaaaaa", 2);
        let mut same_id = new_key(&alice, "sk-bbbbbb", 3);
        same_id.id = first.id;
        let same_digest = new_key(&alice, "sk-cccccc", 1);
        for clash in [same_prefix, same_id, same_digest] {
            assert!(matches!(
                t.db.insert_api_key(clash, ApiKeyLimits::NONE).await,
                Err(InsertApiKeyError::Collision)
            ));
        }
    })
    .await;
}

#[tokio::test]
async fn lookup_by_prefix_carries_the_digest_and_the_owners_state() {
    each_backend(async |t| {
        let alice = insert_user(&t.db, "alice@example.com").await;
        let key = new_key(&alice, "sk-aaaaaa", 7);
        t.db.insert_api_key(key.clone(), ApiKeyLimits::NONE)
            .await
            .unwrap();

        let found =
            t.db.find_api_key_by_prefix(&key.prefix)
                .await
                .unwrap()
                .unwrap();
        assert_eq!(found.key.id, key.id);
        assert_eq!(found.digest, key.digest);
        assert!(found.owner_active);

        // No port disables an account yet; do it by hand.
        t.execute(&format!(
            "UPDATE users SET is_active = FALSE WHERE id = {}",
            alice.id
        ));
        let found =
            t.db.find_api_key_by_prefix(&key.prefix)
                .await
                .unwrap()
                .unwrap();
        assert!(!found.owner_active);

        let unknown = KeyPrefix::from_trusted("sk-zzzzzz".into());
        assert!(
            t.db.find_api_key_by_prefix(&unknown)
                .await
                .unwrap()
                .is_none()
        );
    })
    .await;
}

#[tokio::test]
async fn only_the_owner_can_deactivate_a_key() {
    each_backend(async |t| {
        let alice = insert_user(&t.db, "alice@example.com").await;
        let mallory = insert_user(&t.db, "mallory@example.com").await;
        let key = new_key(&alice, "sk-aaaaaa", 1);
        t.db.insert_api_key(key.clone(), ApiKeyLimits::NONE)
            .await
            .unwrap();

        assert!(
            t.db.deactivate_api_key(mallory.id, key.id)
                .await
                .unwrap()
                .is_none()
        );
        assert!(
            t.db.deactivate_api_key(alice.id, ApiKeyId::random())
                .await
                .unwrap()
                .is_none()
        );
        assert_eq!(active_keys(t, &alice), 1);

        let revoked =
            t.db.deactivate_api_key(alice.id, key.id)
                .await
                .unwrap()
                .unwrap();
        assert!(!revoked.is_active);
        // Deactivating twice is harmless.
        assert!(
            t.db.deactivate_api_key(alice.id, key.id)
                .await
                .unwrap()
                .is_some()
        );
    })
    .await;
}

#[tokio::test]
async fn touching_keys_records_their_last_use_in_one_batch() {
    each_backend(async |t| {
        let alice = insert_user(&t.db, "alice@example.com").await;
        let (one, two) = (
            new_key(&alice, "sk-aaaaaa", 1),
            new_key(&alice, "sk-bbbbbb", 2),
        );
        t.db.insert_api_key(one.clone(), ApiKeyLimits::NONE)
            .await
            .unwrap();
        t.db.insert_api_key(two.clone(), ApiKeyLimits::NONE)
            .await
            .unwrap();
        let at = now();
        let later = at + Duration::seconds(5);
        t.db.touch_api_keys(vec![(one.id, at), (two.id, later)])
            .await
            .unwrap();
        let listed = t.db.list_api_keys(alice.id, Page::ALL).await.unwrap();
        let used = |id| listed.iter().find(|k| k.id == id).unwrap().last_used_at;
        assert_eq!(used(one.id), Some(at));
        assert_eq!(used(two.id), Some(later));
    })
    .await;
}

#[tokio::test]
async fn revoking_a_key_or_deleting_its_owner_logs_the_revocation() {
    each_backend(async |t| {
        use morpheus_domain::ports::{RevocationLog, UserRepository};
        assert_eq!(t.db.latest_revocation().await.unwrap(), 0);
        let alice = insert_user(&t.db, "alice@example.com").await;
        let bob = insert_user(&t.db, "bob@example.com").await;
        let (a1, a2) = (
            new_key(&alice, "sk-aaaaaa", 1),
            new_key(&alice, "sk-aaaaab", 2),
        );
        let b1 = new_key(&bob, "sk-bbbbbb", 3);
        for key in [&a1, &a2, &b1] {
            t.db.insert_api_key(key.clone(), ApiKeyLimits::NONE)
                .await
                .unwrap();
        }
        t.db.deactivate_api_key(alice.id, a1.id)
            .await
            .unwrap()
            .unwrap();
        // Someone else's key: nothing happens, nothing is logged.
        assert!(
            t.db.deactivate_api_key(alice.id, b1.id)
                .await
                .unwrap()
                .is_none()
        );
        let first = t.db.latest_revocation().await.unwrap();
        let logged = t.db.revocations_after(0, 100).await.unwrap();
        assert_eq!(logged.len(), 1);
        assert_eq!(logged[0].prefix.as_str(), "sk-aaaaaa");
        assert_eq!(logged[0].seq, first);

        // Deleting Bob logs his active key (Alice's revoked one is not logged twice).
        t.db.delete_user(bob.id).await.unwrap().unwrap();
        let after: Vec<_> =
            t.db.revocations_after(first, 100)
                .await
                .unwrap()
                .into_iter()
                .map(|r| r.prefix.as_str().to_owned())
                .collect();
        assert_eq!(after, ["sk-bbbbbb"]);
        assert!(t.db.latest_revocation().await.unwrap() > first);

        // Purging drops what is older than the cut-off only.
        assert_eq!(
            t.db.purge_revocations(now() - Duration::hours(1))
                .await
                .unwrap(),
            0
        );
        assert_eq!(
            t.db.purge_revocations(now() + Duration::seconds(1))
                .await
                .unwrap(),
            2
        );
        assert!(t.db.revocations_after(0, 100).await.unwrap().is_empty());
    })
    .await;
}

#[tokio::test]
async fn a_key_beyond_the_active_limit_is_refused_and_revoked_keys_free_their_place() {
    each_backend(async |t| {
        let alice = insert_user(&t.db, "alice@example.com").await;
        let bob = insert_user(&t.db, "bob@example.com").await;
        let first = new_key(&alice, "sk-aaaaaa", 1);
        t.db.insert_api_key(first.clone(), ApiKeyLimits::active(2))
            .await
            .unwrap();
        t.db.insert_api_key(new_key(&alice, "sk-bbbbbb", 2), ApiKeyLimits::active(2))
            .await
            .unwrap();

        assert!(matches!(
            t.db.insert_api_key(new_key(&alice, "sk-cccccc", 3), ApiKeyLimits::active(2))
                .await,
            Err(InsertApiKeyError::LimitReached)
        ));
        // Another user's keys are counted apart.
        t.db.insert_api_key(new_key(&bob, "sk-dddddd", 4), ApiKeyLimits::active(2))
            .await
            .unwrap();

        t.db.deactivate_api_key(alice.id, first.id)
            .await
            .unwrap()
            .unwrap();
        t.db.insert_api_key(new_key(&alice, "sk-cccccc", 3), ApiKeyLimits::active(2))
            .await
            .unwrap();
        assert_eq!(active_keys(t, &alice), 2);
    })
    .await;
}

#[tokio::test]
async fn enabling_or_disabling_a_user_logs_their_active_keys_for_every_cache() {
    use morpheus_domain::ports::{RevocationLog, UserRepository};
    each_backend(async |t| {
        let user = crate::harness::insert_user(&t.db, "alice@example.com").await;
        let other = crate::harness::insert_user(&t.db, "bob@example.com").await;
        let key = |owner: &morpheus_domain::User, prefix: &str| NewApiKey {
            id: ApiKeyId::random(),
            user_id: owner.id,
            prefix: KeyPrefix::from_trusted(prefix.into()),
            digest: ApiKeyDigest(prefix.as_bytes().to_vec()),
            name: None,
            created_at: crate::harness::now(),
            policy: morpheus_domain::KeyPolicy::default(),
        };
        let kept =
            t.db.insert_api_key(key(&user, "sk-aaaaaa"), ApiKeyLimits::active(10))
                .await
                .unwrap();
        let revoked =
            t.db.insert_api_key(key(&user, "sk-bbbbbb"), ApiKeyLimits::active(10))
                .await
                .unwrap();
        t.db.insert_api_key(key(&other, "sk-cccccc"), ApiKeyLimits::active(10))
            .await
            .unwrap();
        t.db.deactivate_api_key(user.id, revoked.id).await.unwrap();
        let before = t.db.latest_revocation().await.unwrap();

        let disabled = t.db.set_user_active(user.id, false).await.unwrap().unwrap();
        assert!(!disabled.is_active);
        let logged: Vec<String> =
            t.db.revocations_after(before, 10)
                .await
                .unwrap()
                .into_iter()
                .map(|r| r.prefix.as_str().to_owned())
                .collect();
        assert_eq!(
            logged,
            [kept.prefix.as_str()],
            "the active key only, the user's only"
        );
        let stored =
            t.db.find_api_key_by_prefix(&kept.prefix)
                .await
                .unwrap()
                .unwrap();
        assert!(!stored.owner_active);

        let enabled = t.db.set_user_active(user.id, true).await.unwrap().unwrap();
        assert!(enabled.is_active);
        // Enabling logs the key again: caches holding it as refused must read it again.
        let logged_again = t.db.revocations_after(before + 1, 10).await.unwrap();
        assert_eq!(logged_again.len(), 1);
        assert_eq!(logged_again[0].prefix, kept.prefix);
        assert!(
            t.db.set_user_active(morpheus_domain::UserId::random(), false)
                .await
                .unwrap()
                .is_none()
        );

        // A new share of the operator's limits reaches the keys' owner state the same way.
        assert_eq!(stored.owner_limit_multiplier, LimitMultiplier::ONE);
        let before = t.db.latest_revocation().await.unwrap();
        let double: LimitMultiplier = "2.5".parse().unwrap();
        let changed =
            t.db.set_limit_multiplier(user.id, double)
                .await
                .unwrap()
                .unwrap();
        assert_eq!(changed.limit_multiplier, double);
        let logged = t.db.revocations_after(before, 10).await.unwrap();
        assert_eq!(logged.len(), 1);
        assert_eq!(logged[0].prefix, kept.prefix);
        let stored =
            t.db.find_api_key_by_prefix(&kept.prefix)
                .await
                .unwrap()
                .unwrap();
        assert_eq!(stored.owner_limit_multiplier, double);
        assert_eq!(
            t.db.find_user(user.id)
                .await
                .unwrap()
                .unwrap()
                .limit_multiplier,
            double
        );
        assert!(
            t.db.set_limit_multiplier(morpheus_domain::UserId::random(), double)
                .await
                .unwrap()
                .is_none()
        );
    })
    .await;
}

#[tokio::test]
async fn a_policy_round_trips_and_a_change_sets_clears_or_keeps_each_field() {
    use morpheus_domain::ports::RevocationLog;
    use morpheus_domain::{AllowedModels, ApiKeyChange, Change, KeyBudget, KeyPolicy, Usd};
    use std::num::{NonZeroU32, NonZeroU64};
    each_backend(async |t| {
        let alice = insert_user(&t.db, "alice@example.com").await;
        let mallory = insert_user(&t.db, "mallory@example.com").await;
        let policy = KeyPolicy {
            expires_at: Some(now() + Duration::days(30)),
            allowed_models: Some(AllowedModels::from_trusted(vec![
                "llama".into(),
                "0xabc".into(),
            ])),
            rpm: NonZeroU32::new(60),
            tpm: NonZeroU64::new(5_000_000_000),
            budgets: vec![
                KeyBudget {
                    window: std::time::Duration::from_secs(3_600),
                    limit: "1.5".parse::<Usd>().unwrap(),
                },
                KeyBudget {
                    window: std::time::Duration::from_secs(30 * 86_400),
                    limit: "30".parse::<Usd>().unwrap(),
                },
            ],
            stream_continuation: true,
        };
        let mut key = new_key(&alice, "sk-aaaaaa", 1);
        key.policy = policy.clone();
        let stored =
            t.db.insert_api_key(key.clone(), ApiKeyLimits::NONE)
                .await
                .unwrap();
        assert_eq!(stored.policy, policy);
        let found =
            t.db.find_api_key_by_prefix(&key.prefix)
                .await
                .unwrap()
                .unwrap();
        assert_eq!(found.key.policy, policy);
        assert_eq!(
            t.db.list_api_keys(alice.id, Page::ALL).await.unwrap()[0].policy,
            policy
        );

        let before = t.db.latest_revocation().await.unwrap();
        let change = ApiKeyChange {
            name: Change::Set(None),
            allowed_models: Change::Set(None),
            rpm: Change::Set(NonZeroU32::new(10)),
            budgets: Change::Set(vec![]),
            stream_continuation: Change::Set(false),
            ..ApiKeyChange::default()
        };
        assert!(
            t.db.update_api_key(mallory.id, key.id, change.clone())
                .await
                .unwrap()
                .is_none()
        );
        let changed =
            t.db.update_api_key(alice.id, key.id, change)
                .await
                .unwrap()
                .unwrap();
        assert_eq!(changed.name, None);
        assert_eq!(
            changed.policy,
            KeyPolicy {
                allowed_models: None,
                rpm: NonZeroU32::new(10),
                budgets: vec![],
                stream_continuation: false,
                ..policy.clone()
            }
        );
        let logged = t.db.revocations_after(before, 10).await.unwrap();
        assert_eq!(logged.len(), 1, "caches are told to read the key again");
        assert_eq!(logged[0].prefix, key.prefix);
        let found =
            t.db.find_api_key_by_prefix(&key.prefix)
                .await
                .unwrap()
                .unwrap();
        assert_eq!(found.key.policy, changed.policy);

        // Nothing to change: the key as it is, nothing logged.
        let same =
            t.db.update_api_key(alice.id, key.id, ApiKeyChange::default())
                .await
                .unwrap();
        assert_eq!(same.unwrap().policy, changed.policy);
        assert_eq!(t.db.revocations_after(before, 10).await.unwrap().len(), 1);
    })
    .await;
}

#[tokio::test]
async fn creations_in_the_last_day_are_capped_revoked_keys_included() {
    each_backend(async |t| {
        let alice = insert_user(&t.db, "alice@example.com").await;
        let limits = ApiKeyLimits {
            max_active: 100,
            max_created_per_day: 2,
        };
        let mut old = new_key(&alice, "sk-aaaaaa", 1);
        old.created_at = now() - Duration::hours(25);
        t.db.insert_api_key(old, limits).await.unwrap();
        let mut first = new_key(&alice, "sk-bbbbbb", 2);
        first.created_at = now() - Duration::hours(3);
        let first_at = first.created_at;
        t.db.insert_api_key(first.clone(), limits).await.unwrap();
        t.db.deactivate_api_key(alice.id, first.id).await.unwrap();
        t.db.insert_api_key(new_key(&alice, "sk-cccccc", 3), limits)
            .await
            .unwrap();
        match t
            .db
            .insert_api_key(new_key(&alice, "sk-dddddd", 4), limits)
            .await
        {
            Err(InsertApiKeyError::DailyLimitReached { retry_at }) => {
                assert_eq!(retry_at, first_at + Duration::days(1));
            }
            other => panic!("{other:?}"),
        }
    })
    .await;
}
