//! Injected misbehaviour: what can go wrong between the gateway and a proxy-router.

use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering::Relaxed};

use serde::{Deserialize, Serialize};

/// One injected fault. JSON form (for `POST /__sim/faults`):
/// `{"route":"chat","kind":{"type":"status","status":500,"body":"{\"error\":\"session expired\"}"},"times":1}`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Fault {
    pub route: FaultRoute,
    pub kind: FaultKind,
    /// `None`: until cleared. `Some(n)`: the next `n` matching requests only.
    #[serde(default)]
    pub times: Option<u32>,
}

/// Which requests a fault applies to. JSON: snake_case (`"open_session"`); the PascalCase
/// variant names are accepted too.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FaultRoute {
    /// `POST /v1/chat/completions`.
    #[serde(alias = "Chat")]
    Chat,
    /// `POST /v1/embeddings`: `dead_session`, `backend_error` and `chain_read_blip` act as on chat.
    #[serde(alias = "Embeddings")]
    Embeddings,
    /// `POST /v1/audio/speech`: `dead_session`, `backend_error` and `chain_read_blip` act as on
    /// chat.
    #[serde(alias = "AudioSpeech")]
    AudioSpeech,
    /// `POST /v1/audio/transcriptions`: `dead_session`, `backend_error` and `chain_read_blip`,
    /// with the texts (or the dropped connection) of the node's upload path.
    #[serde(alias = "AudioTranscription")]
    AudioTranscription,
    /// `POST /blockchain/models/{id}/session` and `POST /blockchain/bids/{id}/session`.
    #[serde(alias = "OpenSession")]
    OpenSession,
    /// `POST /blockchain/sessions/{id}/close`.
    #[serde(alias = "CloseSession")]
    CloseSession,
    /// `GET /blockchain/sessions/{id}` and `GET /blockchain/sessions/user`.
    #[serde(alias = "GetSession")]
    GetSession,
    /// `GET /blockchain/models`.
    #[serde(alias = "Models")]
    Models,
    /// `GET /blockchain/models/{id}/bids/rated`.
    #[serde(alias = "RatedBids")]
    RatedBids,
    /// `POST /blockchain/approve`.
    #[serde(alias = "Approve")]
    Approve,
    /// `GET /blockchain/balance`.
    #[serde(alias = "Balance")]
    Balance,
    /// Every proxy-router route, `/healthcheck`, `/wallet`, `/blockchain/bids/{id}` and unknown
    /// paths included (only `Any` reaches those).
    #[serde(alias = "Any")]
    Any,
}

