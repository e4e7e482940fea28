//! The proxy-router's routes (and the simulator's own `/__sim/*` control surface).

pub(crate) mod catalog;
pub(crate) mod chat;
pub(crate) mod control;
pub(crate) mod node;
pub(crate) mod sessions;

use std::sync::Arc;

use bytes::Bytes;
use hyper::Method;
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
    UserSessions,
    Session(&'a str),
    CloseSession(&'a str),
    Chat,
    NotFound,
}

impl<'a> Route<'a> {
    /// Like gin with default settings, a known path with the wrong method is a plain 404.
    pub fn parse(method: &Method, path: &'a str) -> Self {
        let get = *method == Method::GET;
        let post = *method == Method::POST;
        match path {
            "/v1/chat/completions" if post => return Self::Chat,
            "/healthcheck" if get => return Self::Health,
            "/config" if get => return Self::Config,
            "/wallet" if get => return Self::Wallet,
            "/blockchain/models" if get => return Self::Models,
            "/blockchain/approve" if post => return Self::Approve,
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

    pub fn fault_class(self) -> RouteClass {
        Some(match self {
            Self::Chat => FaultRoute::Chat,
            Self::ModelSession(_) | Self::BidSession(_) => FaultRoute::OpenSession,
            Self::CloseSession(_) => FaultRoute::CloseSession,
            Self::Session(_) | Self::UserSessions => FaultRoute::GetSession,
            Self::Models => FaultRoute::Models,
            Self::RatedBids(_) => FaultRoute::RatedBids,
            Self::Approve => FaultRoute::Approve,
            Self::Health | Self::Config | Self::Wallet | Self::Bid(_) | Self::NotFound => {
                return None;
            }
        })
    }

    /// The method a user needs in the node's whitelist (`system/auth.go` `CheckAuth`).
    pub fn permission(self) -> Option<&'static str> {
        Some(match self {
            Self::Chat => "chat",
            Self::Models => "get_models",
            Self::RatedBids(_) | Self::Bid(_) => "get_bids",
            Self::ModelSession(_) | Self::BidSession(_) => "open_session",
            Self::UserSessions | Self::Session(_) => "get_sessions",
            Self::CloseSession(_) => "close_session",
            Self::Approve => "approve",
            Self::Wallet => "get_wallet",
            Self::Config => "system_config",
            Self::Health | Self::NotFound => return None,
        })
    }
}

pub(crate) fn dispatch(
    shared: &Arc<Shared>,
    route: Route<'_>,
    parts: &Parts,
    body: Bytes,
    fault: Option<&FaultKind>,
) -> Reply {
    let query = parts.uri.query().unwrap_or("");
    match route {
        Route::Health => node::health(shared),
        Route::Config => node::config(shared),
        Route::Wallet => node::wallet(shared),
        Route::Models => Reply::json(hyper::StatusCode::OK, shared.catalog.models_json.clone()),
        Route::RatedBids(id) => catalog::rated_bids(shared, id),
        Route::Bid(id) => catalog::bid(shared, id),
        Route::Approve => catalog::approve(shared, query),
        Route::ModelSession(id) => sessions::open_by_model(shared, id, &body),
        Route::BidSession(id) => sessions::open_by_bid(shared, id, &body),
        Route::UserSessions => sessions::of_user(shared, query),
        Route::Session(id) => sessions::get(shared, id),
        Route::CloseSession(id) => sessions::close(shared, id),
        Route::Chat => chat::completions(shared, parts, &body, fault),
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
        assert_eq!(Route::parse(&get, "/blockchain/models/"), Route::NotFound);
    }
}
