//! Shared by the integration tests: the router simulator, clients pointed at it, and a tiny
//! hand-written HTTP server for the few misbehaviours the simulator cannot produce.
#![allow(dead_code)]

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use morpheus_domain::ports::{ChatCall, ChatEvent, ChatReply, Endpoint, StreamFault};
use morpheus_domain::{ModelId, SessionDuration, SessionId, SessionTerms};
use morpheus_router_sim::{LLAMA_MODEL_ID, SimConfig, SimHandle, Simulator};
use morpheus_upstream::{ProxyRouterClient, ProxyRouterConfig};
use secrecy::SecretString;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

pub const USER: &str = "morpheus";
pub const PASSWORD: &str = "sim-password";

pub async fn sim() -> SimHandle {
    Simulator::start(SimConfig::default(), "127.0.0.1:0".parse().unwrap())
        .await
        .unwrap()
}

/// Short limits so failure tests finish quickly.
pub fn config(base: &str) -> ProxyRouterConfig {
    ProxyRouterConfig {
        base_url: base.to_owned(),
        user: Some(USER.to_owned()),
        password: Some(SecretString::from(PASSWORD)),
        connect_timeout: Duration::from_secs(1),
        first_byte_timeout: Duration::from_secs(5),
        idle_timeout: Duration::from_secs(5),
        request_timeout: Duration::from_secs(10),
        chat_timeout: Duration::from_secs(10),
        open_timeout: Duration::from_secs(10),
        open_recovery_window: Duration::from_secs(1),
        max_body_bytes: ProxyRouterConfig::MAX_BODY_BYTES,
        max_event_bytes: ProxyRouterConfig::MAX_EVENT_BYTES,
    }
}

pub fn client(base: &str) -> ProxyRouterClient {
    ProxyRouterClient::new(config(base)).unwrap()
}

pub fn client_with(base: &str, tweak: impl FnOnce(&mut ProxyRouterConfig)) -> ProxyRouterClient {
    let mut cfg = config(base);
    tweak(&mut cfg);
    ProxyRouterClient::new(cfg).unwrap()
}

pub fn llama() -> ModelId {
    ModelId::parse(LLAMA_MODEL_ID).unwrap()
}

pub fn terms() -> SessionTerms {
    SessionTerms {
        duration: SessionDuration::parse(600).unwrap(),
        direct_payment: false,
        failover: false,
    }
}

pub fn chat_call(session: &SessionId, stream: bool, text: &str) -> ChatCall {
    let body = serde_json::json!({
        "messages": [{"role": "user", "content": text}],
        "stream": stream,
    });
    ChatCall {
        endpoint: Endpoint::ChatCompletions,
        session: session.clone(),
        body: serde_json::to_vec(&body).unwrap().into(),
        upload: None,
        stream,
        request_id: Some("req-123".to_owned()),
    }
}

/// Every item of a stream reply.
pub async fn collect(reply: ChatReply) -> Vec<Result<ChatEvent, StreamFault>> {
    use futures_util::StreamExt as _;
    match reply {
        ChatReply::Stream(s) => s.collect().await,
        other => panic!("expected a stream, got {other:?}"),
    }
}

/// A port nothing listens on (bound, then released).
pub async fn refused_base() -> String {
    let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap();
    drop(l);
    format!("http://{addr}")
}

// ------------------------------------------------------------------ a tiny HTTP server

/// One request as the fake read it.
#[derive(Debug, Clone)]
pub struct Req {
    pub method: String,
    /// Path and query.
    pub target: String,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Req {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

/// Serves one request per connection with `handler`, which owns the socket (so it can stall,
/// reset or write anything). Returns the base URL.
pub async fn fake<F, Fut>(handler: F) -> String
where
    F: Fn(Req, TcpStream) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = ()> + Send + 'static,
{
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let handler = Arc::new(handler);
    tokio::spawn(async move {
        while let Ok((mut sock, _)) = listener.accept().await {
            let handler = Arc::clone(&handler);
            tokio::spawn(async move {
                if let Some(req) = read_request(&mut sock).await {
                    handler(req, sock).await;
                }
            });
        }
    });
    base
}

async fn read_request(sock: &mut TcpStream) -> Option<Req> {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    let head_end = loop {
        if let Some(pos) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            break pos + 4;
        }
        let n = sock.read(&mut chunk).await.ok()?;
        if n == 0 {
            return None;
        }
        buf.extend_from_slice(&chunk[..n]);
    };
    let head = String::from_utf8_lossy(&buf[..head_end]).into_owned();
    let mut lines = head.split("\r\n");
    let mut first = lines.next()?.split(' ');
    let method = first.next()?.to_owned();
    let target = first.next()?.to_owned();
    let headers: Vec<(String, String)> = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_owned(), v.trim().to_owned()))
        .collect();
    let len: usize = headers
        .iter()
        .find(|(k, _)| k.eq_ignore_ascii_case("content-length"))
        .and_then(|(_, v)| v.parse().ok())
        .unwrap_or(0);
    let mut body = buf[head_end..].to_vec();
    while body.len() < len {
        let n = sock.read(&mut chunk).await.ok()?;
        if n == 0 {
            break;
        }
        body.extend_from_slice(&chunk[..n]);
    }
    Some(Req {
        method,
        target,
        headers,
        body,
    })
}

/// Writes a whole response and closes the connection.
pub async fn respond(mut sock: TcpStream, status: u16, content_type: &str, body: &[u8]) {
    let head = format!(
        "HTTP/1.1 {status} X\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    );
    let _ = sock.write_all(head.as_bytes()).await;
    let _ = sock.write_all(body).await;
    let _ = sock.shutdown().await;
}

/// Writes the head of a chunked response; follow with [`chunk`].
pub async fn chunked_head(sock: &mut TcpStream, content_type: &str) {
    let head = format!(
        "HTTP/1.1 200 OK\r\nContent-Type: {content_type}\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n"
    );
    let _ = sock.write_all(head.as_bytes()).await;
}

/// Writes one chunk of a chunked body; returns false once the peer is gone.
pub async fn chunk(sock: &mut TcpStream, data: &[u8]) -> bool {
    let mut out = format!("{:x}\r\n", data.len()).into_bytes();
    out.extend_from_slice(data);
    out.extend_from_slice(b"\r\n");
    sock.write_all(&out).await.is_ok() && sock.flush().await.is_ok()
}

/// Drops the connection with a TCP reset.
pub fn reset(sock: TcpStream) {
    let _ = sock.set_zero_linger();
    drop(sock);
}

/// Resident memory of this process in KiB (Linux).
pub fn rss_kib() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmRSS:"))
                .and_then(|l| l.split_whitespace().nth(1).map(str::to_owned))
        })
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}
