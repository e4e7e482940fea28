//! What a client can hold of the server: connections, and the bodies on them.
//!
//! - **Caps on open connections**, overall and per client address ([`ConnectionLimits`]). A
//!   connection over either cap is answered 503 the moment it is accepted, without waiting for
//!   its request, and closed, so it costs a file descriptor for microseconds. The caps are
//!   derived from the process's open-file limit (the root crate's `open_files`), and the
//!   accept loop pauses before descriptors run out, so `accept()` never fails for want of them
//!   and the server keeps answering. A direct client's connections are
//!   counted from accept to close; a trusted proxy's connections count only overall, and each
//!   client behind it holds a place for as long as one of its requests runs (its address is
//!   only known from the request's `X-Forwarded-For`).
//! - **An unread body closes its connection** ([`guard`]). A request body is read within a
//!   deadline by the extractors (`extract::json`); a handler that has no use for the body
//!   does not read it. actix then closes the connection after the response when the body had
//!   a `Content-Length`, but keeps reading a chunked one, for as long as the client sends
//!   it. Keeping the body's receiving end alive until the response is written makes actix
//!   close that connection too.

use std::any::Any;
use std::cell::RefCell;
use std::collections::HashMap;
use std::net::Shutdown;
use std::pin::Pin;
use std::rc::Rc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, LazyLock, Mutex, MutexGuard, PoisonError};
use std::task::{Context, Poll};

use actix_web::body::{BodySize, EitherBody, MessageBody};
use actix_web::dev::{Extensions, Payload, ServiceRequest, ServiceResponse};
use actix_web::error::PayloadError;
use actix_web::middleware::Next;
use actix_web::web::{self, Bytes};
use actix_web::{Error, HttpMessage};
use futures_util::Stream;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;

use crate::AppState;
use crate::client_address::{ClientAddressRules, ClientKey};
use crate::error::ApiError;
use crate::metrics::RefusalLabels;

/// The caps, and the connections (or proxied requests) holding a place under them.
pub struct ConnectionLimits {
    overall: usize,
    /// Connections held at most, served and being refused (the accept loop's cap).
    accepted: usize,
    per_client: usize,
    rules: ClientAddressRules,
    open: AtomicUsize,
    by_client: Mutex<HashMap<ClientKey, usize>>,
    refused: Family<RefusalLabels, Counter>,
}

/// Which cap a connection or request is over.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    Overall,
    Client,
}

impl Refusal {
    fn label(self) -> &'static str {
        match self {
            Refusal::Overall => "overall",
            Refusal::Client => "client",
        }
    }

    fn message(self) -> &'static str {
        match self {
            Refusal::Overall => "The server has too many open connections; retry shortly",
            Refusal::Client => "Too many connections from this client address; retry shortly",
        }
    }
}

/// A place under the caps, given back when dropped.
pub struct Slot {
    limits: Arc<ConnectionLimits>,
    client: Option<ClientKey>,
    overall: bool,
}

impl Drop for Slot {
    fn drop(&mut self) {
        if self.overall {
            self.limits.open.fetch_sub(1, Ordering::Relaxed);
        }
        if let Some(key) = self.client {
            self.limits.release_client(key);
        }
    }
}

/// Marks a connection refused at accept; its requests, if any get through, are refused too.
struct Refused(Refusal);

impl ConnectionLimits {
    /// `refused` counts the refusals (`Metrics::refused_connections`).
    pub fn new(
        overall: usize,
        accepted: usize,
        per_client: usize,
        rules: ClientAddressRules,
        refused: Family<RefusalLabels, Counter>,
    ) -> Arc<Self> {
        Arc::new(Self {
            overall: overall.max(1),
            accepted: accepted.max(overall).max(1),
            per_client: per_client.max(1),
            rules,
            open: AtomicUsize::new(0),
            by_client: Mutex::new(HashMap::new()),
            refused,
        })
    }

    pub fn overall(&self) -> usize {
        self.overall
    }

    pub fn accepted(&self) -> usize {
        self.accepted
    }

    pub fn per_client(&self) -> usize {
        self.per_client
    }

    /// Connections being served now (refused ones give their place back at once).
    pub fn open(&self) -> usize {
        self.open.load(Ordering::Relaxed)
    }

