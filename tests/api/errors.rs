//! Malformed input gets a JSON error in the documented shape (C1, C2).

use std::time::Duration;

use reqwest::Method;
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::helpers::{PASSWORD, TestApp, spawn_app, unique_email};

async fn raw_post(
    app: &TestApp,
    path: &str,
    content_type: Option<&str>,
    body: Vec<u8>,
) -> reqwest::Response {
    let mut req = app.client.post(app.url(path)).body(body);
    if let Some(ct) = content_type {
        req = req.header("content-type", ct);
    }
    req.send().await.unwrap()
}

async fn assert_422(r: reqwest::Response, kind: &str) -> Value {
    assert_eq!(r.status(), 422);
    assert!(
        r.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("application/json")
    );
    let body: Value = r.json().await.unwrap();
    let item = &body["detail"][0];
    assert_eq!(item["type"], kind, "{body}");
    assert!(item["loc"].is_array() && item["msg"].is_string(), "{body}");
    body
}

#[tokio::test]
async fn malformed_json_bodies_are_422_json_invalid() {
    let app = spawn_app().await;
    let path = "/api/v1/auth/register";
    let deep = "[".repeat(10_000);
    for body in [
        b"{".to_vec(),
        b"{\"email\": }".to_vec(),
        deep.into_bytes(),
        vec![0xff, 0xfe, b'{'],
        b"{\"email\":\"a\0b\"".to_vec(),
    ] {
        let r = raw_post(&app, path, Some("application/json"), body).await;
        assert_422(r, "json_invalid").await;
    }
}

#[tokio::test]
async fn wrong_shapes_are_located_422s() {
    let app = spawn_app().await;
    let path = "/api/v1/auth/register";
    let r = app.post_json(path, &json!({"password": PASSWORD})).await;
    let body = assert_422(r, "missing").await;
    assert_eq!(body["detail"][0]["loc"], json!(["body", "email"]));
    let r = app
        .post_json(path, &json!({"email": 5, "password": PASSWORD}))
        .await;
    assert_422(r, "string_type").await;
    let r = app.post_json(path, &json!([1, 2])).await;
    let body = assert_422(r, "model_attributes_type").await;
    assert!(
        !body.to_string().contains("UserCreate"),
        "leaks a type name: {body}"
    );
    let r = app
        .post_json(path, &json!({"email": "not-an-email", "password": "short"}))
        .await;
    let body: Value = r.json().await.unwrap();
    assert_eq!(
        body["detail"].as_array().unwrap().len(),
        2,
        "all problems at once: {body}"
    );
    let dup = format!(
        r#"{{"email":"{}","email":"{}","password":"{PASSWORD}"}}"#,
        unique_email(),
        unique_email()
    );
    let r = raw_post(&app, path, Some("application/json"), dup.into_bytes()).await;
    assert_eq!(r.status(), 422);
    let r = raw_post(&app, path, Some("application/json"), Vec::new()).await;
    assert_422(r, "missing").await;
    let r = raw_post(&app, path, None, b"{\"email\":1}".to_vec()).await;
    assert_422(r, "string_type").await;
}

#[tokio::test]
async fn non_json_content_types_are_415() {
    let app = spawn_app().await;
    for ct in [
        "text/plain",
        "application/x-www-form-urlencoded",
        "multipart/form-data; boundary=x",
    ] {
        let r = raw_post(&app, "/api/v1/auth/login", Some(ct), b"{}".to_vec()).await;
        assert_eq!(r.status(), 415, "{ct}");
        assert!(r.json::<Value>().await.unwrap()["detail"].is_string());
    }
    let r = raw_post(
        &app,
        "/api/v1/auth/login",
        Some("application/json; charset=utf-8"),
        b"{}".to_vec(),
    )
    .await;
    assert_eq!(r.status(), 422);
}

/// C1: the body cap (1 MiB) holds for declared and for chunked bodies.
#[tokio::test]
async fn bodies_over_the_limit_are_413() {
    let app = spawn_app().await;
    let limit = 1024 * 1024;
    let user = app.seed_user().await;
    // Exactly at the limit: read and judged on its content (the name is too long → 422).
    let filler = limit - r#"{"name":""}"#.len();
    let at_limit = format!(r#"{{"name":"{}"}}"#, "n".repeat(filler));
    assert_eq!(at_limit.len(), limit);
    let r = app
        .client
        .post(app.url("/api/v1/auth/keys"))
        .bearer_auth(&user.access)
        .header("content-type", "application/json")
        .body(at_limit.clone())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 422);
    let over = format!(r#"{{"name":"{}"}}"#, "n".repeat(filler + 1));
    let r = app
        .client
        .post(app.url("/api/v1/auth/keys"))
        .bearer_auth(&user.access)
        .header("content-type", "application/json")
        .body(over.clone())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 413);
    assert!(r.json::<Value>().await.unwrap()["detail"].is_string());

    // Chunked, no Content-Length.
    let chunks: Vec<Result<Vec<u8>, std::io::Error>> = over
        .into_bytes()
        .chunks(64 * 1024)
        .map(|c| Ok(c.to_vec()))
        .collect();
    let r = app
        .client
        .post(app.url("/api/v1/auth/register"))
        .header("content-type", "application/json")
        .body(reqwest::Body::wrap_stream(futures_util::stream::iter(
            chunks,
        )))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 413);
}

/// A declared Content-Length over the limit is refused before the body is sent.
#[tokio::test]
async fn an_oversized_declared_length_is_refused_without_reading() {
    let app = spawn_app().await;
    let addr = app.address.trim_start_matches("http://").to_owned();
    let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
    let head = "POST /api/v1/auth/register HTTP/1.1\r\nHost: x\r\ncontent-type: application/json\r\ncontent-length: 104857600\r\n\r\n";
    s.write_all(head.as_bytes()).await.unwrap();
    let mut buf = vec![0u8; 4096];
    let n = tokio::time::timeout(Duration::from_secs(5), s.read(&mut buf))
        .await
        .expect("answered without waiting for 100 MiB")
        .unwrap();
    let text = String::from_utf8_lossy(&buf[..n]);
    assert!(text.starts_with("HTTP/1.1 413"), "{text}");
}

#[tokio::test]
async fn every_error_is_json_never_text() {
    let app = spawn_app().await;
    let user = app.seed_user().await;
    let cases = [
        app.client.get(app.url("/nope")).send().await.unwrap(),
        app.client
            .patch(app.url("/api/v1/auth/keys"))
            .send()
            .await
            .unwrap(),
        app.authed(
            Method::GET,
            "/api/v1/auth/delegation?limit=x",
            &user.access,
            None,
        )
        .await,
        app.delete("/api/v1/auth/keys/x", &user.access).await,
        app.client
            .get(app.url("/api/v1/auth/me"))
            .send()
            .await
            .unwrap(),
    ];
    for r in cases {
        let status = r.status();
        let ct = r.headers()["content-type"].to_str().unwrap().to_owned();
        assert!(ct.starts_with("application/json"), "{status}: {ct}");
        let body: Value = r.json().await.unwrap();
        let text = body.to_string();
        for leak in ["serde", "diesel", "SELECT", "i64", "struct "] {
            assert!(!text.contains(leak), "{status} leaks {leak}: {text}");
        }
    }
}
