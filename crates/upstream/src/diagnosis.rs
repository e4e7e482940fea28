//! What `morpheus-gateway admin doctor` asks the proxy-router: is it there (and which version),
//! does it take the gateway's credentials, has the gateway's user every permission it needs,
//! and does the node store chats (it must not).
//!
//! Every probe is harmless: a permission is tested with a request the node refuses *after*
//! its auth check (`system/auth.go` `CheckAuth` runs before each handler) and before doing
//! anything — a path id that is not hex, a body that is not JSON, an approve without its
//! query — so the answer is 401 (credentials), 403 `method not allowed` (permission), or
//! anything else (allowed).

use std::time::Duration;

use bytes::{Bytes, BytesMut};
use reqwest::{Method, StatusCode};
use serde_json::Value;
use tokio::time::timeout;

use crate::client::ProxyRouterClient;
use crate::transport;

/// The node methods the gateway calls (`proxy-router-behaviour.md`, row X1), each with a
/// request that reaches the method's auth check and then fails validation.
const PERMISSION_PROBES: [(&str, &str, &str, Option<&str>); 8] = [
    ("chat", "POST", "/v1/chat/completions", Some("not json")),
    ("get_models", "GET", "/blockchain/models", None),
    ("get_bids", "GET", "/blockchain/bids/not-an-id", None),
    (
        "open_session",
        "POST",
        "/blockchain/models/not-an-id/session",
        Some("not json"),
    ),
    (
        "get_sessions",
        "GET",
        "/blockchain/sessions/not-an-id",
        None,
    ),
    (
        "close_session",
        "POST",
        "/blockchain/sessions/not-an-id/close",
        None,
    ),
    ("approve", "POST", "/blockchain/approve", None),
    ("get_wallet", "GET", "/wallet", None),
];

/// The methods the gateway's node user needs.
pub const NEEDED_PERMISSIONS: [&str; 8] = [
    "chat",
    "get_models",
    "get_bids",
    "open_session",
    "get_sessions",
    "close_session",
    "approve",
    "get_wallet",
];

/// The most of a probe's answer read.
const MAX_PROBE_BODY: usize = 64 * 1024;

/// What the node told the doctor.
#[derive(Debug, Clone, PartialEq)]
pub struct NodeDiagnosis {
    pub reach: Reach,
    pub credentials: Credentials,
    /// One per needed method, in [`NEEDED_PERMISSIONS`]' order.
    pub permissions: Vec<(&'static str, Permission)>,
    pub chat_storage: ChatStorage,
}

#[derive(Debug, Clone, PartialEq)]
pub enum Reach {
    /// `GET /healthcheck` answered: its status word and version, when given.
    Reachable {
        status: String,
        version: Option<String>,
    },
    Unreachable(String),
}

#[derive(Debug, Clone, PartialEq)]
pub enum Credentials {
    Accepted,
    /// 401, with the node's reason.
    Refused(String),
    Unknown(String),
}

#[derive(Debug, Clone, PartialEq)]
pub enum Permission {
    Granted,
    /// 403 `method not allowed`.
    Missing,
    Unknown(String),
}

/// `PROXY_STORE_CHAT_CONTEXT` (and `PROXY_FORWARD_CHAT_CONTEXT`), from `GET /config`.
#[derive(Debug, Clone, PartialEq)]
pub enum ChatStorage {
    Off,
    On {
        forwarded: bool,
    },
    /// `GET /config` did not tell (it needs the `system_config` method, which the gateway
    /// does not otherwise need): why.
    Unreadable(String),
}

impl ProxyRouterClient {
    /// Asks the node what the doctor checks. Never fails: what could not be learnt says why.
    pub async fn diagnose(&self) -> NodeDiagnosis {
        let reach = match self.probe(Method::GET, "/healthcheck", None, false).await {
            Ok((status, body)) => {
                let health: Value = serde_json::from_slice(&body).unwrap_or_default();
                let word = health["status"]
                    .as_str()
                    .map_or_else(|| format!("HTTP {}", status.as_u16()), str::to_owned);
                Reach::Reachable {
                    status: word,
                    version: health["version"].as_str().map(str::to_owned),
                }
            }
            Err(why) => Reach::Unreachable(why),
        };
        let unreachable = matches!(reach, Reach::Unreachable(_));
        let credentials = if unreachable {
            Credentials::Unknown("the proxy-router is unreachable".to_owned())
        } else {
            match self
                .probe(Method::GET, "/blockchain/models", None, true)
                .await
            {
                Ok((StatusCode::UNAUTHORIZED, body)) => Credentials::Refused(error_text(&body)),
                Ok(_) => Credentials::Accepted,
                Err(why) => Credentials::Unknown(why),
            }
        };
        let mut permissions = Vec::with_capacity(PERMISSION_PROBES.len());
        let mut chat_storage = ChatStorage::Unreadable("the credentials were not accepted".into());
        if credentials == Credentials::Accepted {
            for (method_name, verb, path, body) in PERMISSION_PROBES {
                let verb = Method::from_bytes(verb.as_bytes()).expect("a valid method");
                let permission = match self.probe(verb, path, body, true).await {
                    Ok((StatusCode::FORBIDDEN, _)) => Permission::Missing,
                    Ok((StatusCode::UNAUTHORIZED, body)) => {
                        Permission::Unknown(format!("401 {}", error_text(&body)))
                    }
                    Ok(_) => Permission::Granted,
                    Err(why) => Permission::Unknown(why),
                };
                permissions.push((method_name, permission));
            }
            chat_storage = self.chat_storage().await;
        } else {
            let why = match &credentials {
                Credentials::Refused(_) => "the credentials were refused",
                _ => "the credentials could not be checked",
            };
            permissions.extend(
                NEEDED_PERMISSIONS
                    .iter()
                    .map(|m| (*m, Permission::Unknown(why.to_owned()))),
            );
        }
        NodeDiagnosis {
            reach,
            credentials,
            permissions,
            chat_storage,
        }
    }

