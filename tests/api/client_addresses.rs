//! Who a client is, for every per-client limit: the peer, or behind a configured trusted proxy
//! the rightmost forwarded address that is not a proxy; counted per /64 for IPv6 and per
//! configurable prefix for IPv4.

use serde_json::json;

use crate::helpers::{PASSWORD, TestApp, client_from, spawn_app_with, unique_email};

async fn register_from(app: &TestApp, client: &reqwest::Client, forwarded: Option<&str>) -> u16 {
    let mut request = client
        .post(app.url("/api/v1/auth/register"))
        .json(&json!({"email": unique_email(), "password": PASSWORD}));
    if let Some(chain) = forwarded {
        request = request.header("x-forwarded-for", chain);
    }
    request.send().await.expect("request").status().as_u16()
}

/// A3: a client that is not a trusted proxy cannot name another client with
/// `X-Forwarded-For`, so rotating it resets nothing.
#[tokio::test]
async fn forwarded_for_from_an_untrusted_peer_is_ignored() {
    let app = spawn_app_with(|s| {
        s.trusted_proxies = Some("10.0.0.0/8".to_owned());
        s.registrations_per_client = 3;
    })
    .await;
    let mut statuses = Vec::new();
    for i in 0..5 {
        let forged = format!("198.51.100.{i}");
        statuses.push(register_from(&app, &app.client, Some(&forged)).await);
    }
    assert_eq!(statuses, [201, 201, 201, 429, 429]);
}

/// Five addresses of one IPv6 /64 used to get five allowances; the client behind a trusted
/// proxy is its rightmost untrusted forwarded address, whatever it put to the left of it.
#[tokio::test]
async fn behind_a_trusted_proxy_ipv6_clients_are_counted_per_64() {
    let app = spawn_app_with(|s| {
        s.trusted_proxies = Some("127.0.0.1, 192.0.2.0/24".to_owned());
        s.registrations_per_client = 3;
    })
    .await;
    let mut statuses = Vec::new();
    for i in 1..=5 {
        // A forged first entry, the client, then another proxy of ours.
        let chain = format!("203.0.113.{i}, 2001:db8:1:2::{i}, 192.0.2.9");
        statuses.push(register_from(&app, &app.client, Some(&chain)).await);
    }
    assert_eq!(statuses, [201, 201, 201, 429, 429]);
    // Another /64 is another client; so is the proxy itself, and so is another IPv4 address.
    assert_eq!(
        register_from(&app, &app.client, Some("2001:db8:1:3::1")).await,
        201
    );
    assert_eq!(register_from(&app, &app.client, None).await, 201);
    assert_eq!(
        register_from(&app, &app.client, Some("203.0.113.1")).await,
        201
    );
}

#[tokio::test]
async fn ipv4_clients_are_counted_per_configured_prefix() {
    let app = spawn_app_with(|s| {
        s.client_ipv4_prefix = 24;
        s.registrations_per_client = 2;
    })
    .await;
    let mut statuses = Vec::new();
    for last in 2..5 {
        statuses.push(register_from(&app, &client_from(last), None).await);
    }
    assert_eq!(statuses, [201, 201, 429]);
}

/// Logins use the same notion: behind the proxy, a forwarded client that exhausted its
/// allowance on an account is stopped, another forwarded client is not.
#[tokio::test]
async fn logins_are_throttled_per_forwarded_client() {
    let app = spawn_app_with(|s| {
        s.trusted_proxies = Some("127.0.0.1".to_owned());
        s.login_attempts_per_account_client = 2;
    })
    .await;
    let email = unique_email();
    app.register(&email, PASSWORD).await;
    let login = |forwarded: &'static str, password: &'static str| {
        app.client
            .post(app.url("/api/v1/auth/login"))
            .header("x-forwarded-for", forwarded)
            .json(&json!({"email": email, "password": password}))
            .send()
    };
    for _ in 0..2 {
        assert_eq!(
            login("2001:db8::1", "wrong password!")
                .await
                .unwrap()
                .status(),
            401
        );
    }
    assert_eq!(login("2001:db8::2", PASSWORD).await.unwrap().status(), 429);
    assert_eq!(
        login("2001:db8:0:1::2", PASSWORD).await.unwrap().status(),
        200
    );
}
