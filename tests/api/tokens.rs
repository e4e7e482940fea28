//! JWT validation (A4) and refresh-token rotation with reuse detection (A5).

use chrono::Utc;
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use reqwest::Method;
use serde_json::{Value, json};

use crate::helpers::{JWT_SECRET, spawn_app};

/// The `kid` the gateway puts in its tokens: 16 hex digits of the key's SHA-256.
fn kid(secret: &[u8]) -> String {
    hex::encode(&ring::digest::digest(&ring::digest::SHA256, secret).as_ref()[..8])
}

/// A header naming the test key, so a refusal is about what the case changes, not the `kid`.
fn header(alg: Algorithm) -> Header {
    let mut h = Header::new(alg);
    h.kid = Some(kid(JWT_SECRET.as_bytes()));
    h
}

fn mint(header: Header, claims: &Value, secret: &[u8]) -> String {
    jsonwebtoken::encode(&header, claims, &EncodingKey::from_secret(secret)).unwrap()
}

fn claims(sub: i64) -> Value {
    let now = Utc::now().timestamp();
    json!({
        "sub": sub.to_string(), "iss": "morpheus-gateway", "aud": "morpheus-gateway:access",
        "iat": now, "exp": now + 600, "jti": "t", "token_type": "access"
    })
}

fn without(mut v: Value, key: &str) -> Value {
    v.as_object_mut().unwrap().remove(key);
    v
}

fn with(mut v: Value, key: &str, value: Value) -> Value {
    v[key] = value;
    v
}

fn b64(bytes: &[u8]) -> String {
    use base64::Engine as _;
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
}

