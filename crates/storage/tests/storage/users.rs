use morpheus_domain::ports::{InsertUserError, RefreshTokenRepository, UserRepository};
use morpheus_domain::{Email, NewRefreshRecord, PasswordHash, UserId, UserName};

use crate::harness::{each_backend, new_user};

#[tokio::test]
async fn an_inserted_user_can_be_found_by_id_and_by_email() {
    each_backend(async |t| {
        let mut new = new_user("alice@example.com");
        new.name = Some(UserName::parse("Alice".into()).unwrap());
        let inserted = t.db.insert_user(new.clone()).await.unwrap();
        assert_eq!(inserted.id, new.id);
        assert_eq!(inserted.email, new.email);
        assert_eq!(inserted.name, new.name);
        assert!(inserted.is_active);
        assert_eq!(inserted.created_at, new.created_at);
        assert_eq!(inserted.updated_at, new.created_at);

        let by_id = t.db.find_user(new.id).await.unwrap().unwrap();
        assert_eq!(by_id.email, new.email);
        assert_eq!(by_id.created_at, inserted.created_at);
        let by_email = t.db.find_user_by_email(&new.email).await.unwrap().unwrap();
        assert_eq!(by_email.id, new.id);

        assert!(t.db.find_user(UserId::random()).await.unwrap().is_none());
        let stranger = Email::parse("bob@example.com").unwrap();
        assert!(t.db.find_user_by_email(&stranger).await.unwrap().is_none());
    })
    .await;
}

#[tokio::test]
async fn a_second_account_with_the_same_email_is_a_duplicate() {
    each_backend(async |t| {
        t.db.insert_user(new_user("alice@example.com"))
            .await
            .unwrap();
        // Emails arrive lower-cased by `Email::parse`.
        let again = new_user("ALICE@example.com");
        assert!(matches!(
            t.db.insert_user(again).await,
            Err(InsertUserError::DuplicateEmail)
        ));
    })
    .await;
}

#[tokio::test]
async fn a_clashing_random_id_is_reported_as_taken() {
    each_backend(async |t| {
        let first =
            t.db.insert_user(new_user("alice@example.com"))
                .await
                .unwrap();
        let mut second = new_user("bob@example.com");
        second.id = first.id;
        assert!(matches!(
            t.db.insert_user(second).await,
            Err(InsertUserError::IdTaken)
        ));
        // Both keys clash: the email is what the user must change.
        let mut both = new_user("alice@example.com");
        both.id = first.id;
        assert!(matches!(
            t.db.insert_user(both).await,
            Err(InsertUserError::DuplicateEmail)
        ));
    })
    .await;
}

#[tokio::test]
async fn a_password_hash_can_be_replaced() {
    each_backend(async |t| {
        let user =
            t.db.insert_user(new_user("alice@example.com"))
                .await
                .unwrap();
        let hash = PasswordHash("$argon2id$v=19$new".into());
        t.db.update_password_hash(user.id, hash.clone())
            .await
            .unwrap();
        let stored = t.db.find_user(user.id).await.unwrap().unwrap();
        assert_eq!(stored.password_hash, hash);
        assert!(stored.updated_at >= user.updated_at);
    })
    .await;
}

#[tokio::test]
async fn a_password_change_or_disabling_ends_every_sign_in_of_that_user_only() {
    each_backend(async |t| {
        let alice = t.db.insert_user(new_user("alice@example.com")).await.unwrap();
        let bob = t.db.insert_user(new_user("bob@example.com")).await.unwrap();
        assert_eq!(alice.token_generation, 0);
        for (n, user) in [(0, &alice), (1, &alice), (2, &bob)] {
            t.db.insert_refresh_token(NewRefreshRecord {
                token_id: format!("t{n}"),
                family_id: format!("f{n}"),
                user_id: user.id,
                issued_at: chrono::Utc::now(),
                expires_at: chrono::Utc::now() + chrono::Duration::days(1),
            })
            .await
            .unwrap();
        }
        let live = |t: &crate::harness::TestDb, user: UserId| {
            t.count(&format!(
                "SELECT COUNT(*) AS n FROM refresh_tokens WHERE user_id = {user} AND revoked = false"
            ))
        };
        let hash = PasswordHash("$argon2id$v=19$changed".into());
        assert!(t.db.change_password(alice.id, hash.clone()).await.unwrap());
        let stored = t.db.find_user(alice.id).await.unwrap().unwrap();
        assert_eq!(stored.password_hash, hash);
        assert_eq!(stored.token_generation, 1);
        assert_eq!(live(t, alice.id), 0);
        assert_eq!(live(t, bob.id), 1);
        assert!(!t.db.change_password(UserId::random(), hash).await.unwrap());

        let disabled = t.db.set_user_active(bob.id, false).await.unwrap().unwrap();
        assert_eq!(disabled.token_generation, 1);
        assert_eq!(live(t, bob.id), 0);
        let enabled = t.db.set_user_active(bob.id, true).await.unwrap().unwrap();
        assert_eq!(enabled.token_generation, 1, "enabling ends nothing");
    })
    .await;
}

