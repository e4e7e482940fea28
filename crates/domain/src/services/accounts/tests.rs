//! The account service's branches, on in-memory ports (`crate::testing`).

use std::sync::atomic::Ordering;

use super::*;
use crate::services::{ApiKeyCache, ApiKeyCacheOptions};
use crate::testing::{FakeHasher, FakeThrottle, FakeTokens, MemoryStore};

const PASSWORD: &str = "correct horse battery";

struct World {
    store: Arc<MemoryStore>,
    hasher: Arc<FakeHasher>,
    throttle: Arc<FakeThrottle>,
    accounts: AccountService,
}

fn world() -> World {
    let (store, hasher, throttle) = (
        Arc::new(MemoryStore::default()),
        Arc::new(FakeHasher::default()),
        Arc::new(FakeThrottle::default()),
    );
    let accounts = AccountService::new(
        store.clone(),
        store.clone(),
        hasher.clone(),
        Arc::new(FakeTokens),
        throttle.clone(),
        TokenLifetimes {
            access: Duration::minutes(30),
            refresh: Duration::days(7),
        },
    );
    World {
        store,
        hasher,
        throttle,
        accounts,
    }
}

fn email(s: &str) -> Email {
    Email::parse(s).unwrap()
}

fn password(s: &str) -> Password {
    Password::for_login(s.to_owned()).unwrap()
}

impl World {
    /// A registered, active user with [`PASSWORD`].
    fn user(&self, address: &str) -> User {
        self.store.add_user(address, &FakeHasher::hash_of(PASSWORD))
    }

    async fn login(&self, address: &str, pw: &str) -> Result<TokenPair, LoginError> {
        self.accounts
            .login(email(address), password(pw), None)
            .await
    }
}

#[tokio::test]
async fn registration_stores_a_hashed_user_and_refuses_a_taken_email_without_hashing() {
    let w = world();
    let user = w
        .accounts
        .register(email("ada@example.com"), password(PASSWORD), None, None)
        .await
        .unwrap();
    assert!(user.is_active);
    assert_eq!(
        w.store.user(user.id).unwrap().password_hash.0,
        FakeHasher::hash_of(PASSWORD)
    );
    let again = w
        .accounts
        .register(email("ada@example.com"), password(PASSWORD), None, None)
        .await;
    assert!(matches!(again, Err(RegisterError::EmailTaken)));
    assert_eq!(
        w.hasher.hashes.load(Ordering::SeqCst),
        1,
        "no hash for a taken email"
    );
}

#[tokio::test]
async fn registration_draws_another_id_after_a_collision_and_gives_up_after_several() {
    let w = world();
    w.store
        .user_id_collisions
        .store(MAX_DRAWS - 1, Ordering::SeqCst);
    let user = w
        .accounts
        .register(email("a@example.com"), password(PASSWORD), None, None)
        .await;
    assert!(user.is_ok(), "the last draw succeeds");

    w.store
        .user_id_collisions
        .store(MAX_DRAWS, Ordering::SeqCst);
    let refused = w
        .accounts
        .register(email("b@example.com"), password(PASSWORD), None, None)
        .await;
    assert!(matches!(refused, Err(RegisterError::Unknown(_))));
    assert!(w.store.users.lock().unwrap().len() == 1);
}

#[tokio::test]
async fn a_registration_racing_another_for_the_email_is_a_taken_email() {
    let w = world();
    w.store.email_races.store(1, Ordering::SeqCst);
    let raced = w
        .accounts
        .register(email("a@example.com"), password(PASSWORD), None, None)
        .await;
    assert!(matches!(raced, Err(RegisterError::EmailTaken)));
}

#[tokio::test]
async fn throttled_or_saturated_registrations_are_refused_before_storing_anything() {
    let w = world();
    w.throttle
        .refuse_registrations
        .store(true, Ordering::SeqCst);
    let throttled = w
        .accounts
        .register(email("a@example.com"), password(PASSWORD), None, None)
        .await;
    assert!(matches!(throttled, Err(RegisterError::Throttled(t)) if t.retry_after.as_secs() == 60));
    w.throttle
        .refuse_registrations
        .store(false, Ordering::SeqCst);
    w.hasher.busy.store(true, Ordering::SeqCst);
    let busy = w
        .accounts
        .register(email("a@example.com"), password(PASSWORD), None, None)
        .await;
    assert!(matches!(busy, Err(RegisterError::Busy)));
    assert!(w.store.users.lock().unwrap().is_empty());
}