    fn clients(&self) -> MutexGuard<'_, HashMap<ClientKey, usize>> {
        self.by_client
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }

    fn release_client(&self, key: ClientKey) {
        let mut clients = self.clients();
        if let Some(count) = clients.get_mut(&key) {
            *count -= 1;
            if *count == 0 {
                clients.remove(&key);
            }
        }
    }

    /// A place for a connection (`overall`) and/or a client.
    pub fn take(
        self: &Arc<Self>,
        client: Option<ClientKey>,
        overall: bool,
    ) -> Result<Slot, Refusal> {
        self.try_take(client, overall).inspect_err(|refusal| {
            self.refused
                .get_or_create(&RefusalLabels {
                    cap: refusal.label(),
                })
                .inc();
        })
    }

    fn try_take(
        self: &Arc<Self>,
        client: Option<ClientKey>,
        overall: bool,
    ) -> Result<Slot, Refusal> {
        if overall && self.open.fetch_add(1, Ordering::Relaxed) >= self.overall {
            self.open.fetch_sub(1, Ordering::Relaxed);
            return Err(Refusal::Overall);
        }
        // From here on, dropping the slot gives back what was taken.
        let mut slot = Slot {
            limits: self.clone(),
            client: None,
            overall,
        };
        if let Some(key) = client {
            let mut clients = self.clients();
            let count = clients.entry(key).or_insert(0);
            if *count >= self.per_client {
                return Err(Refusal::Client);
            }
            *count += 1;
            slot.client = Some(key);
        }
        Ok(slot)
    }

    /// The `HttpServer::on_connect` hook: admits the connection (its slot lives in the
    /// connection's data, dropped when it closes) or answers it 503 and shuts it down.
    pub fn on_connect(self: &Arc<Self>, io: &dyn Any, data: &mut Extensions) {
        let Some(stream) = io.downcast_ref::<tokio::net::TcpStream>() else {
            return;
        };
        let Ok(peer) = stream.peer_addr() else {
            return;
        };
        let peer = peer.ip().to_canonical();
        let client = (!self.rules.is_trusted_proxy(peer)).then(|| self.rules.key(peer));
        match self.take(client, true) {
            Ok(slot) => {
                data.insert(slot);
            }
            Err(refusal) => {
                tracing::debug!(%peer, ?refusal, "connection refused: over the connection cap");
                // Straight to the socket (tokio's `try_write` waits for a readiness event a
                // fresh socket has not had yet): its send buffer is empty, the short answer
                // fits at once.
                let socket = socket2::SockRef::from(stream);
                let _ = socket.send(canned_refusal(refusal));
                // The write side sends it and a FIN; the read side makes actix see the end
                // of the connection at its first read and close it.
                let _ = socket.shutdown(Shutdown::Both);
                data.insert(Refused(refusal));
            }
        }
    }
}

/// The 503 written straight to a refused socket: the documented error shape, and
/// `Connection: close`.
fn canned_refusal(refusal: Refusal) -> &'static [u8] {
    static OVERALL: LazyLock<Vec<u8>> = LazyLock::new(|| render_refusal(Refusal::Overall));
    static CLIENT: LazyLock<Vec<u8>> = LazyLock::new(|| render_refusal(Refusal::Client));
    match refusal {
        Refusal::Overall => &OVERALL,
        Refusal::Client => &CLIENT,
    }
}

fn render_refusal(refusal: Refusal) -> Vec<u8> {
    let body = serde_json::json!({ "detail": refusal.message() }).to_string();
    format!(
        "HTTP/1.1 503 Service Unavailable\r\ncontent-type: application/json\r\n\
         content-length: {}\r\nretry-after: 1\r\nconnection: close\r\n\r\n{body}",
        body.len()
    )
    .into_bytes()
}

/// The middleware (`actix_web::middleware::from_fn(connections::guard)`, app-wide): refuses
/// requests of a refused connection and clients behind a trusted proxy over their cap, and
/// keeps an unread body's receiving end until the response is written.
pub async fn guard(
    mut req: ServiceRequest,
    next: Next<impl MessageBody>,
) -> Result<ServiceResponse<EitherBody<Holding<impl MessageBody>>>, Error> {
    if let Some(&Refused(refusal)) = req.conn_data::<Refused>() {
        let mut refused = refuse(req, refusal);
        refused
            .response_mut()
            .head_mut()
            .set_connection_type(actix_web::http::ConnectionType::Close);
        return Ok(refused);
    }
    let mut keep = Keep::default();
    if let Some(state) = req.app_data::<web::Data<AppState>>().cloned()
        && let Some(peer) = req.peer_addr()
        && state.client_addresses.is_trusted_proxy(peer.ip())
    {
        let client = state
            .client_addresses
            .key(state.client_addresses.client_ip(peer.ip(), req.headers()));
        match state.connection_limits.take(Some(client), false) {
            Ok(slot) => keep.slot = Some(slot),
            // The proxy's connection is shared with other clients: it stays open.
            Err(refusal) => return Ok(refuse(req, refusal)),
        }
    }
    let payload = req.take_payload();
    if matches!(payload, Payload::None) {
        req.set_payload(payload);
    } else {
        let shared = Rc::new(RefCell::new(payload));
        req.set_payload(Payload::Stream {
            payload: Box::pin(SharedPayload(shared.clone())),
        });
        keep.payload = Some(shared);
    }
    let response = next.call(req).await?;
    Ok(response
        .map_body(|_, body| Holding { body, _keep: keep })
        .map_into_left_body())
}

