//! A7: whatever the log level, no password, token, API key or wallet key is ever logged.

use std::time::Duration;

use reqwest::Method;
use serde_json::json;

use crate::helpers::{JWT_SECRET, MASTER_KEY_HEX, PASSWORD, PEPPER, seed_user_at, spawn_app};
use crate::log_capture;
use crate::market::set_automation_at;
use crate::process::GatewayProcess;

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

/// The real binary with `RUST_LOG=trace` for every crate (the HTTP stacks, the pool, the TLS
/// and JSON layers included), through a whole account's life and a marketplace chat: no
/// credential reaches its log, which is what an operator turning on TRACE would get.
#[tokio::test]
async fn the_real_binary_at_trace_for_every_crate_logs_no_secret() {
    use base64::Engine;

    let app = crate::market::spawn_market_app().await;
    let mut gateway = GatewayProcess::beside(&app, &[("RUST_LOG", "trace")]).await;
    let client = &app.client;
    let at = |path: &str| gateway.url(path);

    let user = seed_user_at(client, &gateway.address).await;
    set_automation_at(client, &gateway.address, &user.api_key, true).await;
    let rotated: serde_json::Value = client
        .post(at("/api/v1/auth/refresh"))
        .json(&json!({"refresh_token": user.refresh}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let wallet = format!("0x{}", "6e".repeat(32));
    let r = client
        .post(at("/api/v1/auth/private-key"))
        .bearer_auth(&user.access)
        .json(&json!({"private_key": wallet}))
        .send()
        .await
        .unwrap();
    assert!(r.status().is_success(), "{}", r.status());
    let chat = |body: serde_json::Value| {
        client
            .post(at("/api/v1/chat/completions"))
            .bearer_auth(&user.api_key)
            .json(&body)
            .send()
    };
    let ask = crate::market::ask("llama-3.3-70b", "hello");
    assert_eq!(chat(ask.clone()).await.unwrap().status(), 200);
    let mut streamed = ask.clone();
    streamed["stream"] = json!(true);
    crate::market::sse_events(chat(streamed).await.unwrap()).await;
    // Failures: a wrong password, a forged key, and an upstream that quotes credentials back.
    let r = client
        .post(at("/api/v1/auth/login"))
        .json(&json!({"email": user.email, "password": "wrong password!"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
    let r = client
        .get(at("/api/v1/automation/settings"))
        .bearer_auth(format!("{}x", &user.api_key))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
    app.sim.set_fault(morpheus_router_sim::Fault {
        route: morpheus_router_sim::FaultRoute::Chat,
        kind: morpheus_router_sim::FaultKind::Status {
            status: 500,
            body: r#"{"error":"bad header Authorization: Basic bW9ycGhldXM6c2ltLXBhc3N3b3Jk"}"#
                .into(),
            content_type: None,
        },
        times: Some(1),
    });
    assert_eq!(chat(ask).await.unwrap().status(), 502);

    gateway.signal("TERM");
    assert_eq!(gateway.wait_exit(Duration::from_secs(10)).await, Some(0));
    // The reader thread may still hold the last lines for a moment after the exit.
    tokio::time::sleep(Duration::from_millis(200)).await;
    let logs = gateway.drain_logs();
    let traced: std::collections::BTreeSet<String> = logs
        .iter()
        .filter_map(|line| serde_json::from_str::<serde_json::Value>(line).ok())
        .filter(|event| event["level"] == "TRACE")
        .filter_map(|event| {
            let target = event["target"].as_str()?;
            Some(target.split("::").next().unwrap_or(target).to_owned())
        })
        .collect();
    assert!(
        traced.len() >= 3,
        "TRACE is on for the dependencies too: {traced:?}"
    );
    let text = logs.join("\n");
    let basic = base64::engine::general_purpose::STANDARD.encode("morpheus:sim-password");
    let secrets = [
        ("password", PASSWORD.to_owned()),
        ("access token", user.access.clone()),
        ("refresh token", user.refresh.clone()),
        (
            "rotated refresh token",
            rotated["refresh_token"].as_str().unwrap().to_owned(),
        ),
        ("api key secret", user.api_key[10..].to_owned()),
        ("wallet key", wallet[2..].to_owned()),
        ("jwt secret", JWT_SECRET.to_owned()),
        ("pepper", PEPPER.to_owned()),
        ("master key", MASTER_KEY_HEX.to_owned()),
        ("proxy-router password", "sim-password".to_owned()),
        ("basic credentials", basic),
    ];
    for (name, secret) in secrets {
        assert!(!text.contains(&secret), "the {name} is in the logs");
    }
    eprintln!(
        "scanned {} lines ({} bytes) at TRACE from {traced:?}",
        logs.len(),
        text.len()
    );
}
