//! The proxy-router's routes (and the simulator's own `/__sim/*` control surface).

pub(crate) mod catalog;
pub(crate) mod chat;
pub(crate) mod control;
pub(crate) mod inference;
pub(crate) mod node;
pub(crate) mod sessions;

use std::sync::Arc;

use bytes::Bytes;
use hyper::Method;
use hyper::body::Incoming;
use hyper::http::request::Parts;

use crate::faults::{FaultKind, FaultRoute, RouteClass};
use crate::reply::Reply;
use crate::state::Shared;

/// A recognised route, borrowing its path parameters from the request.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Route<'a> {
    Health,
    Config,
    Wallet,
    Models,
    RatedBids(&'a str),
    Bid(&'a str),
    ModelSession(&'a str),
    BidSession(&'a str),
    Approve,
    Balance,
    UserSessions,
    Session(&'a str),
    CloseSession(&'a str),
    Chat,
    Embeddings,
    Speech,
    Transcription,
    NotFound,
}

impl<'a> Route<'a> {
    /// Like gin with default settings, a known path with the wrong method is a plain 404.
    pub fn parse(method: &Method, path: &'a str) -> Self {
        let get = *method == Method::GET;
        let post = *method == Method::POST;
        match path {
            "/v1/chat/completions" if post => return Self::Chat,
            "/v1/embeddings" if post => return Self::Embeddings,
            "/v1/audio/speech" if post => return Self::Speech,
            "/v1/audio/transcriptions" if post => return Self::Transcription,
            "/healthcheck" if get => return Self::Health,
            "/config" if get => return Self::Config,
            "/wallet" if get => return Self::Wallet,
            "/blockchain/models" if get => return Self::Models,
            "/blockchain/approve" if post => return Self::Approve,
            "/blockchain/balance" if get => return Self::Balance,
            "/blockchain/sessions/user" if get => return Self::UserSessions,
            _ => {}
        }
        let Some(rest) = path.strip_prefix("/blockchain/") else {
            return Self::NotFound;
        };
        let segments: Vec<&'a str> = rest.split('/').collect();
        match (get, post, segments.as_slice()) {
            (true, _, ["models", id, "bids", "rated"]) => Self::RatedBids(id),
            (_, true, ["models", id, "session"]) => Self::ModelSession(id),
            (true, _, ["bids", id]) => Self::Bid(id),
            (_, true, ["bids", id, "session"]) => Self::BidSession(id),
            (true, _, ["sessions", id]) => Self::Session(id),
            (_, true, ["sessions", id, "close"]) => Self::CloseSession(id),
            _ => Self::NotFound,
        }
    }

    /// The permission the node checks for the route (`CheckAuth(...)` in
    /// `blockchainapi/controller.go:33-76`, `walletapi/controller.go`,
    /// `proxyapi/controller_http.go:90,100-102`);
    /// `None` for the public ones.
    pub fn method(self) -> Option<&'static str> {
        Some(match self {
            Self::Wallet => "get_wallet",
            Self::Models => "get_models",
            Self::RatedBids(_) | Self::Bid(_) => "get_bids",
            Self::Approve => "approve",
            // `blockchainapi/controller.go:35`.
            Self::Balance => "get_balance",
            Self::ModelSession(_) | Self::BidSession(_) => "open_session",
            Self::UserSessions | Self::Session(_) => "get_sessions",
            Self::CloseSession(_) => "close_session",
            Self::Chat => "chat",
            Self::Embeddings => "embeddings",
            Self::Speech => "audio_speech",
            Self::Transcription => "audio_transcription",
            Self::Config => "system_config",
            Self::Health | Self::NotFound => return None,
        })
    }

    pub fn fault_class(self) -> RouteClass {
        Some(match self {
            Self::Chat => FaultRoute::Chat,
            Self::Embeddings => FaultRoute::Embeddings,
            Self::Speech => FaultRoute::AudioSpeech,
            Self::Transcription => FaultRoute::AudioTranscription,
            Self::ModelSession(_) | Self::BidSession(_) => FaultRoute::OpenSession,
            Self::CloseSession(_) => FaultRoute::CloseSession,
            Self::Session(_) | Self::UserSessions => FaultRoute::GetSession,
            Self::Models => FaultRoute::Models,
            Self::RatedBids(_) => FaultRoute::RatedBids,
            Self::Approve => FaultRoute::Approve,
            Self::Balance => FaultRoute::Balance,
            Self::Health | Self::Config | Self::Wallet | Self::Bid(_) | Self::NotFound => {
                return None;
            }
        })
    }
}

/// Runs `work` to the end whether or not its caller is still there, as the node's handlers do;
/// `gone` runs when the answer found nobody to take it. Work that is done at its first poll (no
/// queue, no latency: the common case in tests and benchmarks) is answered inline; only work that
/// has to wait moves to a task of its own, so the fast path costs no extra scheduling round.
pub(crate) async fn detached(
    work: impl std::future::Future<Output = Reply> + Send + 'static,
    gone: impl FnOnce() + Send + 'static,
) -> Reply {
    let mut work = Box::pin(work);
    let first = std::future::poll_fn(|cx| std::task::Poll::Ready(work.as_mut().poll(cx))).await;
    if let std::task::Poll::Ready(reply) = first {
        return reply;
    }
    // Whatever the first poll registered is re-registered by the task's own polls.
    let (tx, rx) = tokio::sync::oneshot::channel();
    tokio::spawn(async move {
        if tx.send(work.await).is_err() {
            gone();
        }
    });
    rx.await
        .unwrap_or_else(|_| Reply::internal("the request's task ended without an answer"))
}

pub(crate) async fn dispatch(
    shared: &Arc<Shared>,
    route: Route<'_>,
    parts: &Parts,
    body: Bytes,
    upload: Option<Incoming>,
    fault: Option<FaultKind>,
) -> Reply {
    let query = parts.uri.query().unwrap_or("");
    let blip = matches!(fault, Some(FaultKind::ChainReadBlip));
    match route {
        Route::Health => node::health(shared),
        Route::Config => node::config(shared),
        Route::Wallet => node::wallet(shared),
        Route::Models if blip => Reply::bad_request(crate::texts::RPC_RATE_LIMITED),
        Route::Models => Reply::json(hyper::StatusCode::OK, shared.catalog.models_json.clone()),
        Route::RatedBids(_) if blip => Reply::internal(crate::texts::RPC_RATE_LIMITED),
        Route::RatedBids(id) => catalog::rated_bids(shared, id),
        Route::Bid(id) => catalog::bid(shared, id),
        Route::Approve => catalog::approve(shared, query),
        Route::Balance => node::balance(shared),
        Route::ModelSession(id) => sessions::open_by_model(shared, id, &body, fault).await,
        Route::BidSession(id) => sessions::open_by_bid(shared, id, &body, fault).await,
        Route::UserSessions => sessions::of_user(shared, query, blip),
        Route::Session(id) => sessions::get(shared, id, blip),
        Route::CloseSession(id) => sessions::close(shared, id, blip),
        Route::Chat => chat::completions(shared, parts, body, fault).await,
        Route::Embeddings => inference::embeddings(shared, parts, body, fault).await,
        Route::Speech => inference::speech(shared, parts, body, fault).await,
        Route::Transcription => match upload {
            Some(upload) => inference::transcription(shared, parts, upload, fault).await,
            None => Reply::internal("the upload was not handed to its route"),
        },
        Route::NotFound => Reply::not_found(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_paths() {
        let get = Method::GET;
        let post = Method::POST;
        assert_eq!(
            Route::parse(&get, "/blockchain/models/0xab/bids/rated"),
            Route::RatedBids("0xab")
        );
        assert_eq!(
            Route::parse(&post, "/blockchain/models/0xab/session"),
            Route::ModelSession("0xab")
        );
        assert_eq!(
            Route::parse(&get, "/blockchain/sessions/user"),
            Route::UserSessions
        );
        assert_eq!(
            Route::parse(&post, "/blockchain/sessions/0x1/close"),
            Route::CloseSession("0x1")
        );
        assert_eq!(Route::parse(&get, "/v1/chat/completions"), Route::NotFound);
        assert_eq!(Route::parse(&post, "/v1/embeddings"), Route::Embeddings);
        assert_eq!(Route::parse(&post, "/v1/audio/speech"), Route::Speech);
        assert_eq!(
            Route::parse(&post, "/v1/audio/transcriptions"),
            Route::Transcription
        );
        assert_eq!(Route::parse(&get, "/v1/embeddings"), Route::NotFound);
        assert_eq!(Route::Transcription.method(), Some("audio_transcription"));
        assert_eq!(Route::parse(&get, "/blockchain/models/"), Route::NotFound);
    }
}
