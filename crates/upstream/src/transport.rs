//! The HTTP plumbing shared by every call: one pooled client, bounded waits, capped bodies.

use std::cell::RefCell;
use std::sync::Once;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use morpheus_domain::ports::{MarketplaceError, TimeoutPhase};
use reqwest::header::{CONTENT_TYPE, HeaderMap};
use reqwest::{RequestBuilder, Response};
use tokio::time::{Instant, timeout, timeout_at};

use crate::errors::{self, Failure};

/// An error body is only read for its message; more than this is never needed.
const MAX_ERROR_BODY: usize = 64 * 1024;

/// reqwest is built with `rustls-no-provider`, so a crypto provider must be installed before
/// the first client is built, or `build()` panics. Installing fails harmlessly when another
/// part of the process already did it, hence the ignored result; `Once` keeps it to one try.
pub(crate) fn ensure_crypto_provider() {
    static INSTALL: Once = Once::new();
    INSTALL.call_once(|| {
        let _ = rustls::crypto::ring::default_provider().install_default();
    });
}

/// A client for one upstream: keep-alive pool, no redirects, no proxy from the environment.
pub(crate) fn build_client(connect_timeout: Duration) -> anyhow::Result<reqwest::Client> {
    ensure_crypto_provider();
    let client = reqwest::Client::builder()
        .connect_timeout(connect_timeout)
        .pool_idle_timeout(Duration::from_secs(90))
        .pool_max_idle_per_host(1024)
        .tcp_nodelay(true)
        // A redirect would re-send our Basic credentials to wherever it points.
        .redirect(reqwest::redirect::Policy::none())
        // The proxy-router is reached directly; an HTTP(S)_PROXY meant for the internet must
        // not capture it.
        .no_proxy()
        .build()?;
    Ok(client)
}

/// A client for one upstream, one connection pool per calling thread.
///
/// A pooled connection is driven by a task on the runtime that opened it. With one shared
/// pool, a connection opened by a background task (the model refresh, on the main runtime)
/// and then reused by an HTTP worker (a runtime of its own) makes every request on it hop
/// threads twice: two wake-ups, four context switches, measured at about a third of the
/// gateway's time per chat request. Each thread asking for the client gets its own pool, so
/// a worker's requests run on connections its own runtime drives.
pub(crate) struct ClientPerThread {
    /// Tells this upstream's clients apart from those of other upstreams in thread storage.
    id: u64,
    /// Built at construction (so configuration errors surface there) and used by the
    /// constructing thread.
    first: reqwest::Client,
    connect_timeout: Duration,
}

/// Clients kept per thread at most; beyond it the oldest is forgotten (tests build hundreds
/// of upstreams, a process one or two).
const CLIENTS_PER_THREAD: usize = 16;

thread_local! {
    static CLIENTS: RefCell<Vec<(u64, reqwest::Client)>> = const { RefCell::new(Vec::new()) };
}

impl ClientPerThread {
    pub(crate) fn new(connect_timeout: Duration) -> anyhow::Result<Self> {
        static NEXT_ID: AtomicU64 = AtomicU64::new(0);
        let first = build_client(connect_timeout)?;
        let id = NEXT_ID.fetch_add(1, Ordering::Relaxed);
        CLIENTS.with_borrow_mut(|clients| clients.push((id, first.clone())));
        Ok(Self {
            id,
            first,
            connect_timeout,
        })
    }

    /// This thread's client (a cheap handle on its pool).
    pub(crate) fn get(&self) -> reqwest::Client {
        CLIENTS.with_borrow_mut(|clients| {
            if let Some((_, client)) = clients.iter().find(|(id, _)| *id == self.id) {
                return client.clone();
            }
            // The settings were accepted once already; should a build still fail, the first
            // client serves (correct, only without the thread's own pool).
            let client = build_client(self.connect_timeout).unwrap_or_else(|_| self.first.clone());
            if clients.len() >= CLIENTS_PER_THREAD {
                clients.remove(0);
            }
            clients.push((self.id, client.clone()));
            client
        })
    }
}

/// The waits and caps of one exchange.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Limits {
    pub first_byte: Duration,
    pub idle: Duration,
    pub total: Duration,
    pub max_body: usize,
}

/// A successful (2xx) answer read in full.
#[derive(Debug)]
pub(crate) struct Answer {
    pub headers: HeaderMap,
    pub body: Bytes,
}

/// The most response-header bytes accepted. hyper reads heads of up to ~400 KiB and reqwest
/// can only cap their number; a proxy-router never needs more than a few hundred bytes.
const MAX_HEADER_BYTES: usize = 16 * 1024;

