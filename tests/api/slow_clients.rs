//! C5: what a slow or greedy client can hold. A request body has a deadline (408, connection
//! closed), an unread body does not keep its connection, and connections are capped per
//! client address and overall (503 at once).

use std::time::{Duration, Instant};

use serde_json::json;

use crate::helpers::{TestApp, spawn_app_with};
use crate::raw_http::{
    closed_within, connect_from, head, loopback, read_response, send, socket_addr,
};

/// A login request whose head declares `length` bytes of body.
fn login_head(length: usize) -> String {
    head(
        "POST",
        "/api/v1/auth/login",
        &[
            "Content-Type: application/json",
            &format!("Content-Length: {length}"),
        ],
    )
}

/// Asserts the documented 408 and that the server then closes the connection.
async fn expect_408_and_close(
    stream: &mut (impl tokio::io::AsyncRead + Unpin),
    within: Duration,
) -> Duration {
    let started = Instant::now();
    let response = read_response(stream, within)
        .await
        .expect("a response before the limit");
    let took = started.elapsed();
    assert_eq!(response.status, 408, "{response:?}");
    assert!(
        response
            .header("content-type")
            .unwrap_or_default()
            .starts_with("application/json")
    );
    assert_eq!(
        response.json()["detail"],
        "The request body was not received in time"
    );
    assert_eq!(response.header("connection"), Some("close"));
    assert!(
        closed_within(stream, Duration::from_secs(3)).await,
        "the connection stays open after the 408"
    );
    took
}

async fn app_with_deadlines(normal_ms: u64, chat_ms: u64) -> TestApp {
    spawn_app_with(|s| {
        s.body_read_timeout_ms = normal_ms;
        s.chat_body_read_timeout_ms = chat_ms;
    })
    .await
}

