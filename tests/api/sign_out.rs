//! Logout, signing out everywhere and password changes: which credentials stop working, on
//! this instance at once and on another one within `MORPHEUS_USER_CACHE_SECONDS`.

use std::time::{Duration, Instant};

use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

use crate::helpers::{PASSWORD, Seeded, TestApp, error_body, spawn_app, spawn_app_with};
use crate::process::GatewayProcess;

async fn logout(app: &TestApp, access: &str, body: &Value) -> reqwest::Response {
    app.authed(Method::POST, "/api/v1/auth/logout", access, Some(body))
        .await
}

async fn change_password(
    app: &TestApp,
    access: &str,
    current: &str,
    new: &str,
) -> reqwest::Response {
    app.authed(
        Method::POST,
        "/api/v1/auth/password",
        access,
        Some(&json!({"current_password": current, "new_password": new})),
    )
    .await
}

async fn me(client: &reqwest::Client, base: &str, access: &str) -> StatusCode {
    client
        .get(format!("{base}/api/v1/auth/me"))
        .bearer_auth(access)
        .send()
        .await
        .expect("request")
        .status()
}

async fn refresh(app: &TestApp, refresh_token: &str) -> reqwest::Response {
    app.post_json(
        "/api/v1/auth/refresh",
        &json!({"refresh_token": refresh_token}),
    )
    .await
}

/// A second login of the same user (another device): its access and refresh tokens.
async fn login_again(app: &TestApp, user: &Seeded, password: &str) -> (String, String) {
    let r = app.login(&user.email, password).await;
    assert_eq!(r.status(), 200);
    let tokens: Value = r.json().await.unwrap();
    (
        tokens["access_token"].as_str().unwrap().to_owned(),
        tokens["refresh_token"].as_str().unwrap().to_owned(),
    )
}

#[tokio::test]
async fn logout_revokes_the_presented_login_and_ends_the_access_tokens_of_the_account() {
    let app = spawn_app().await;
    let ada = app.seed_user().await;
    let bob = app.seed_user().await;
    let (phone_access, phone_refresh) = login_again(&app, &ada, PASSWORD).await;

    // Nobody's token without an access token.
    let r = app
        .post_json(
            "/api/v1/auth/logout",
            &json!({"refresh_token": ada.refresh}),
        )
        .await;
    error_body(r, 401).await;

    // Ada's refresh token presented by Bob revokes nothing of hers.
    let r = logout(&app, &bob.access, &json!({"refresh_token": ada.refresh})).await;
    assert_eq!(r.status(), 204);
    assert!(r.bytes().await.unwrap().is_empty());
    assert_eq!(refresh(&app, &ada.refresh).await.status(), 200);
    // Bob's refresh token, an access token and garbage presented by Ada: the same 204.
    let mut access = ada.access.clone();
    for foreign in [bob.refresh.as_str(), bob.access.as_str(), "garbage"] {
        let r = logout(&app, &access, &json!({"refresh_token": foreign})).await;
        assert_eq!(r.status(), 204, "{foreign}");
        // Each signed the caller's access tokens out: log in again.
        assert_eq!(me(&app.client, &app.address, &access).await, 401);
        access = login_again(&app, &ada, PASSWORD).await.0;
    }
    let r = refresh(&app, &bob.refresh).await;
    assert_eq!(r.status(), 200, "Bob's login survives");

    let (laptop_access, laptop_refresh) = login_again(&app, &ada, PASSWORD).await;
    let r = logout(
        &app,
        &laptop_access,
        &json!({"refresh_token": laptop_refresh}),
    )
    .await;
    assert_eq!(r.status(), 204);
    error_body(refresh(&app, &laptop_refresh).await, 401).await;
    for access in [&laptop_access, &phone_access] {
        assert_eq!(me(&app.client, &app.address, access).await, 401);
    }
    // The phone's login goes on: its refresh token gives a working access token.
    let r = refresh(&app, &phone_refresh).await;
    assert_eq!(r.status(), 200);
    let phone: Value = r.json().await.unwrap();
    let phone_access = phone["access_token"].as_str().unwrap();
    assert_eq!(me(&app.client, &app.address, phone_access).await, 200);

    // Everywhere: the phone's login ends too.
    let r = logout(
        &app,
        phone_access,
        &json!({"refresh_token": "unused", "everywhere": true}),
    )
    .await;
    assert_eq!(r.status(), 204);
    error_body(
        refresh(&app, phone["refresh_token"].as_str().unwrap()).await,
        401,
    )
    .await;
    assert_eq!(me(&app.client, &app.address, phone_access).await, 401);

    let (access, _) = login_again(&app, &ada, PASSWORD).await;
    let r = logout(&app, &access, &json!({"refresh_token": 42})).await;
    error_body(r, 422).await;
}