#[tokio::test]
async fn login_issues_a_pair_and_stores_the_refresh_token_s_record() {
    let w = world();
    let user = w.user("ada@example.com");
    let pair = w.login("ada@example.com", PASSWORD).await.unwrap();
    let access = FakeTokens
        .decode(&pair.access_token, TokenKind::Access)
        .unwrap();
    assert_eq!(access.user_id, user.id);
    let refresh = FakeTokens
        .decode(&pair.refresh_token, TokenKind::Refresh)
        .unwrap();
    let rows = w.store.refresh_tokens.lock().unwrap();
    let row = &rows[&refresh.token_id];
    assert_eq!(Some(row.record.family_id.clone()), refresh.family_id);
    assert!(!row.used);
}

#[tokio::test]
async fn unknown_accounts_wrong_passwords_and_disabled_users_get_the_same_refusal() {
    let w = world();
    let user = w.user("ada@example.com");
    let unknown = w.login("nobody@example.com", PASSWORD).await;
    assert!(matches!(unknown, Err(LoginError::InvalidCredentials)));
    assert_eq!(
        w.hasher.dummy_verifications.load(Ordering::SeqCst),
        1,
        "an unknown account costs a verification too"
    );
    let wrong = w.login("ada@example.com", "wrong password").await;
    assert!(matches!(wrong, Err(LoginError::InvalidCredentials)));
    w.accounts.set_active(user.id, false).await.unwrap();
    let disabled = w.login("ada@example.com", PASSWORD).await;
    assert!(matches!(disabled, Err(LoginError::InvalidCredentials)));
    assert!(w.store.refresh_tokens.lock().unwrap().is_empty());
}

#[tokio::test]
async fn a_throttled_or_saturated_login_is_refused_as_such() {
    let w = world();
    w.user("ada@example.com");
    w.throttle.refuse_logins.store(true, Ordering::SeqCst);
    let throttled = w.login("ada@example.com", PASSWORD).await;
    assert!(matches!(throttled, Err(LoginError::Throttled(t)) if t.retry_after.as_secs() == 42));
    assert_eq!(
        w.hasher.verifications.load(Ordering::SeqCst),
        0,
        "no hashing when throttled"
    );
    w.throttle.refuse_logins.store(false, Ordering::SeqCst);
    w.hasher.busy.store(true, Ordering::SeqCst);
    assert!(matches!(
        w.login("ada@example.com", PASSWORD).await,
        Err(LoginError::Busy)
    ));
}

#[tokio::test]
async fn a_weaker_hash_is_upgraded_at_login() {
    let w = world();
    let user = w
        .store
        .add_user("ada@example.com", &format!("weak${PASSWORD}"));
    w.login("ada@example.com", PASSWORD).await.unwrap();
    assert_eq!(
        w.store.user(user.id).unwrap().password_hash.0,
        FakeHasher::hash_of(PASSWORD)
    );
}

#[tokio::test]
async fn a_refresh_token_rotates_once_and_its_replay_revokes_the_family() {
    let w = world();
    w.user("ada@example.com");
    let first = w.login("ada@example.com", PASSWORD).await.unwrap();
    let second = w.accounts.refresh(&first.refresh_token).await.unwrap();
    assert_ne!(second.refresh_token, first.refresh_token);
    // The thief (or the victim) replays the first token: the whole family dies.
    let replay = w.accounts.refresh(&first.refresh_token).await;
    assert!(matches!(replay, Err(RefreshError::Invalid)));
    let after_replay = w.accounts.refresh(&second.refresh_token).await;
    assert!(matches!(after_replay, Err(RefreshError::Invalid)));
    assert!(
        w.store
            .refresh_tokens
            .lock()
            .unwrap()
            .values()
            .all(|row| row.revoked)
    );
}