#[tokio::test]
async fn a_declared_body_that_stops_arriving_is_answered_408_and_its_connection_closed() {
    let app = app_with_deadlines(500, 500).await;
    let mut stream = connect_from(loopback(1), socket_addr(&app.address))
        .await
        .unwrap();
    assert!(send(&mut stream, login_head(100).as_bytes()).await);
    assert!(send(&mut stream, br#"{"email": "#).await);
    let took = expect_408_and_close(&mut stream, Duration::from_secs(5)).await;
    eprintln!("stalled declared body: 408 after {took:?} (deadline 500 ms)");
    assert!(took >= Duration::from_millis(450), "{took:?}");
}

#[tokio::test]
async fn a_trickling_chunked_body_is_answered_408_and_its_connection_closed() {
    let app = app_with_deadlines(500, 500).await;
    let mut stream = connect_from(loopback(1), socket_addr(&app.address))
        .await
        .unwrap();
    let head = head(
        "POST",
        "/api/v1/auth/login",
        &[
            "Content-Type: application/json",
            "Transfer-Encoding: chunked",
        ],
    );
    assert!(send(&mut stream, head.as_bytes()).await);
    let (mut reader, writer) = stream.into_split();
    let trickle = trickle(writer, b"1\r\n \r\n");
    let took = expect_408_and_close(&mut reader, Duration::from_secs(5)).await;
    eprintln!("trickled chunked body: 408 after {took:?} (deadline 500 ms)");
    assert!(took >= Duration::from_millis(450), "{took:?}");
    trickle.abort();
}

/// Sends `chunk` every 50 ms for as long as the server takes it.
fn trickle(
    mut writer: tokio::net::tcp::OwnedWriteHalf,
    chunk: &'static [u8],
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        while send(&mut writer, chunk).await {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    })
}

#[tokio::test]
async fn the_chat_route_has_its_own_deadline() {
    let app = app_with_deadlines(300, 3_000).await;
    let user = app.seed_user().await;
    let body = json!({"model": "m", "messages": [{"role": "user", "content": "hi"}]}).to_string();
    let (first, rest) = body.split_at(10);
    let chat = head(
        "POST",
        "/api/v1/chat/completions",
        &[
            "Content-Type: application/json",
            &format!("Authorization: Bearer {}", user.api_key),
            &format!("Content-Length: {}", body.len()),
        ],
    );
    let login = login_head(body.len());
    for (request, expect_timeout) in [(chat, false), (login, true)] {
        let mut stream = connect_from(loopback(1), socket_addr(&app.address))
            .await
            .unwrap();
        assert!(send(&mut stream, request.as_bytes()).await);
        assert!(send(&mut stream, first.as_bytes()).await);
        tokio::time::sleep(Duration::from_millis(800)).await;
        // The login's deadline has passed and its connection may be closed already.
        let _ = send(&mut stream, rest.as_bytes()).await;
        let response = read_response(&mut stream, Duration::from_secs(5))
            .await
            .expect("a response");
        if expect_timeout {
            assert_eq!(response.status, 408, "{response:?}");
        } else {
            // The body arrived within the chat deadline: the request went on (and found no
            // proxy-router configured).
            assert_ne!(response.status, 408, "{response:?}");
        }
    }
}

/// A handler that has no use for a body does not read it; actix would keep draining a
/// chunked one for as long as the client sends it.
#[tokio::test]
async fn an_unread_chunked_body_does_not_keep_its_connection() {
    let app = app_with_deadlines(500, 500).await;
    let mut stream = connect_from(loopback(1), socket_addr(&app.address))
        .await
        .unwrap();
    let head = head("GET", "/health", &["Transfer-Encoding: chunked"]);
    assert!(send(&mut stream, head.as_bytes()).await);
    let (mut reader, writer) = stream.into_split();
    let trickle = trickle(writer, b"1\r\nx\r\n");
    let response = read_response(&mut reader, Duration::from_secs(5))
        .await
        .expect("a response");
    assert_eq!(response.status, 200, "{response:?}");
    assert!(
        closed_within(&mut reader, Duration::from_secs(3)).await,
        "the connection is kept while the client trickles an unread body"
    );
    trickle.abort();
}

#[tokio::test]
async fn connections_over_the_per_client_cap_are_answered_503_at_once() {
    let app = spawn_app_with(|s| s.max_connections_per_client = 3).await;
    let server = socket_addr(&app.address);
    let mut held = Vec::new();
    for _ in 0..3 {
        let mut stream = connect_from(loopback(2), server).await.unwrap();
        assert_eq!(get_health(&mut stream).await, Some(200));
        held.push(stream);
    }
    let mut over = connect_from(loopback(2), server).await.unwrap();
    let started = Instant::now();
    let response = read_response(&mut over, Duration::from_secs(3))
        .await
        .expect("an answer without sending a request");
    let took = started.elapsed();
    eprintln!("connection over the per-client cap answered in {took:?}");
    assert_eq!(response.status, 503, "{response:?}");
    assert_eq!(
        response.json()["detail"],
        "Too many connections from this client address; retry shortly"
    );
    assert_eq!(response.header("retry-after"), Some("1"));
    assert!(took < Duration::from_secs(1), "{took:?}");
    assert!(closed_within(&mut over, Duration::from_secs(2)).await);

    // Another address is not affected, and a place given back can be taken again.
    let mut other = connect_from(loopback(3), server).await.unwrap();
    assert_eq!(get_health(&mut other).await, Some(200));
    drop(held.pop());
    tokio::time::sleep(Duration::from_millis(200)).await;
    let mut again = connect_from(loopback(2), server).await.unwrap();
    assert_eq!(get_health(&mut again).await, Some(200));
}

#[tokio::test]
async fn connections_over_the_overall_cap_are_answered_503_at_once() {
    let app = spawn_app_with(|s| s.max_connections = 4).await;
    let server = socket_addr(&app.address);
    let mut held = Vec::new();
    for last in 2..6 {
        let mut stream = connect_from(loopback(last), server).await.unwrap();
        assert_eq!(get_health(&mut stream).await, Some(200));
        held.push(stream);
    }
    let mut over = connect_from(loopback(6), server).await.unwrap();
    let response = read_response(&mut over, Duration::from_secs(3))
        .await
        .expect("an answer without sending a request");
    assert_eq!(response.status, 503, "{response:?}");
    assert_eq!(
        response.json()["detail"],
        "The server has too many open connections; retry shortly"
    );
    drop(held);
    tokio::time::sleep(Duration::from_millis(200)).await;
    let mut again = connect_from(loopback(6), server).await.unwrap();
    assert_eq!(get_health(&mut again).await, Some(200));
}

/// Behind a trusted proxy the proxy's connections are shared by its clients: each client
/// holds a place while one of its requests runs.
#[tokio::test]
async fn clients_behind_a_trusted_proxy_are_capped_per_forwarded_address() {
    let app = spawn_app_with(|s| {
        s.trusted_proxies = Some("127.0.0.1".to_owned());
        s.max_connections_per_client = 2;
        s.body_read_timeout_ms = 10_000;
    })
    .await;
    let server = socket_addr(&app.address);
    let forwarded = |client: &str| format!("X-Forwarded-For: {client}");
    let mut stalled = Vec::new();
    for _ in 0..2 {
        let mut stream = connect_from(loopback(1), server).await.unwrap();
        let request = head(
            "POST",
            "/api/v1/auth/login",
            &["Content-Length: 100", &forwarded("203.0.113.7")],
        );
        assert!(send(&mut stream, request.as_bytes()).await);
        stalled.push(stream);
    }
    tokio::time::sleep(Duration::from_millis(200)).await;
    for (client, expected) in [("203.0.113.7", 503), ("203.0.113.8", 200)] {
        let mut stream = connect_from(loopback(1), server).await.unwrap();
        let request = head("GET", "/health", &[&forwarded(client)]);
        assert!(send(&mut stream, request.as_bytes()).await);
        let response = read_response(&mut stream, Duration::from_secs(3))
            .await
            .expect("a response");
        assert_eq!(response.status, expected, "{client}: {response:?}");
    }
}

/// `GET /health` on an open connection; its status.
async fn get_health(stream: &mut tokio::net::TcpStream) -> Option<u16> {
    if !send(stream, head("GET", "/health", &[]).as_bytes()).await {
        return None;
    }
    read_response(stream, Duration::from_secs(3))
        .await
        .map(|r| r.status)
}
