//! A7: whatever the log level, no password, token, API key or wallet key is ever logged.

use reqwest::Method;
use serde_json::json;

use crate::helpers::{JWT_SECRET, MASTER_KEY_HEX, PASSWORD, PEPPER, spawn_app};
use crate::log_capture;

#[tokio::test]
async fn secrets_never_reach_the_logs_even_at_trace_level() {
    let app = spawn_app().await;
    let user = app.seed_user().await;
    let wallet = format!("0x{}", "5f".repeat(32));
    app.authed(
        Method::POST,
        "/api/v1/auth/private-key",
        &user.access,
        Some(&json!({"private_key": wallet})),
    )
    .await;
    let pair: serde_json::Value = app
        .post_json(
            "/api/v1/auth/refresh",
            &json!({"refresh_token": user.refresh}),
        )
        .await
        .json()
        .await
        .unwrap();
    // Failures log too: a wrong password and a forged key.
    app.login(&user.email, "wrong password!").await;
    app.client
        .get(app.url("/api/v1/automation/settings"))
        .bearer_auth(format!("{}x", &user.api_key))
        .send()
        .await
        .unwrap();
    app.client
        .get(app.url("/api/v1/automation/settings"))
        .bearer_auth(&user.api_key)
        .send()
        .await
        .unwrap();

    let logs = log_capture::captured();
    assert!(
        logs.len() > 1000,
        "the capture works ({} bytes)",
        logs.len()
    );
    let secrets = [
        ("password", PASSWORD.to_owned()),
        ("access token", user.access.clone()),
        ("refresh token", user.refresh.clone()),
        (
            "rotated refresh token",
            pair["refresh_token"].as_str().unwrap().to_owned(),
        ),
        ("api key secret", user.api_key[10..].to_owned()),
        ("wallet key", wallet[2..].to_owned()),
        ("jwt secret", JWT_SECRET.to_owned()),
        ("pepper", PEPPER.to_owned()),
        ("master key", MASTER_KEY_HEX.to_owned()),
    ];
    for (name, secret) in secrets {
        assert!(!logs.contains(&secret), "the {name} is in the logs");
    }
    eprintln!(
        "scanned {} bytes, {} lines of logs",
        logs.len(),
        logs.lines().count()
    );
}

#[tokio::test]
async fn marketplace_traffic_logs_no_credentials() {
    use base64::Engine;

    let app = crate::market::spawn_market_app().await;
    let user = app.seed_automated_user().await;
    let ask = crate::market::ask("llama-3.3-70b", "hello");
    assert_eq!(app.chat(&user.api_key, &ask).await.status(), 200);
    let mut streamed = ask.clone();
    streamed["stream"] = json!(true);
    crate::market::sse_events(app.chat(&user.api_key, &streamed).await).await;
    // Failures log the upstream's answer: make it one that quotes credentials back.
    app.sim.set_fault(morpheus_router_sim::Fault {
        route: morpheus_router_sim::FaultRoute::Chat,
        kind: morpheus_router_sim::FaultKind::Status {
            status: 500,
            body: r#"{"error":"bad header Authorization: Basic bW9ycGhldXM6c2ltLXBhc3N3b3Jk from http://10.1.2.3:8082"}"#.into(),
            content_type: None,
        },
        times: Some(1),
    });
    app.chat(&user.api_key, &ask).await;

    let logs = log_capture::captured();
    let basic = base64::engine::general_purpose::STANDARD.encode("morpheus:sim-password");
    for (name, secret) in [
        ("proxy-router password", "sim-password".to_owned()),
        ("basic credentials", basic),
        ("api key secret", user.api_key[10..].to_owned()),
    ] {
        assert!(!logs.contains(&secret), "the {name} is in the logs");
    }
}