#[tokio::test]
async fn refresh_refuses_other_tokens_unknown_records_and_disabled_or_deleted_users() {
    let w = world();
    let user = w.user("ada@example.com");
    let pair = w.login("ada@example.com", PASSWORD).await.unwrap();
    for bad in [pair.access_token.as_str(), "garbage"] {
        assert!(matches!(
            w.accounts.refresh(bad).await,
            Err(RefreshError::Invalid)
        ));
    }
    // Signed by us, but never stored (or purged).
    let unknown = FakeTokens
        .encode(&TokenClaims {
            user_id: user.id,
            kind: TokenKind::Refresh,
            token_id: "never-stored".into(),
            family_id: Some("f".into()),
            generation: 0,
            authenticated_at: None,
            issued_at: Utc::now(),
            expires_at: Utc::now() + Duration::days(1),
        })
        .unwrap();
    assert!(matches!(
        w.accounts.refresh(&unknown).await,
        Err(RefreshError::Invalid)
    ));
    // A refresh token without a family is not one we issue.
    let familyless = FakeTokens
        .encode(&TokenClaims {
            family_id: None,
            ..FakeTokens
                .decode(&pair.refresh_token, TokenKind::Refresh)
                .unwrap()
        })
        .unwrap();
    assert!(matches!(
        w.accounts.refresh(&familyless).await,
        Err(RefreshError::Invalid)
    ));
    w.accounts.set_active(user.id, false).await.unwrap();
    assert!(matches!(
        w.accounts.refresh(&pair.refresh_token).await,
        Err(RefreshError::Invalid)
    ));
    w.accounts.set_active(user.id, true).await.unwrap();
    w.accounts.delete_account(user.id).await.unwrap();
    assert!(matches!(
        w.accounts.refresh(&pair.refresh_token).await,
        Err(RefreshError::Invalid)
    ));
}

#[tokio::test]
async fn an_access_token_authenticates_only_an_existing_active_user() {
    let w = world();
    let user = w.user("ada@example.com");
    let pair = w.login("ada@example.com", PASSWORD).await.unwrap();
    assert_eq!(
        w.accounts
            .authenticate(&pair.access_token)
            .await
            .unwrap()
            .user
            .id,
        user.id
    );
    assert!(matches!(
        w.accounts.authenticate(&pair.refresh_token).await,
        Err(AuthenticateError::Invalid)
    ));
    w.accounts.set_active(user.id, false).await.unwrap();
    assert!(matches!(
        w.accounts.authenticate(&pair.access_token).await,
        Err(AuthenticateError::Invalid)
    ));
}

#[tokio::test]
async fn disabling_enabling_and_deleting_log_the_user_s_keys_and_clear_this_replica_s_cache() {
    let w = world();
    let cache = ApiKeyCache::new(ApiKeyCacheOptions {
        capacity: 10,
        max_age: std::time::Duration::from_secs(60),
    });
    let accounts = w.accounts.clone().with_api_key_cache(cache.clone());
    let user = w.user("ada@example.com");
    let key = w.store.add_api_key(user.id, "sk-aaaaaa");
    let stored = w.store.api_keys.lock().unwrap()[0].clone();
    cache.insert(cache.generation(), stored.clone());
    assert_eq!(cache.len(), 1);

    let disabled = accounts.set_active(user.id, false).await.unwrap();
    assert!(!disabled.is_active);
    assert_eq!(cache.len(), 0, "forgotten on this replica");
    assert_eq!(
        *w.store.revocations.lock().unwrap(),
        std::slice::from_ref(&key.prefix)
    );

    cache.insert(cache.generation(), stored);
    accounts.set_active(user.id, true).await.unwrap();
    assert_eq!(cache.len(), 0, "read again, with its owner enabled");
    assert_eq!(w.store.revocations.lock().unwrap().len(), 2);

    assert!(matches!(
        accounts.set_active(UserId::random(), false).await,
        Err(SetUserActiveError::NotFound)
    ));
    let deleted = accounts.delete_account(user.id).await.unwrap();
    assert_eq!(deleted.api_keys, 1);
    assert!(matches!(
        accounts.delete_account(user.id).await,
        Err(DeleteAccountError::NotFound)
    ));
}

