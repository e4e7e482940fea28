//! The user's default API key: `PUT /auth/keys/{key_id}/default`, `GET /auth/keys/default`
//! and `GET /auth/keys/first`.

use reqwest::Method;
use serde_json::{Value, json};

use crate::helpers::{TestApp, spawn_app};

async fn get(app: &TestApp, path: &str, access: &str) -> Value {
    let r = app.authed(Method::GET, path, access, None).await;
    assert_eq!(r.status(), 200, "{path}");
    r.json().await.unwrap()
}

async fn make_default(app: &TestApp, id: &Value, access: &str) -> reqwest::Response {
    app.authed(
        Method::PUT,
        &format!("/api/v1/auth/keys/{id}/default"),
        access,
        None,
    )
    .await
}

#[tokio::test]
async fn the_default_is_the_marked_key_while_usable_else_the_oldest_usable_one() {
    let app = spawn_app().await;
    let user = app.seed_user().await;
    // No default marked: the oldest usable key (the one seeding made) is both.
    let first = get(&app, "/api/v1/auth/keys/first", &user.access).await;
    assert_eq!(first["is_default"], false);
    assert_eq!(
        get(&app, "/api/v1/auth/keys/default", &user.access).await,
        first
    );
    let second = app.create_key(&user.access, "second").await;
    let third = app.create_key(&user.access, "third").await;

    let r = make_default(&app, &second["id"], &user.access).await;
    assert_eq!(r.status(), 200);
    let marked: Value = r.json().await.unwrap();
    assert_eq!(
        (marked["id"].clone(), marked["is_default"].clone()),
        (second["id"].clone(), json!(true))
    );
    assert_eq!(
        get(&app, "/api/v1/auth/keys/default", &user.access).await["id"],
        second["id"]
    );
    assert_eq!(
        get(&app, "/api/v1/auth/keys/first", &user.access).await["id"],
        first["id"]
    );

    // Another mark moves it: one default at a time, as the listing shows.
    assert_eq!(
        make_default(&app, &third["id"], &user.access)
            .await
            .status(),
        200
    );
    let listed = get(&app, "/api/v1/auth/keys", &user.access).await;
    let defaults: Vec<&Value> = listed
        .as_array()
        .unwrap()
        .iter()
        .filter(|k| k["is_default"] == true)
        .map(|k| &k["id"])
        .collect();
    assert_eq!(defaults, vec![&third["id"]]);

    // Revoking the default clears the mark: the oldest usable key is the default again.
    let r = app
        .authed(
            Method::DELETE,
            &format!("/api/v1/auth/keys/{}", third["id"]),
            &user.access,
            None,
        )
        .await;
    assert_eq!(r.status(), 200);
    let revoked: Value = r.json().await.unwrap();
    assert_eq!(revoked["is_default"], false);
    assert_eq!(
        get(&app, "/api/v1/auth/keys/default", &user.access).await["id"],
        first["id"]
    );
    // A revoked key cannot be made the default; nor can an expired one.
    let r = make_default(&app, &third["id"], &user.access).await;
    assert_eq!(r.status(), 404);
    let body: Value = r.json().await.unwrap();
    assert_eq!(body["detail"], "API key not found or not owned by user");
    // Expired (in the past, which the API would not accept: written as time would leave it).
    app.execute_sql(&format!(
        "UPDATE api_keys SET expires_at = '2020-01-01 00:00:00' WHERE id = {}",
        first["id"]
    ));
    assert_eq!(
        make_default(&app, &first["id"], &user.access)
            .await
            .status(),
        404
    );
    // The first usable key is now the second one.
    assert_eq!(
        get(&app, "/api/v1/auth/keys/first", &user.access).await["id"],
        second["id"]
    );
}

#[tokio::test]
async fn another_users_key_is_not_found_and_a_user_without_keys_gets_null() {
    let app = spawn_app().await;
    let (alice, bob) = (app.seed_user().await, app.seed_user().await);
    let bobs = get(&app, "/api/v1/auth/keys/first", &bob.access).await;
    let r = make_default(&app, &bobs["id"], &alice.access).await;
    assert_eq!(r.status(), 404);
    assert_eq!(
        get(&app, "/api/v1/auth/keys/first", &bob.access).await["is_default"],
        false
    );
    // Bob revokes his only key: no usable key, so null.
    let r = app
        .authed(
            Method::DELETE,
            &format!("/api/v1/auth/keys/{}", bobs["id"]),
            &bob.access,
            None,
        )
        .await;
    assert_eq!(r.status(), 200);
    assert_eq!(
        get(&app, "/api/v1/auth/keys/default", &bob.access).await,
        Value::Null
    );
    assert_eq!(
        get(&app, "/api/v1/auth/keys/first", &bob.access).await,
        Value::Null
    );
    // The paths are GET only; a bad id is 422; an API key is not an access token.
    let r = app
        .authed(
            Method::DELETE,
            "/api/v1/auth/keys/default",
            &alice.access,
            None,
        )
        .await;
    assert_eq!(r.status(), 405);
    assert_eq!(r.headers()["allow"], "GET");
    let r = app
        .authed(
            Method::PUT,
            "/api/v1/auth/keys/abc/default",
            &alice.access,
            None,
        )
        .await;
    assert_eq!(r.status(), 422);
    let r = app
        .authed(
            Method::GET,
            "/api/v1/auth/keys/default",
            &alice.api_key,
            None,
        )
        .await;
    assert_eq!(r.status(), 401);
}
