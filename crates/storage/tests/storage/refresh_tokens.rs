use chrono::Duration;
use morpheus_domain::ports::RefreshTokenRepository;
use morpheus_domain::{NewRefreshRecord, RefreshConsumption, User};

use crate::harness::{each_backend, insert_user, now};

fn record(user: &User, token_id: &str, family_id: &str) -> NewRefreshRecord {
    NewRefreshRecord {
        token_id: token_id.into(),
        family_id: family_id.into(),
        user_id: user.id,
        issued_at: now(),
        expires_at: now() + Duration::days(7),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn exactly_one_of_twenty_concurrent_consumers_wins() {
    each_backend(async |t| {
        let user = insert_user(&t.db, "alice@example.com").await;
        t.db.insert_refresh_token(record(&user, "t1", "f1"))
            .await
            .unwrap();

        let tasks: Vec<_> = (0..20)
            .map(|_| {
                let db = t.db.clone();
                tokio::spawn(async move { db.consume_refresh_token("t1", now()).await })
            })
            .collect();
        let mut outcomes = Vec::new();
        for task in tasks {
            outcomes.push(task.await.unwrap().unwrap());
        }

        let consumed = outcomes
            .iter()
            .filter(|o| **o == RefreshConsumption::Consumed)
            .count();
        let reused = outcomes
            .iter()
            .filter(|o| **o == RefreshConsumption::Reused)
            .count();
        assert_eq!((consumed, reused), (1, 19), "{outcomes:?}");
    })
    .await;
}

#[tokio::test]
async fn a_token_never_issued_is_unknown() {
    each_backend(async |t| {
        assert_eq!(
            t.db.consume_refresh_token("nope", now()).await.unwrap(),
            RefreshConsumption::Unknown
        );
    })
    .await;
}

#[tokio::test]
async fn revoking_a_family_spends_all_of_its_tokens_and_no_others() {
    each_backend(async |t| {
        let user = insert_user(&t.db, "alice@example.com").await;
        for (token, family) in [("a1", "fa"), ("a2", "fa"), ("b1", "fb")] {
            t.db.insert_refresh_token(record(&user, token, family))
                .await
                .unwrap();
        }
        assert_eq!(
            t.db.consume_refresh_token("a1", now()).await.unwrap(),
            RefreshConsumption::Consumed
        );

        assert_eq!(t.db.revoke_refresh_family("fa").await.unwrap(), 2);
        assert_eq!(t.db.revoke_refresh_family("nobody").await.unwrap(), 0);

        assert_eq!(
            t.db.consume_refresh_token("a2", now()).await.unwrap(),
            RefreshConsumption::Reused
        );
        assert_eq!(
            t.db.consume_refresh_token("b1", now()).await.unwrap(),
            RefreshConsumption::Consumed
        );
    })
    .await;
}

#[tokio::test]
async fn purging_removes_only_expired_records() {
    each_backend(async |t| {
        let user = insert_user(&t.db, "alice@example.com").await;
        let mut expired = record(&user, "old", "f");
        expired.issued_at = now() - Duration::days(8);
        expired.expires_at = now() - Duration::days(1);
        t.db.insert_refresh_token(expired).await.unwrap();
        t.db.insert_refresh_token(record(&user, "live", "f"))
            .await
            .unwrap();

        assert_eq!(t.db.purge_refresh_tokens(now()).await.unwrap(), 1);
        assert_eq!(t.db.purge_refresh_tokens(now()).await.unwrap(), 0);
        assert_eq!(
            t.db.consume_refresh_token("live", now()).await.unwrap(),
            RefreshConsumption::Consumed
        );
        assert_eq!(
            t.db.consume_refresh_token("old", now()).await.unwrap(),
            RefreshConsumption::Unknown
        );
    })
    .await;
}