#[tokio::test]
async fn operators_find_and_list_users() {
    let w = world();
    let ada = w.user("ada@example.com");
    w.user("bob@other.org");
    assert_eq!(
        w.accounts.find_user(ada.id).await.unwrap().unwrap().id,
        ada.id
    );
    assert_eq!(
        w.accounts
            .find_user_by_email(&email("ada@example.com"))
            .await
            .unwrap()
            .unwrap()
            .id,
        ada.id
    );
    let listed = w.accounts.list_users(Some("EXAMPLE"), 10).await.unwrap();
    assert_eq!(listed.len(), 1);
    assert_eq!(w.accounts.list_users(None, 10).await.unwrap().len(), 2);
}

#[tokio::test]
async fn the_purge_forgets_refresh_records_that_expired_before_now() {
    let w = world();
    let before = Utc::now();
    w.accounts.purge_expired_refresh_tokens().await.unwrap();
    let asked = w.store.purged_before.lock().unwrap()[0];
    assert!(asked >= before && asked <= Utc::now());
}

#[tokio::test]
async fn logout_ends_the_presented_family_and_every_access_token_and_nothing_of_others() {
    let w = world();
    let ada = w.user("ada@example.com");
    w.user("bob@example.com");
    let laptop = w.login("ada@example.com", PASSWORD).await.unwrap();
    let phone = w.login("ada@example.com", PASSWORD).await.unwrap();
    let bob = w.login("bob@example.com", PASSWORD).await.unwrap();

    // Bob's refresh token presented by Ada is not revoked; nor is a forged one.
    for foreign in [bob.refresh_token.as_str(), "garbage"] {
        w.accounts.logout(ada.id, foreign, false).await.unwrap();
    }
    assert!(w.accounts.authenticate(&bob.access_token).await.is_ok());
    let bob = w.accounts.refresh(&bob.refresh_token).await.unwrap();
    assert!(w.accounts.authenticate(&bob.access_token).await.is_ok());

    w.accounts
        .logout(ada.id, &laptop.refresh_token, false)
        .await
        .unwrap();
    assert!(matches!(
        w.accounts.refresh(&laptop.refresh_token).await,
        Err(RefreshError::Invalid)
    ));
    for access in [&laptop.access_token, &phone.access_token] {
        assert!(matches!(
            w.accounts.authenticate(access).await,
            Err(AuthenticateError::Invalid)
        ));
    }
    // The other login refreshes, and its new access token works.
    let phone = w.accounts.refresh(&phone.refresh_token).await.unwrap();
    assert!(w.accounts.authenticate(&phone.access_token).await.is_ok());

    // A revoked token presented again is not a replay: it ends nothing more.
    let generation = w.store.user(ada.id).unwrap().token_generation;
    assert!(w.accounts.refresh(&laptop.refresh_token).await.is_err());
    assert_eq!(w.store.user(ada.id).unwrap().token_generation, generation);

    w.accounts
        .logout(ada.id, &phone.refresh_token, true)
        .await
        .unwrap();
    assert!(w.accounts.refresh(&phone.refresh_token).await.is_err());
}

#[tokio::test]
async fn a_password_change_needs_the_current_password_and_ends_every_sign_in() {
    let w = world();
    let ada = w.user("ada@example.com");
    let old = w.login("ada@example.com", PASSWORD).await.unwrap();
    let new_password = || Password::parse("a new passphrase".into()).unwrap();

    let wrong = w
        .accounts
        .change_password(&ada, password("not the password"), new_password(), None)
        .await;
    assert!(matches!(wrong, Err(ChangePasswordError::IncorrectPassword)));
    w.throttle.refuse_logins.store(true, Ordering::SeqCst);
    let throttled = w
        .accounts
        .change_password(&ada, password(PASSWORD), new_password(), None)
        .await;
    assert!(matches!(throttled, Err(ChangePasswordError::Throttled(_))));
    w.throttle.refuse_logins.store(false, Ordering::SeqCst);
    assert!(w.accounts.authenticate(&old.access_token).await.is_ok());

    let fresh = w
        .accounts
        .change_password(&ada, password(PASSWORD), new_password(), None)
        .await
        .unwrap();
    assert!(w.accounts.authenticate(&old.access_token).await.is_err());
    assert!(w.accounts.refresh(&old.refresh_token).await.is_err());
    assert!(w.accounts.authenticate(&fresh.access_token).await.is_ok());
    assert!(w.login("ada@example.com", PASSWORD).await.is_err());
    assert!(w.login("ada@example.com", "a new passphrase").await.is_ok());
}

