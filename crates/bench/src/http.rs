//! A lean keep-alive HTTP/1.1 client on hyper's connection API: one TCP connection per
//! [`Conn`], no pool, no redirects, no decompression. Requests are built before the clock
//! starts; a response body is drained frame by frame, never collected, unless asked.

use std::io::{Read as _, Write as _};
use std::net::SocketAddr;
use std::time::Duration;

use anyhow::{Context as _, Result, anyhow, bail};
use bytes::Bytes;
use http_body_util::{BodyExt as _, Full};
use hyper::body::Incoming;
use hyper::client::conn::http1::SendRequest;
use hyper::header::{CONTENT_TYPE, HOST, HeaderMap, HeaderName, HeaderValue};
use hyper::{Method, Request, Response, StatusCode, Uri};
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;
use tokio::task::JoinHandle;

pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// Every set-up call and every non-streaming request.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(15);

/// One keep-alive connection.
pub struct Conn {
    tx: SendRequest<Full<Bytes>>,
    driver: JoinHandle<()>,
}

impl Conn {
    pub async fn open(addr: SocketAddr) -> Result<Self> {
        let stream = tokio::time::timeout(CONNECT_TIMEOUT, TcpStream::connect(addr))
            .await
            .map_err(|_| anyhow!("connecting to {addr} timed out"))?
            .with_context(|| format!("connecting to {addr}"))?;
        stream.set_nodelay(true)?;
        let (tx, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
            .await
            .with_context(|| format!("HTTP/1 handshake with {addr}"))?;
        let driver = tokio::spawn(async move {
            let _ = conn.await;
        });
        Ok(Self { tx, driver })
    }

    /// `n` keep-alive connections, all opened before any clock starts.
    pub async fn open_many(addr: SocketAddr, n: usize) -> Result<Vec<Self>> {
        let mut conns = Vec::with_capacity(n);
        for _ in 0..n {
            conns.push(Self::open(addr).await?);
        }
        Ok(conns)
    }

    /// The server closed the connection (or it broke).
    pub fn is_closed(&self) -> bool {
        self.tx.is_closed()
    }

    /// Sends a request and returns the response head; the body is still to be read.
    pub async fn send(&mut self, req: Request<Full<Bytes>>) -> Result<Response<Incoming>> {
        self.tx.ready().await.context("connection closed")?;
        Ok(self.tx.send_request(req).await?)
    }

    /// A whole exchange within [`REQUEST_TIMEOUT`]: `Ok` only for a 200 whose body arrived.
    pub async fn exchange(&mut self, req: Request<Full<Bytes>>) -> Result<()> {
        tokio::time::timeout(REQUEST_TIMEOUT, async {
            let resp = self.send(req).await?;
            let status = resp.status();
            drain(resp.into_body()).await?;
            if status != StatusCode::OK {
                bail!("status {status}");
            }
            Ok(())
        })
        .await
        .map_err(|_| anyhow!("no answer within {REQUEST_TIMEOUT:?}"))?
    }
}

impl Drop for Conn {
    fn drop(&mut self) {
        self.driver.abort();
    }
}

/// Reads a body to its end without keeping it.
pub async fn drain(mut body: Incoming) -> Result<usize> {
    let mut n = 0;
    while let Some(frame) = body.frame().await {
        if let Some(data) = frame?.data_ref() {
            n += data.len();
        }
    }
    Ok(n)
}

/// Where a lane's requests go: a fixed `POST` with fixed headers.
#[derive(Clone)]
pub struct Target {
    pub addr: SocketAddr,
    uri: Uri,
    headers: HeaderMap,
}

impl Target {
    pub fn new(addr: SocketAddr, path: &str, headers: &[(&'static str, String)]) -> Result<Self> {
        let mut map = HeaderMap::new();
        map.insert(HOST, HeaderValue::from_str(&addr.to_string())?);
        map.insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
        for (name, value) in headers {
            map.insert(
                HeaderName::from_static(name),
                HeaderValue::from_str(value).with_context(|| format!("header {name}"))?,
            );
        }
        Ok(Self {
            addr,
            uri: path.parse()?,
            headers: map,
        })
    }

    /// A ready-to-send request (build it before starting the clock).
    pub fn request(&self, body: &Bytes) -> Request<Full<Bytes>> {
        let mut req = Request::new(Full::new(body.clone()));
        *req.method_mut() = Method::POST;
        *req.uri_mut() = self.uri.clone();
        *req.headers_mut() = self.headers.clone();
        req
    }
}

/// A request with an optional JSON body, ready to send.
pub fn request(
    addr: SocketAddr,
    method: Method,
    path: &str,
    headers: &[(&'static str, String)],
    body: Option<&serde_json::Value>,
) -> Result<Request<Full<Bytes>>> {
    let mut req = Request::new(Full::new(
        body.map(|b| Bytes::from(b.to_string())).unwrap_or_default(),
    ));
    *req.method_mut() = method;
    *req.uri_mut() = path.parse()?;
    let h = req.headers_mut();
    h.insert(HOST, HeaderValue::from_str(&addr.to_string())?);
    if body.is_some() {
        h.insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    }
    for (name, value) in headers {
        h.insert(HeaderName::from_static(name), HeaderValue::from_str(value)?);
    }
    Ok(req)
}

/// A one-off call on a fresh connection (set-up only), its status and whole body.
pub async fn call(
    addr: SocketAddr,
    method: Method,
    path: &str,
    headers: &[(&'static str, String)],
    body: Option<&serde_json::Value>,
) -> Result<(StatusCode, Bytes)> {
    let what = format!("{method} {path}");
    tokio::time::timeout(REQUEST_TIMEOUT, async {
        let mut conn = Conn::open(addr).await?;
        let req = request(addr, method, path, headers, body)?;
        let resp = conn.send(req).await?;
        let status = resp.status();
        let bytes = resp.into_body().collect().await?.to_bytes();
        Ok::<_, anyhow::Error>((status, bytes))
    })
    .await
    .map_err(|_| anyhow!("{what}: no answer within {REQUEST_TIMEOUT:?}"))?
    .with_context(|| what)
}

/// A blocking `GET path` on a fresh connection: true for a 200. For start-up polling, where
/// a refused connection must cost next to nothing.
pub fn probe_200(addr: SocketAddr, path: &str) -> bool {
    let Ok(mut s) = std::net::TcpStream::connect_timeout(&addr, Duration::from_millis(200)) else {
        return false;
    };
    let _ = s.set_nodelay(true);
    let _ = s.set_read_timeout(Some(Duration::from_secs(2)));
    let req = format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n");
    if s.write_all(req.as_bytes()).is_err() {
        return false;
    }
    let mut head = [0u8; 12];
    let mut got = 0;
    while got < head.len() {
        match s.read(&mut head[got..]) {
            Ok(0) | Err(_) => return false,
            Ok(n) => got += n,
        }
    }
    &head == b"HTTP/1.1 200"
}