    async fn chat_storage(&self) -> ChatStorage {
        match self.probe(Method::GET, "/config", None, true).await {
            Ok((status, body)) if status.is_success() => {
                let config: Value = serde_json::from_slice(&body).unwrap_or_default();
                let proxy = &config["Config"]["Proxy"];
                // The node's `lib.Bool` is encoded as `{"Bool": …}`; `null` means its default,
                // which is `true`.
                let setting = |name: &str| match &proxy[name] {
                    Value::Bool(b) => Some(*b),
                    Value::Object(o) => {
                        Some(o.get("Bool").and_then(Value::as_bool).unwrap_or(true))
                    }
                    _ => None,
                };
                match setting("StoreChatContext") {
                    Some(false) => ChatStorage::Off,
                    Some(true) => ChatStorage::On {
                        forwarded: setting("ForwardChatContext").unwrap_or(true),
                    },
                    None => ChatStorage::Unreadable(
                        "GET /config has no Config.Proxy.StoreChatContext".to_owned(),
                    ),
                }
            }
            Ok((StatusCode::FORBIDDEN, _)) => ChatStorage::Unreadable(
                "GET /config needs the system_config method, which the gateway's user lacks \
                 (it needs it for nothing else)"
                    .to_owned(),
            ),
            Ok((status, body)) => ChatStorage::Unreadable(format!(
                "GET /config answered {}: {}",
                status.as_u16(),
                error_text(&body)
            )),
            Err(why) => ChatStorage::Unreadable(why),
        }
    }

    /// One request, sent once: its status and the start of its body.
    async fn probe(
        &self,
        method: Method,
        path: &str,
        body: Option<&'static str>,
        authenticated: bool,
    ) -> Result<(StatusCode, Bytes), String> {
        let url = self.url(path).map_err(|f| f.error.to_string())?;
        let mut request = if authenticated {
            self.request(method, url)
        } else {
            self.inner.http.get().request(method, url)
        };
        if let Some(body) = body {
            request = request
                .header(reqwest::header::CONTENT_TYPE, "application/json")
                .body(body);
        }
        let limits = self.admin_limits();
        let mut resp = transport::send(request, limits.first_byte.min(limits.total))
            .await
            .map_err(|f| f.error.to_string())?;
        let status = resp.status();
        let mut body = BytesMut::new();
        let _ = timeout(limits.total.min(Duration::from_secs(10)), async {
            while body.len() < MAX_PROBE_BODY {
                match resp.chunk().await {
                    Ok(Some(chunk)) => body.extend_from_slice(&chunk),
                    _ => break,
                }
            }
        })
        .await;
        Ok((status, body.freeze()))
    }
}

/// The node's `{"error":"…"}` text, else the body's start.
fn error_text(body: &[u8]) -> String {
    let parsed: Value = serde_json::from_slice(body).unwrap_or_default();
    match parsed["error"].as_str() {
        Some(text) => text.to_owned(),
        None => String::from_utf8_lossy(&body[..body.len().min(200)]).into_owned(),
    }
}