#[tokio::test]
async fn a_password_change_needs_the_current_password_and_ends_every_login() {
    let app = spawn_app().await;
    let ada = app.seed_user().await;
    let new_password = "a brand new passphrase";

    let r = change_password(&app, &ada.access, "not the password", new_password).await;
    let body = error_body(r, 403).await;
    assert_eq!(body["detail"], "Incorrect password");
    for (weak, kind) in [
        ("short", "string_too_short"),
        ("password123", "value_error"),
    ] {
        let r = change_password(&app, &ada.access, PASSWORD, weak).await;
        let body = error_body(r, 422).await;
        assert_eq!(body["detail"][0]["loc"], json!(["body", "new_password"]));
        assert_eq!(body["detail"][0]["type"], kind);
    }
    // Nothing changed so far.
    assert_eq!(me(&app.client, &app.address, &ada.access).await, 200);

    let r = change_password(&app, &ada.access, PASSWORD, new_password).await;
    assert_eq!(r.status(), 200);
    let fresh: Value = r.json().await.unwrap();
    assert_eq!(fresh["token_type"], "bearer");
    assert_eq!(me(&app.client, &app.address, &ada.access).await, 401);
    error_body(refresh(&app, &ada.refresh).await, 401).await;
    assert_eq!(app.login(&ada.email, PASSWORD).await.status(), 401);
    assert_eq!(app.login(&ada.email, new_password).await.status(), 200);
    let fresh_access = fresh["access_token"].as_str().unwrap();
    assert_eq!(me(&app.client, &app.address, fresh_access).await, 200);
    assert_eq!(
        refresh(&app, fresh["refresh_token"].as_str().unwrap())
            .await
            .status(),
        200
    );
    // API keys are not sign-ins: they keep working.
    let r = app
        .client
        .get(app.url("/api/v1/automation/settings"))
        .bearer_auth(&ada.api_key)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
}

#[tokio::test]
async fn guessing_the_current_password_is_throttled_like_a_login() {
    let app = spawn_app_with(|s| s.login_attempts_per_account_client = 3).await;
    let ada = app.seed_user().await;
    let mut statuses = Vec::new();
    for _ in 0..4 {
        let r = change_password(&app, &ada.access, "not the password", "a new passphrase").await;
        statuses.push(r.status().as_u16());
    }
    // The seed's login was one attempt of the burst.
    assert_eq!(statuses, [403, 403, 429, 429]);
}

/// Polls `GET /auth/me` on `base` with `access` until it answers `status`; how long it took.
async fn until_me(base: &str, access: &str, status: u16, within: Duration) -> Duration {
    let client = reqwest::Client::new();
    let start = Instant::now();
    loop {
        if me(&client, base, access).await == status {
            return start.elapsed();
        }
        assert!(
            start.elapsed() < within,
            "{base}: still not {status} after {within:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test]
async fn a_sign_out_on_one_instance_reaches_another_within_the_user_cache_time() {
    let app = spawn_app().await;
    let other = GatewayProcess::beside(&app, &[("MORPHEUS_USER_CACHE_SECONDS", "2")]).await;
    let cache = Duration::from_secs(2);
    // Measured from before the change: the other instance's entry may be that old already.
    let bound = cache + Duration::from_secs(1);
    let ada = app.seed_user().await;

    // Logout here; the other instance cached Ada just before.
    assert_eq!(me(&app.client, &other.address, &ada.access).await, 200);
    let start = Instant::now();
    let r = logout(&app, &ada.access, &json!({"refresh_token": ada.refresh})).await;
    assert_eq!(r.status(), 204);
    until_me(&other.address, &ada.access, 401, bound).await;
    let logout_seen = start.elapsed();

    // A login after the logout works there at once, cached or not.
    let (access, _) = login_again(&app, &ada, PASSWORD).await;
    assert_eq!(me(&app.client, &other.address, &access).await, 200);

    // A password change here.
    let start = Instant::now();
    let r = change_password(&app, &access, PASSWORD, "a brand new passphrase").await;
    assert_eq!(r.status(), 200);
    let fresh: Value = r.json().await.unwrap();
    assert_eq!(
        me(
            &app.client,
            &other.address,
            fresh["access_token"].as_str().unwrap()
        )
        .await,
        200,
        "the new token is newer than the cached user: read again, not refused"
    );
    until_me(&other.address, &access, 401, bound).await;
    let change_seen = start.elapsed();
    println!(
        "user cache 2 s: logout seen by the other instance after {logout_seen:?}, \
         password change after {change_seen:?}"
    );
}

/// The contract bounds the refresh token (1 to 8,192 characters); schemathesis found an
/// over-long one answered 204 like any other.
#[tokio::test]
async fn a_refresh_token_outside_the_declared_bounds_is_422() {
    let app = spawn_app().await;
    let user = app.seed_user().await;
    for token in [String::new(), "x".repeat(8193)] {
        let r = logout(&app, &user.access, &json!({ "refresh_token": token })).await;
        let body = error_body(r, 422).await;
        assert_eq!(body["detail"][0]["loc"], json!(["body", "refresh_token"]));
    }
    let r = logout(
        &app,
        &user.access,
        &json!({ "refresh_token": "x".repeat(8192) }),
    )
    .await;
    assert_eq!(r.status(), 204);
}