#[tokio::test]
async fn forged_and_malformed_access_tokens_are_all_refused_alike() {
    let app = spawn_app().await;
    let user = app.seed_user().await;
    let key = JWT_SECRET.as_bytes();
    let hs256 = || header(Algorithm::HS256);
    let good = mint(hs256(), &claims(user.id), key);
    assert_eq!(
        app.authed(Method::GET, "/api/v1/auth/me", &good, None)
            .await
            .status(),
        200
    );

    let now = Utc::now().timestamp();
    let none_token = format!(
        "{}.{}.",
        b64(br#"{"alg":"none","typ":"JWT"}"#),
        b64(claims(user.id).to_string().as_bytes())
    );
    let mut flipped = good.clone().into_bytes();
    let last = flipped.len() - 2;
    flipped[last] = if flipped[last] == b'A' { b'B' } else { b'A' };
    let (head, rest) = good.split_once('.').unwrap();
    let sig = rest.split_once('.').unwrap().1;
    let edited = format!(
        "{head}.{}.{sig}",
        b64(with(claims(user.id), "sub", json!("1"))
            .to_string()
            .as_bytes())
    );
    let mut kid_header = hs256();
    kid_header.kid = Some("../../etc/passwd' OR 1=1 --".into());

    let cases: Vec<(&str, String)> = vec![
        ("alg none", none_token),
        (
            "HS512",
            mint(header(Algorithm::HS512), &claims(user.id), key),
        ),
        ("flipped signature", String::from_utf8(flipped).unwrap()),
        ("edited payload", edited),
        (
            "other secret",
            mint(
                hs256(),
                &claims(user.id),
                b"another-secret-another-secret-another",
            ),
        ),
        (
            "expired",
            mint(hs256(), &with(claims(user.id), "exp", json!(now - 10)), key),
        ),
        (
            "no exp",
            mint(hs256(), &without(claims(user.id), "exp"), key),
        ),
        (
            "no iss",
            mint(hs256(), &without(claims(user.id), "iss"), key),
        ),
        (
            "no aud",
            mint(hs256(), &without(claims(user.id), "aud"), key),
        ),
        (
            "no sub",
            mint(hs256(), &without(claims(user.id), "sub"), key),
        ),
        (
            "wrong iss",
            mint(hs256(), &with(claims(user.id), "iss", json!("evil")), key),
        ),
        (
            "wrong aud",
            mint(
                hs256(),
                &with(claims(user.id), "aud", json!("morpheus-gateway:refresh")),
                key,
            ),
        ),
        (
            "refresh type",
            mint(
                hs256(),
                &with(claims(user.id), "token_type", json!("refresh")),
                key,
            ),
        ),
        ("the real refresh token", user.refresh.clone()),
        ("unknown user", mint(hs256(), &claims(user.id + 1), key)),
        (
            "non-numeric sub",
            mint(hs256(), &with(claims(user.id), "sub", json!("admin")), key),
        ),
        (
            "kid injection",
            mint(kid_header, &with(claims(user.id), "sub", json!("0")), key),
        ),
        (
            "no kid",
            mint(Header::new(Algorithm::HS256), &claims(user.id), key),
        ),
        ("garbage", "not.a.jwt".into()),
        ("empty parts", "..".into()),
        ("huge", "a".repeat(9000)),
    ];
    let mut bodies = std::collections::HashSet::new();
    for (name, token) in &cases {
        let r = app
            .authed(Method::GET, "/api/v1/auth/me", token, None)
            .await;
        assert_eq!(r.status(), 401, "{name} was accepted");
        assert_eq!(r.headers()["www-authenticate"], "Bearer", "{name}");
        bodies.insert(r.text().await.unwrap());
    }
    assert_eq!(
        bodies.len(),
        1,
        "different error bodies leak which check failed: {bodies:?}"
    );
    eprintln!("JWT forgery matrix: {} cases refused", cases.len());

    // Missing and non-Bearer credentials.
    let r = app
        .client
        .get(app.url("/api/v1/auth/me"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
    assert_eq!(
        r.json::<Value>().await.unwrap()["detail"],
        "Not authenticated"
    );
    let r = app
        .client
        .get(app.url("/api/v1/auth/me"))
        .header("authorization", format!("Basic {good}"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
    // The scheme is case-insensitive.
    let r = app
        .client
        .get(app.url("/api/v1/auth/me"))
        .header("authorization", format!("bearer {good}"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
}

#[tokio::test]
async fn tokens_issued_in_the_future_or_not_valid_yet_are_refused() {
    let app = spawn_app().await;
    let user = app.seed_user().await;
    let key = JWT_SECRET.as_bytes();
    let now = Utc::now().timestamp();
    let status = async |claims: Value| {
        let token = mint(header(Algorithm::HS256), &claims, key);
        app.authed(Method::GET, "/api/v1/auth/me", &token, None)
            .await
            .status()
    };
    let base = || claims(user.id);
    for (name, claims, expected) in [
        ("as issued", base(), 200),
        (
            "iat 2 s ahead (clock skew)",
            with(base(), "iat", json!(now + 2)),
            200,
        ),
        (
            "iat a minute ahead",
            with(base(), "iat", json!(now + 60)),
            401,
        ),
        (
            "iat a day ahead",
            with(base(), "iat", json!(now + 86_400)),
            401,
        ),
        ("nbf passed", with(base(), "nbf", json!(now - 60)), 200),
        (
            "nbf a minute ahead",
            with(base(), "nbf", json!(now + 60)),
            401,
        ),
        ("nbf not a number", with(base(), "nbf", json!("soon")), 401),
    ] {
        assert_eq!(status(claims).await, expected, "{name}");
    }
}

#[tokio::test]
async fn refresh_rotates_and_a_replayed_token_revokes_the_family() {
    let app = spawn_app().await;
    let user = app.seed_user().await;
    let refresh = |t: &str| {
        let body = json!({"refresh_token": t});
        let app = &app;
        async move { app.post_json("/api/v1/auth/refresh", &body).await }
    };

    let r1 = refresh(&user.refresh).await;
    assert_eq!(r1.status(), 200);
    let pair: Value = r1.json().await.unwrap();
    let rt2 = pair["refresh_token"].as_str().unwrap().to_owned();
    let at2 = pair["access_token"].as_str().unwrap().to_owned();
    assert_ne!(rt2, user.refresh);
    assert_eq!(
        app.authed(Method::GET, "/api/v1/auth/me", &at2, None)
            .await
            .status(),
        200
    );

    // Replaying the used token fails and kills its successor too.
    assert_eq!(refresh(&user.refresh).await.status(), 401);
    assert_eq!(refresh(&rt2).await.status(), 401);

    // An access token is not a refresh token.
    assert_eq!(refresh(&user.access).await.status(), 401);
    // The store keeps no refresh token in clear.
    assert!(!app.dump_table("refresh_tokens").contains(&rt2));
}

#[tokio::test]
async fn concurrent_refreshes_of_one_token_rotate_exactly_once() {
    let app = spawn_app().await;
    let user = app.seed_user().await;
    let body = json!({"refresh_token": user.refresh});
    let attempts = (0..20).map(|_| app.post_json("/api/v1/auth/refresh", &body));
    let statuses: Vec<u16> = futures_util::future::join_all(attempts)
        .await
        .into_iter()
        .map(|r| r.status().as_u16())
        .collect();
    let ok = statuses.iter().filter(|&&s| s == 200).count();
    eprintln!("20 concurrent refreshes: {ok} succeeded");
    assert_eq!(ok, 1, "{statuses:?}");
    assert!(
        statuses.iter().all(|&s| s == 200 || s == 401),
        "{statuses:?}"
    );
}