fn refuse<B>(req: ServiceRequest, refusal: Refusal) -> ServiceResponse<EitherBody<B>> {
    let error = ApiError::ServiceUnavailable(refusal.message());
    req.into_response(actix_web::ResponseError::error_response(&error))
        .map_into_right_body()
}

/// What a response holds until it has been written.
#[derive(Default)]
struct Keep {
    payload: Option<Rc<RefCell<Payload>>>,
    slot: Option<Slot>,
}

/// The request's payload, shared with the response that keeps it.
struct SharedPayload(Rc<RefCell<Payload>>);

impl Stream for SharedPayload {
    type Item = Result<Bytes, PayloadError>;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        Pin::new(&mut *self.0.borrow_mut()).poll_next(cx)
    }
}

pin_project_lite::pin_project! {
    /// A response body that holds [`Keep`] until it is dropped, after its last byte.
    pub struct Holding<B> {
        #[pin]
        body: B,
        _keep: Keep,
    }
}

impl<B: MessageBody> MessageBody for Holding<B> {
    type Error = B::Error;

    fn size(&self) -> BodySize {
        self.body.size()
    }

    fn poll_next(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Bytes, Self::Error>>> {
        self.project().body.poll_next(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(last: u8) -> Option<ClientKey> {
        Some(ClientAddressRules::default().key([192, 0, 2, last].into()))
    }

    fn refusals(family: &Family<RefusalLabels, Counter>, cap: &'static str) -> u64 {
        family.get_or_create(&RefusalLabels { cap }).get()
    }

    #[test]
    fn places_are_capped_per_client_and_overall_and_given_back() {
        let refused = Family::default();
        let limits = ConnectionLimits::new(3, 6, 2, ClientAddressRules::default(), refused.clone());
        let a1 = limits.take(key(1), true).unwrap();
        let _a2 = limits.take(key(1), true).unwrap();
        assert_eq!(limits.take(key(1), true).err(), Some(Refusal::Client));
        let _b1 = limits.take(key(2), true).unwrap();
        assert_eq!(limits.take(key(3), true).err(), Some(Refusal::Overall));
        assert_eq!(limits.open(), 3);
        drop(a1);
        assert_eq!(limits.open(), 2);
        let _a3 = limits.take(key(1), true).unwrap();
        // A proxied client's request counts for its client only.
        let _c = limits.take(key(4), false).unwrap();
        assert_eq!(limits.open(), 3);
        assert_eq!(
            (refusals(&refused, "client"), refusals(&refused, "overall")),
            (1, 1)
        );
    }

    #[test]
    fn refused_places_leave_nothing_behind() {
        let limits =
            ConnectionLimits::new(1, 2, 1, ClientAddressRules::default(), Family::default());
        let held = limits.take(key(1), true).unwrap();
        for _ in 0..10 {
            assert!(limits.take(key(1), true).is_err());
            assert!(limits.take(key(2), true).is_err());
            assert!(limits.take(key(1), false).is_err());
        }
        drop(held);
        assert_eq!(limits.open(), 0);
        assert!(limits.clients().is_empty());
        assert!(limits.take(key(2), true).is_ok());
    }

    #[test]
    fn the_canned_refusal_is_a_complete_json_response() {
        let text = String::from_utf8(canned_refusal(Refusal::Client).to_vec()).unwrap();
        let (head, body) = text.split_once("\r\n\r\n").unwrap();
        assert!(head.starts_with("HTTP/1.1 503 "));
        assert!(head.contains(&format!("content-length: {}", body.len())));
        let body: serde_json::Value = serde_json::from_str(body).unwrap();
        assert_eq!(body["detail"], Refusal::Client.message());
    }
}