fn header_bytes(headers: &HeaderMap) -> usize {
    headers
        .iter()
        .map(|(name, value)| name.as_str().len() + value.len() + 4)
        .sum()
}

/// Sends the request and waits at most `first_byte` for the response head.
pub(crate) async fn send(rb: RequestBuilder, first_byte: Duration) -> Result<Response, Failure> {
    match timeout(first_byte, rb.send()).await {
        Ok(Ok(resp)) if header_bytes(resp.headers()) > MAX_HEADER_BYTES => Err(Failure::ambiguous(
            MarketplaceError::InvalidResponse("the response headers are too large".to_owned()),
        )),
        Ok(Ok(resp)) => Ok(resp),
        Ok(Err(e)) => Err(errors::before_head(&e)),
        Err(_) => Err(Failure::ambiguous(MarketplaceError::Timeout(
            TimeoutPhase::FirstByte,
        ))),
    }
}

/// One whole non-streaming exchange: head, status check, capped body within `total`.
pub(crate) async fn exchange(rb: RequestBuilder, limits: Limits) -> Result<Answer, Failure> {
    let deadline = Instant::now() + limits.total;
    let mut resp = send(rb, limits.first_byte.min(limits.total)).await?;
    let status = resp.status();
    if !status.is_success() {
        return Err(error_answer(resp, deadline).await);
    }
    let body = match timeout_at(
        deadline,
        read_capped(&mut resp, limits.max_body, limits.idle),
    )
    .await
    {
        Ok(Ok(body)) => body,
        Ok(Err(f)) => return Err(f),
        Err(_) => {
            return Err(Failure::ambiguous(MarketplaceError::Timeout(
                TimeoutPhase::Total,
            )));
        }
    };
    Ok(Answer {
        headers: resp.headers().clone(),
        body,
    })
}

/// Maps a non-2xx response, reading at most a small prefix of its body for the message.
pub(crate) async fn error_answer(mut resp: Response, deadline: Instant) -> Failure {
    let status = resp.status();
    let headers = resp.headers().clone();
    let mut body = BytesMut::new();
    if !status.is_redirection() {
        // Best effort: a body that breaks off or stalls still yields the status.
        let _ = timeout_at(deadline, async {
            while body.len() < MAX_ERROR_BODY {
                match resp.chunk().await {
                    Ok(Some(chunk)) => body.extend_from_slice(&chunk),
                    _ => break,
                }
            }
        })
        .await;
        body.truncate(MAX_ERROR_BODY);
    }
    errors::from_status(status, &headers, &body)
}

/// Reads a 2xx body, refusing it as soon as it is longer than `max` (never buffering more) and
/// failing when the upstream goes quiet for longer than `idle`. Any failure here is ambiguous:
/// the upstream said yes before the body broke.
pub(crate) async fn read_capped(
    resp: &mut Response,
    max: usize,
    idle: Duration,
) -> Result<Bytes, Failure> {
    let too_big = || {
        Failure::ambiguous(MarketplaceError::InvalidResponse(format!(
            "the answer is larger than {max} bytes"
        )))
    };
    if resp.content_length().is_some_and(|n| n > max as u64) {
        return Err(too_big());
    }
    let mut body = BytesMut::with_capacity(resp.content_length().map_or(8 * 1024, |n| n as usize));
    loop {
        match timeout(idle, resp.chunk()).await {
            Ok(Ok(Some(chunk))) => {
                if body.len() + chunk.len() > max {
                    return Err(too_big());
                }
                body.extend_from_slice(&chunk);
            }
            Ok(Ok(None)) => return Ok(body.freeze()),
            Ok(Err(e)) => {
                return Err(Failure::ambiguous(MarketplaceError::InvalidResponse(
                    format!("the answer broke off: {}", errors::describe(&e)),
                )));
            }
            Err(_) => {
                return Err(Failure::ambiguous(MarketplaceError::Timeout(
                    TimeoutPhase::Idle,
                )));
            }
        }
    }
}

/// Whether the answer claims to be JSON. A missing `Content-Type` is given the benefit of the
/// doubt (the body is parsed anyway); anything else is refused.
pub(crate) fn is_json(headers: &HeaderMap) -> bool {
    match headers.get(CONTENT_TYPE).map(|v| v.to_str()) {
        None => true,
        Some(Ok(ct)) => {
            let mime = ct
                .split(';')
                .next()
                .unwrap_or("")
                .trim()
                .to_ascii_lowercase();
            mime == "application/json" || mime.ends_with("+json")
        }
        Some(Err(_)) => false,
    }
}