/// What happens to a matching request. JSON: internally tagged, `{"type":"latency","ms":200}`.
///
/// The `*_after_chunks` and `drip_chunks` kinds shape a chat stream event by event; on a JSON
/// answer they count 64-byte pieces of the body instead (sent with chunked encoding).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum FaultKind {
    /// Wait this long, then answer normally.
    Latency { ms: u64 },
    /// Answer with this status and body instead (content type: the given one, else JSON when
    /// the body starts with `{`, else `text/html`).
    Status {
        status: u16,
        body: String,
        #[serde(default)]
        content_type: Option<String>,
    },
    /// Read the request, then reset the TCP connection (RST, `SO_LINGER` 0) without a response.
    Reset,
    /// Read the request and never answer; the request ends only when the client goes away.
    StallBeforeFirstByte,
    /// Send the head and `chunks` events, then hang until the client goes away.
    StallAfterChunks { chunks: u32 },
    /// Send `chunks` events, then end the body cleanly: no final chunk, no usage, no `[DONE]`.
    CutAfterChunks { chunks: u32 },
    /// Send `chunks` events, then `data: {not json\n\n`, then carry on normally.
    GarbageAfterChunks { chunks: u32 },
    /// Send `chunks` events (or body pieces), then reset the connection.
    ResetAfterChunks { chunks: u32 },
    /// `302 Found` to `location`.
    Redirect { location: String },
    /// `200 application/json` of exactly `bytes` bytes, generated lazily.
    HugeBody { bytes: u64 },
    /// The normal answer, labelled `text/html`.
    WrongContentType,
    /// The normal answer plus an `x-sim-padding` header `bytes` long.
    HugeHeaders { bytes: usize },
    /// A normal chat completion whose usage fields are negative numbers and strings.
    BadUsage,
    /// A chat stream paced at one event every `every_ms` instead of the configured delay.
    DripChunks { every_ms: u64 },

    // The node's own failure modes, with its texts (see `texts.rs` and the reference).
    /// Open: a 500 with one of the texts the node returns *after* the open transaction was sent,
    /// while the session does exist on chain, visible to reads from `visible_after_ms` on (a
    /// lagging RPC node, or a transaction mined after the node gave up).
    OpenFailsAfterMining {
        error: MinedError,
        #[serde(default)]
        visible_after_ms: u64,
    },
    /// Chat: the provider's backend answers `status` with `body` (an OpenAI error object, or any
    /// text). The node keeps only the body and answers 400 `{"providerModelError":…}`; see
    /// [`FaultKind::backend_rate_limited`] and its siblings for real bodies.
    BackendError { status: u16, body: String },
    /// A chain read of the node fails. Chat and close report it as `session not found` although
    /// the session exists (reference §2.6); on `get_session` it is a lagging RPC node that returns
    /// the zero session, hence `session not found` too (the session list answers the RPC error);
    /// on `models` and `rated_bids` it is the RPC error, 400 and 500
    /// (`blockchainapi/controller.go:352-356,975-979`).
    ChainReadBlip,
    /// Chat: the session the request addresses stops working for good, with `reason`'s text.
    DeadSession { reason: DeadReason },
    /// Chat: after `chunks` stream events the node appends `{"error":"…"}` raw, without `data:`
    /// and without a newline, and ends the 200 stream (`proxyapi/controller_http.go:279-283`).
    /// On a JSON answer it follows the whole body (the chat-storage failure of reference §2.9).
    /// `error` defaults to a provider read failure.
    ErrorAfterChunks {
        chunks: u32,
        #[serde(default)]
        error: Option<String>,
    },
}

/// The 500s an open can end with although its transaction was sent (and mined, or mined later):
/// reference §2.1. JSON: snake_case.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum MinedError {
    /// `failed to send transaction: parse session receipt failed: …`
    /// (`blockchainapi/service.go:412-415`; the confirmation wait's RPC read failed,
    /// `repositories/registries/session_router.go:101-104,314-317`).
    ParseReceipt,
    /// `failed to get session: …` (`service.go:430-433`).
    GetSession,
    /// `failed to store session: …` (`service.go:438-441`; a badger write error).
    StoreSession,
    /// `failed to send transaction: open session failed: transaction not mined after all
    /// escalation attempts: last tx 0x…` (`service.go:406-409`, `lib/tx_escalator.go:271-273`):
    /// the transaction is still in the mempool and is mined later.
    NotMined,
    /// **\[dev\]** `session created on-chain (tx mined) but not yet visible after retries: …`
    /// (`dev` 1c2896fe `blockchainapi/service.go:487-489`).
    NotYetVisible,
}

use crate::texts::RPC_RATE_LIMITED;

impl MinedError {
    /// The node's text; `tx` is the (last) open transaction's hash.
    pub(crate) fn text(self, tx: &str) -> String {
        match self {
            Self::ParseReceipt => format!(
                "failed to send transaction: parse session receipt failed: \
                 failed to wait for confirmations {RPC_RATE_LIMITED}"
            ),
            Self::GetSession => format!("failed to get session: {RPC_RATE_LIMITED}"),
            Self::StoreSession => "failed to store session: \
                 Writes are blocked, possibly due to DropAll or Close"
                .to_owned(),
            Self::NotMined => format!(
                "failed to send transaction: open session failed: \
                 transaction not mined after all escalation attempts: last tx {tx}"
            ),
            Self::NotYetVisible => {
                "session created on-chain (tx mined) but not yet visible after retries: \
                 session not found"
                    .to_owned()
            }
        }
    }
}

