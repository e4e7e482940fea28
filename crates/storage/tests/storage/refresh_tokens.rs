use chrono::Duration;
use diesel::RunQueryDsl;
use morpheus_domain::ports::{RefreshTokenRepository, RevokedRefreshTokens};
use morpheus_domain::{NewRefreshRecord, RefreshConsumption, User};
use morpheus_storage::Database;

use crate::harness::{TestDb, each_backend, insert_user, now};

fn record(user: &User, token_id: &str, family_id: &str) -> NewRefreshRecord {
    NewRefreshRecord {
        token_id: token_id.into(),
        family_id: family_id.into(),
        user_id: user.id,
        issued_at: now(),
        expires_at: now() + Duration::days(7),
    }
}

/// Rotates `token` (of `family`) to a successor named `token-next`.
async fn rotate(db: &Database, user: &User, token: &str, family: &str) -> RefreshConsumption {
    db.rotate_refresh_token(token, now(), record(user, &format!("{token}-next"), family))
        .await
        .unwrap()
}

fn stored(t: &TestDb, token: &str) -> i64 {
    t.count(&format!(
        "SELECT COUNT(*) AS n FROM refresh_tokens WHERE token_id = '{token}'"
    ))
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
                let user = user.clone();
                tokio::spawn(async move { rotate(&db, &user, "t1", "f1").await })
            })
            .collect();
        let mut outcomes = Vec::new();
        for task in tasks {
            outcomes.push(task.await.unwrap());
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
        // One successor: the losers stored nothing.
        assert_eq!(stored(t, "t1-next"), 1);
    })
    .await;
}

#[tokio::test]
async fn a_token_never_issued_is_unknown() {
    each_backend(async |t| {
        let user = insert_user(&t.db, "alice@example.com").await;
        assert_eq!(
            t.db.rotate_refresh_token("nope", now(), record(&user, "nope-next", "f"))
                .await
                .unwrap(),
            RefreshConsumption::Unknown
        );
        assert_eq!(stored(t, "nope-next"), 0);
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
            rotate(&t.db, &user, "a1", "fa").await,
            RefreshConsumption::Consumed
        );

        let family = |f: &str| RevokedRefreshTokens::Family(f.to_owned());
        let generation = |t: &TestDb| {
            t.count(&format!(
                "SELECT token_generation AS n FROM users WHERE id = {}",
                user.id
            ))
        };
        // a1 (used), its successor a1-next and a2; b1 is another family's.
        assert_eq!(t.db.end_sign_ins(user.id, family("fa")).await.unwrap(), 3);
        assert_eq!(t.db.end_sign_ins(user.id, family("fa")).await.unwrap(), 0);
        assert_eq!(
            t.db.end_sign_ins(user.id, family("nobody")).await.unwrap(),
            0
        );
        // Every call ended the user's access tokens.
        assert_eq!(generation(t), 3);
        // Another user's sign-out never touches these tokens.
        let bob = insert_user(&t.db, "bob@example.com").await;
        t.db.end_sign_ins(bob.id, RevokedRefreshTokens::All)
            .await
            .unwrap();

        for token in ["a1-next", "a2"] {
            assert_eq!(
                rotate(&t.db, &user, token, "fa").await,
                RefreshConsumption::Revoked,
                "{token}"
            );
        }
        assert_eq!(
            rotate(&t.db, &user, "b1", "fb").await,
            RefreshConsumption::Consumed
        );
    })
    .await;
}

#[tokio::test]
async fn a_rotation_whose_successor_cannot_be_stored_spends_nothing() {
    each_backend(async |t| {
        let user = insert_user(&t.db, "alice@example.com").await;
        for token in ["t1", "taken"] {
            t.db.insert_refresh_token(record(&user, token, "f"))
                .await
                .unwrap();
        }

        // The successor's id is already stored: the insert fails after the consuming UPDATE.
        let failed =
            t.db.rotate_refresh_token("t1", now(), record(&user, "taken", "f"))
                .await;
        assert!(failed.is_err(), "{failed:?}");

        // The UPDATE went with it: t1 is still unused, so the user's retry is no replay.
        assert_eq!(
            t.count("SELECT COUNT(*) AS n FROM refresh_tokens WHERE used_at IS NOT NULL"),
            0
        );
        assert_eq!(
            rotate(&t.db, &user, "t1", "f").await,
            RefreshConsumption::Consumed
        );
        assert_eq!(stored(t, "t1-next"), 1);
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
            rotate(&t.db, &user, "live", "f").await,
            RefreshConsumption::Consumed
        );
        assert_eq!(
            rotate(&t.db, &user, "old", "f").await,
            RefreshConsumption::Unknown
        );
    })
    .await;
}

/// A replay caught while another rotation of the family is committing: the revocation must
/// also reach the successor that rotation stores. (On PostgreSQL one UPDATE waits for the
/// rotation's row lock but works on rows committed before it began, so it alone misses it.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_revocation_reaches_the_successor_of_a_rotation_committing_meanwhile() {
    each_backend(async |t| {
        let user = insert_user(&t.db, "alice@example.com").await;
        t.db.insert_refresh_token(record(&user, "t1", "f"))
            .await
            .unwrap();

        // A rotation, as `rotate_refresh_token` does it, held open before its commit.
        let mut rotation = t.raw();
        for sql in [
            "BEGIN",
            "UPDATE refresh_tokens SET used_at = issued_at WHERE token_id = 't1'",
            "INSERT INTO refresh_tokens (token_id, family_id, user_id, issued_at, expires_at, revoked) \
             SELECT 't1-next', family_id, user_id, issued_at, expires_at, revoked \
             FROM refresh_tokens WHERE token_id = 't1'",
        ] {
            diesel::sql_query(sql).execute(&mut rotation).unwrap();
        }

        let db = t.db.clone();
        let user_id = user.id;
        let revocation = tokio::spawn(async move {
            db.end_sign_ins(user_id, RevokedRefreshTokens::Family("f".into()))
                .await
        });
        tokio::time::sleep(std::time::Duration::from_millis(300)).await;
        assert!(
            !revocation.is_finished(),
            "the revocation must wait for the rotation's lock"
        );
        diesel::sql_query("COMMIT").execute(&mut rotation).unwrap();

        assert_eq!(revocation.await.unwrap().unwrap(), 2);
        assert_eq!(
            t.count("SELECT COUNT(*) AS n FROM refresh_tokens WHERE revoked = false"),
            0
        );
        assert_eq!(
            rotate(&t.db, &user, "t1-next", "f").await,
            RefreshConsumption::Revoked
        );
    })
    .await;
}