pub(crate) fn is_event_stream(headers: &HeaderMap) -> bool {
    headers
        .get(CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .map(|ct| {
            ct.split(';')
                .next()
                .unwrap_or("")
                .trim()
                .eq_ignore_ascii_case("text/event-stream")
        })
        .unwrap_or(false)
}

/// Requires a JSON content type on a 2xx answer.
pub(crate) fn require_json(answer: &Answer) -> Result<(), Failure> {
    if is_json(&answer.headers) {
        Ok(())
    } else {
        Err(Failure::ambiguous(MarketplaceError::InvalidResponse(
            "the answer is not JSON".to_owned(),
        )))
    }
}

/// An idempotent read: sent again (at most [`READ_RETRIES`](crate::retry::READ_RETRIES) times,
/// after a short jittered pause) when the failure says the upstream was briefly unavailable.
/// `build` makes a fresh request for each attempt.
pub(crate) async fn read_with_retries(
    build: impl Fn() -> RequestBuilder,
    limits: Limits,
    want_json: bool,
) -> Result<Answer, Failure> {
    use crate::retry::{READ_RETRIES, backoff, read_is_retryable};
    let mut attempt = 0;
    loop {
        let outcome = match exchange(build(), limits).await {
            Ok(answer) if want_json => require_json(&answer).map(|()| answer),
            other => other,
        };
        match outcome {
            Err(f) if attempt < READ_RETRIES && read_is_retryable(&f) => {
                attempt += 1;
                let pause = backoff(attempt, &f);
                tracing::debug!(error = %f.error, attempt, ?pause, "retrying a proxy-router read");
                tokio::time::sleep(pause).await;
            }
            other => return other,
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::sync::atomic::AtomicUsize;

    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    use super::*;

    /// A keep-alive HTTP/1.1 server on its own thread answering every request with an empty
    /// 200; counts the connections it accepts.
    fn counting_server() -> (String, Arc<AtomicUsize>) {
        let accepted = Arc::new(AtomicUsize::new(0));
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        listener.set_nonblocking(true).unwrap();
        let url = format!("http://{}/", listener.local_addr().unwrap());
        let counter = Arc::clone(&accepted);
        std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            runtime.block_on(async move {
                let listener = tokio::net::TcpListener::from_std(listener).unwrap();
                loop {
                    let (mut socket, _) = listener.accept().await.unwrap();
                    counter.fetch_add(1, Ordering::SeqCst);
                    tokio::spawn(async move {
                        let mut buf = [0u8; 4096];
                        let mut head = Vec::new();
                        while let Ok(n) = socket.read(&mut buf).await {
                            if n == 0 {
                                return;
                            }
                            head.extend_from_slice(&buf[..n]);
                            while let Some(end) = head.windows(4).position(|w| w == b"\r\n\r\n") {
                                head.drain(..end + 4);
                                let answer = b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\n\r\n";
                                if socket.write_all(answer).await.is_err() {
                                    return;
                                }
                            }
                        }
                    });
                }
            });
        });
        (url, accepted)
    }

    /// A thread with a runtime of its own (like an HTTP worker) that sends `n` GETs in a row,
    /// then keeps its runtime, and so its connections, alive until `release` is dropped.
    fn worker_sending(
        client: &Arc<ClientPerThread>,
        url: &str,
        n: usize,
    ) -> (
        std::thread::JoinHandle<()>,
        tokio::sync::oneshot::Sender<()>,
    ) {
        let client = Arc::clone(client);
        let url = url.to_owned();
        let (done, sent) = std::sync::mpsc::channel();
        let (release, released) = tokio::sync::oneshot::channel::<()>();
        let thread = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            runtime.block_on(async move {
                for _ in 0..n {
                    let status = client.get().get(&url).send().await.unwrap().status();
                    assert_eq!(status, 200);
                }
                done.send(()).unwrap();
                let _ = released.await;
            });
        });
        sent.recv().expect("the worker sent its requests");
        (thread, release)
    }

    #[test]
    fn each_thread_keeps_its_own_pool_and_reuses_it() {
        let (url, accepted) = counting_server();
        let client = Arc::new(ClientPerThread::new(Duration::from_secs(2)).unwrap());
        let first = worker_sending(&client, &url, 3);
        assert_eq!(
            accepted.load(Ordering::SeqCst),
            1,
            "one thread: one connection"
        );
        // The first worker's idle connection is alive; a shared pool would hand it out here.
        let second = worker_sending(&client, &url, 1);
        assert_eq!(
            accepted.load(Ordering::SeqCst),
            2,
            "another thread: a connection of its own, driven by its own runtime"
        );
        for (thread, release) in [first, second] {
            drop(release);
            thread.join().unwrap();
        }
    }
}