/// Why a session stopped working for good (reference §2.6). JSON: snake_case.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DeadReason {
    /// The consumer node lost the provider's record: `provider not found`
    /// (`proxyapi/proxy_sender.go:551-552`), before the request waits for the session.
    ProviderNotFound,
    /// The provider lost the consumer's key: `provider request failed: provider error: user not
    /// found` (`proxyapi/controller_morrpc.go:153-158`, `proxy_sender.go:838-843,686`).
    UserNotFound,
    /// The provider's TEE attestation no longer verifies: `p-node tee attestation failed: …`
    /// (`proxy_sender.go:657-660`, `attestation/verifier.go:330`), before the wait.
    TeeAttestation,
    /// The provider is down: `provider request failed: failed to connect to provider: …`
    /// (`proxy_sender.go:733-737,686`).
    ProviderUnreachable,
}

impl DeadReason {
    pub(crate) fn text(self) -> &'static str {
        match self {
            Self::ProviderNotFound => "provider not found",
            Self::UserNotFound => "provider request failed: provider error: user not found",
            Self::TeeAttestation => {
                "p-node tee attestation failed: TLS certificate changed since session was \
                 opened (provider 203.0.113.7:3333)"
            }
            Self::ProviderUnreachable => {
                "provider request failed: failed to connect to provider: \
                 dial tcp 203.0.113.7:3333: connect: connection refused"
            }
        }
    }

    /// Whether the node checks this before it queues for the session
    /// (`proxy_sender.go:652-668`): then no failover either.
    pub(crate) fn before_queue(self) -> bool {
        matches!(self, Self::ProviderNotFound | Self::TeeAttestation)
    }
}

/// Real backend error bodies (OpenAI's), for [`FaultKind::BackendError`].
impl FaultKind {
    /// 429 with the retry delay in the message (OpenAI states it only there; the node drops the
    /// backend's `Retry-After` header with its status, `aiengine/openai.go:86-88,113-137`).
    pub fn backend_rate_limited(retry_after_secs: Option<u32>) -> Self {
        let message = match retry_after_secs {
            Some(s) => format!(
                "Rate limit reached for gpt-4o in organization org-sim on requests per min \
                 (RPM): Limit 500, Used 500, Requested 1. Please try again in {s}s. Visit \
                 https://platform.openai.com/account/rate-limits to learn more."
            ),
            None => "Rate limit reached for gpt-4o in organization org-sim on requests per \
                 min (RPM): Limit 500, Used 500, Requested 1."
                .to_owned(),
        };
        Self::openai_error(429, &message, "requests", None, Some("rate_limit_exceeded"))
    }

    /// 500 from the backend, as OpenAI words it.
    pub fn backend_server_error() -> Self {
        Self::openai_error(
            500,
            "The server had an error while processing your request. Sorry about that!",
            "server_error",
            None,
            None,
        )
    }

    /// 503 with a non-JSON body (a load balancer's), which the node wraps as
    /// `{"error":{"message":…,"type":"upstream_error"}}` (`aiengine/openai.go:119-130`).
    pub fn backend_unavailable() -> Self {
        Self::BackendError {
            status: 503,
            body: "upstream connect error or disconnect/reset before headers. reset reason: \
                   connection failure"
                .to_owned(),
        }
    }

    /// 401: the provider's key for its backend is wrong.
    pub fn backend_bad_key() -> Self {
        Self::openai_error(
            401,
            "Incorrect API key provided: sk-proj-****************abcd. You can find your API \
             key at https://platform.openai.com/account/api-keys.",
            "invalid_request_error",
            None,
            Some("invalid_api_key"),
        )
    }

    /// 403: the provider's key may not use the model.
    pub fn backend_forbidden() -> Self {
        Self::openai_error(
            403,
            "Project `proj_sim` does not have access to model `gpt-4o`",
            "invalid_request_error",
            None,
            Some("model_not_found"),
        )
    }

    /// 404: the backend does not know the provider's model.
    pub fn backend_model_not_found() -> Self {
        Self::openai_error(
            404,
            "The model `gpt-4o` does not exist or you do not have access to it.",
            "invalid_request_error",
            None,
            Some("model_not_found"),
        )
    }

