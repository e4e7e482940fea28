use morpheus_domain::ports::{InsertUserError, UserRepository};
use morpheus_domain::{Email, PasswordHash, UserId, UserName};

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