#[tokio::test]
async fn disabling_a_user_ends_their_sign_ins_for_good() {
    let w = world();
    let ada = w.user("ada@example.com");
    let pair = w.login("ada@example.com", PASSWORD).await.unwrap();
    w.accounts.set_active(ada.id, false).await.unwrap();
    w.accounts.set_active(ada.id, true).await.unwrap();
    assert!(w.accounts.authenticate(&pair.access_token).await.is_err());
    assert!(w.accounts.refresh(&pair.refresh_token).await.is_err());
}

#[tokio::test]
async fn deleting_one_s_account_needs_a_recent_sign_in_or_the_password() {
    let w = world();
    let stale = AccountService {
        fresh_sign_in: Duration::seconds(-1),
        ..w.accounts.clone()
    };
    let ada = w.user("ada@example.com");
    let pair = w.login("ada@example.com", PASSWORD).await.unwrap();
    let signed_in = w.accounts.authenticate(&pair.access_token).await.unwrap();
    assert!(matches!(
        stale.delete_own_account(&signed_in, None, None).await,
        Err(DeleteAccountError::RecentSignInRequired)
    ));
    // A refresh keeps the sign-in's time: it does not make a token fresh.
    let refreshed = w.accounts.refresh(&pair.refresh_token).await.unwrap();
    let refreshed = w
        .accounts
        .authenticate(&refreshed.access_token)
        .await
        .unwrap();
    assert_eq!(
        refreshed.token.authenticated_at,
        signed_in.token.authenticated_at
    );
    assert!(matches!(
        stale
            .delete_own_account(&refreshed, Some(password("not the password")), None)
            .await,
        Err(DeleteAccountError::IncorrectPassword)
    ));
    // A fresh token with a wrong password is refused too: what is sent is checked.
    assert!(matches!(
        w.accounts
            .delete_own_account(&refreshed, Some(password("not the password")), None)
            .await,
        Err(DeleteAccountError::IncorrectPassword)
    ));
    assert!(w.store.user(ada.id).is_some());
    stale
        .delete_own_account(&refreshed, Some(password(PASSWORD)), None)
        .await
        .unwrap();
    assert!(w.store.user(ada.id).is_none());
}

#[tokio::test]
async fn cached_users_answer_until_a_change_here_and_newer_tokens_read_the_user_again() {
    let w = world();
    let accounts = w
        .accounts
        .clone()
        .with_user_cache(std::time::Duration::from_secs(60));
    let ada = w.user("ada@example.com");
    let pair = accounts
        .login(email("ada@example.com"), password(PASSWORD), None)
        .await
        .unwrap();
    assert!(accounts.authenticate(&pair.access_token).await.is_ok());

    // Another replica (the plain service, same store) signs Ada out: this one's cache still
    // has her, so the old token passes until the entry ages out...
    w.accounts
        .logout(ada.id, &pair.refresh_token, true)
        .await
        .unwrap();
    assert!(accounts.authenticate(&pair.access_token).await.is_ok());
    // ...but a token issued after that sign-out is not refused for being newer.
    let again = w.login("ada@example.com", PASSWORD).await.unwrap();
    assert!(accounts.authenticate(&again.access_token).await.is_ok());
    // And reading it again refreshed the cache: the old token is refused now.
    assert!(accounts.authenticate(&pair.access_token).await.is_err());

    // A change made through this replica is seen at once.
    accounts
        .logout(ada.id, &again.refresh_token, false)
        .await
        .unwrap();
    assert!(accounts.authenticate(&again.access_token).await.is_err());
}