    /// 400: the prompt is longer than the model's context.
    pub fn backend_context_length() -> Self {
        Self::openai_error(
            400,
            "This model's maximum context length is 128000 tokens. However, your messages \
             resulted in 131072 tokens. Please reduce the length of the messages.",
            "invalid_request_error",
            Some("messages"),
            Some("context_length_exceeded"),
        )
    }

    fn openai_error(
        status: u16,
        message: &str,
        kind: &str,
        param: Option<&str>,
        code: Option<&str>,
    ) -> Self {
        let body = serde_json::json!({
            "error": {"message": message, "type": kind, "param": param, "code": code}
        });
        Self::BackendError {
            status,
            body: body.to_string(),
        }
    }
}

/// Which fault routes a request belongs to; `None` is matched by `Any` only.
pub(crate) type RouteClass = Option<FaultRoute>;

/// The installed faults, newest first in priority.
#[derive(Default)]
pub(crate) struct FaultTable {
    /// Number of installed faults, read without the lock so the no-fault path stays cheap.
    len: AtomicUsize,
    list: Mutex<Vec<Fault>>,
}

impl FaultTable {
    /// Installs a fault. The newest matching fault wins; older ones apply again once it is used
    /// up. `times: Some(0)` installs nothing.
    pub fn set(&self, fault: Fault) {
        if fault.times == Some(0) {
            return;
        }
        let mut list = self.list.lock().unwrap_or_else(|e| e.into_inner());
        list.push(fault);
        self.len.store(list.len(), Relaxed);
    }

    pub fn clear(&self) {
        let mut list = self.list.lock().unwrap_or_else(|e| e.into_inner());
        list.clear();
        self.len.store(0, Relaxed);
    }

    pub fn list(&self) -> Vec<Fault> {
        self.list.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// The fault for one request, consuming one use of it.
    pub fn take(&self, route: RouteClass) -> Option<FaultKind> {
        if self.len.load(Relaxed) == 0 {
            return None;
        }
        let mut list = self.list.lock().unwrap_or_else(|e| e.into_inner());
        let idx = list
            .iter()
            .rposition(|f| f.route == FaultRoute::Any || Some(f.route) == route)?;
        let kind = match &mut list[idx].times {
            Some(n) if *n <= 1 => {
                let kind = list.remove(idx).kind;
                self.len.store(list.len(), Relaxed);
                kind
            }
            Some(n) => {
                *n -= 1;
                list[idx].kind.clone()
            }
            None => list[idx].kind.clone(),
        };
        Some(kind)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_forms() {
        let f: Fault = serde_json::from_str(
            r#"{"route":"Chat","kind":{"type":"stall_after_chunks","chunks":3},"times":1}"#,
        )
        .unwrap();
        assert_eq!(f.route, FaultRoute::Chat);
        assert_eq!(f.kind, FaultKind::StallAfterChunks { chunks: 3 });
        let f: Fault =
            serde_json::from_str(r#"{"route":"open_session","kind":{"type":"reset"}}"#).unwrap();
        assert_eq!(f.times, None);
        assert_eq!(
            serde_json::to_string(&f).unwrap(),
            r#"{"route":"open_session","kind":{"type":"reset"},"times":null}"#
        );
    }

    #[test]
    fn newest_first_and_times() {
        let t = FaultTable::default();
        t.set(Fault {
            route: FaultRoute::Chat,
            kind: FaultKind::Reset,
            times: None,
        });
        t.set(Fault {
            route: FaultRoute::Any,
            kind: FaultKind::BadUsage,
            times: Some(2),
        });
        assert_eq!(t.take(Some(FaultRoute::Models)), Some(FaultKind::BadUsage));
        assert_eq!(t.take(Some(FaultRoute::Chat)), Some(FaultKind::BadUsage));
        assert_eq!(t.take(Some(FaultRoute::Chat)), Some(FaultKind::Reset));
        assert_eq!(t.take(Some(FaultRoute::Models)), None);
        assert_eq!(t.take(None), None);
        t.clear();
        assert_eq!(t.take(Some(FaultRoute::Chat)), None);
    }
}