#[tokio::test]
async fn users_are_listed_newest_first_and_filtered_by_email_literally() {
    each_backend(async |t| {
        let mut ids = Vec::new();
        for (i, email) in ["a_b@example.com", "axb@example.com", "carol@other.org"]
            .iter()
            .enumerate()
        {
            let mut new = new_user(email);
            new.created_at += chrono::Duration::seconds(i as i64);
            ids.push(t.db.insert_user(new).await.unwrap().id);
        }
        let listed = |users: Vec<morpheus_domain::User>| -> Vec<UserId> {
            users.into_iter().map(|u| u.id).collect()
        };
        assert_eq!(
            listed(t.db.list_users(None, 10).await.unwrap()),
            [ids[2], ids[1], ids[0]]
        );
        assert_eq!(listed(t.db.list_users(None, 1).await.unwrap()), [ids[2]]);
        assert_eq!(
            listed(t.db.list_users(Some("EXAMPLE"), 10).await.unwrap()),
            [ids[1], ids[0]]
        );
        // `_` is a character here, not LIKE's wildcard.
        assert_eq!(
            listed(t.db.list_users(Some("a_b"), 10).await.unwrap()),
            [ids[0]]
        );
        assert!(t.db.list_users(Some("%"), 10).await.unwrap().is_empty());
    })
    .await;
}

#[tokio::test]
async fn a_look_alike_address_is_the_same_account() {
    each_backend(async |t| {
        let alice =
            t.db.insert_user(new_user("alice@example.com"))
                .await
                .unwrap();
        // A Cyrillic а: another address, the same skeleton.
        let look_alike = Email::parse("\u{0430}lice@example.com").unwrap();
        assert_ne!(look_alike, alice.email);
        let found = t.db.find_user_by_email(&look_alike).await.unwrap().unwrap();
        assert_eq!(found.id, alice.id);
        assert!(matches!(
            t.db.insert_user(new_user("\u{0430}lice@example.com")).await,
            Err(InsertUserError::DuplicateEmail)
        ));
        assert_eq!(t.count("SELECT COUNT(*) AS n FROM users"), 1);
    })
    .await;
}

#[tokio::test]
async fn accounts_older_than_the_skeleton_column_get_theirs_at_the_next_start() {
    each_backend(async |t| {
        let older = t.db.insert_user(new_user("bob@example.com")).await.unwrap();
        let newer =
            t.db.insert_user(new_user("carol@example.com"))
                .await
                .unwrap();
        // As the migration leaves them: no skeleton; and a look-alike of Bob made before
        // look-alikes were refused.
        t.execute("UPDATE users SET email_skeleton = NULL");
        let mut twin = new_user("b\u{043E}b@example.com");
        twin.created_at = older.created_at + chrono::Duration::hours(1);
        let twin_id = twin.id.0;
        t.db.insert_user(twin).await.unwrap();
        t.execute(&format!(
            "UPDATE users SET email_skeleton = NULL WHERE id = {twin_id}"
        ));

        t.db.migrate().await.unwrap();

        assert_eq!(
            t.count("SELECT COUNT(*) AS n FROM users WHERE email_skeleton IS NOT NULL"),
            2
        );
        // The look-alike keeps its own login; a new look-alike is refused.
        let twin_email = Email::parse("b\u{043E}b@example.com").unwrap();
        let found = t.db.find_user_by_email(&twin_email).await.unwrap().unwrap();
        assert_eq!(found.id.0, twin_id);
        let bob =
            t.db.find_user_by_email(&older.email)
                .await
                .unwrap()
                .unwrap();
        assert_eq!(bob.id, older.id);
        assert!(
            t.db.find_user_by_email(&newer.email)
                .await
                .unwrap()
                .is_some()
        );
        assert!(matches!(
            t.db.insert_user(new_user("b\u{03BF}b@example.com")).await,
            Err(InsertUserError::DuplicateEmail)
        ));
    })
    .await;
}
