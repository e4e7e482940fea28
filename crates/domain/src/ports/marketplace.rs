//! The marketplace port: what the gateway needs from a Morpheus proxy-router. The upstream crate
//! implements it over HTTP; its wire types never reach this crate.

use std::pin::Pin;
use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;
use futures_core::Stream;

use crate::model::*;

/// Which wait ran out.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TimeoutPhase {
    Connect,
    /// The upstream accepted the request but sent no response head in time.
    FirstByte,
    /// A stream went quiet for longer than the idle timeout.
    Idle,
    /// A whole non-streaming exchange took too long.
    Total,
}

/// Why a marketplace call failed. The HTTP layer maps each case to one status.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MarketplaceError {
    /// No proxy-router is configured.
    #[error("no proxy-router is configured")]
    NotConfigured,
    /// Connection refused, reset, DNS failure: the request surely did not run upstream.
    #[error("the proxy-router cannot be reached: {0}")]
    Unreachable(String),
    /// The request may or may not have run upstream.
    #[error("the proxy-router did not answer in time ({0:?})")]
    Timeout(TimeoutPhase),
    /// The proxy-router refused our own credentials (401/403): an operator problem, never
    /// the client's.
    #[error("the proxy-router refused the gateway's credentials")]
    Unauthorized,
    /// The session is unknown upstream or past its end.
    #[error("session {0}")]
    SessionGone(SessionGone),
    /// The proxy-router answered with an error status. `message` is the upstream's error text
    /// (already stripped of anything that looks like a secret or an internal address).
    #[error("the proxy-router answered {status}: {message}")]
    Rejected {
        status: u16,
        message: String,
        retry_after: Option<Duration>,
    },
    /// The provider's backend refused or failed the request; the node reports it as 400
    /// `{"providerModelError":…}` whatever the backend's status was. `message` is the backend's
    /// own text, sanitised and capped like every upstream text.
    #[error("the provider's backend failed ({fault:?}): {message}")]
    Provider {
        fault: ProviderFault,
        message: String,
        retry_after: Option<Duration>,
    },
    /// The answer could not be used: not JSON, wrong shape, too big, a redirect, …
    #[error("the proxy-router sent an unusable answer: {0}")]
    InvalidResponse(String),
}

/// What a provider's error body says happened, as far as it can be told without the status
/// (the node drops it).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProviderFault {
    /// The backend's rate limit (OpenAI's 429).
    RateLimited,
    /// The request itself is wrong for the model (e.g. longer than its context).
    InvalidRequest,
    /// The provider cannot serve: its backend key, model or service is broken.
    Unavailable,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SessionGone {
    Expired,
    NotFound,
    /// The session will not work again though the chain has it open: the node lost the
    /// provider, the provider lost us, its attestation fails, or it cannot be reached
    /// (proxy-router-behaviour.md §2.6).
    Unusable,
}

impl std::fmt::Display for SessionGone {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Self::Expired => "expired",
            Self::NotFound => "not found",
            Self::Unusable => "unusable",
        })
    }
}

/// Which of the node's inference routes a request goes to. Each serves models of one type.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Endpoint {
    #[default]
    ChatCompletions,
    Embeddings,
    /// Speech to text: a multipart upload, answered in the format asked for.
    Transcriptions,
    /// Text to speech: answered with audio bytes.
    Speech,
}

impl Endpoint {
    /// The type of model the route serves.
    pub fn model_type(self) -> ModelType {
        match self {
            Self::ChatCompletions => ModelType::Llm,
            Self::Embeddings => ModelType::Embedding,
            Self::Transcriptions => ModelType::Stt,
            Self::Speech => ModelType::Tts,
        }
    }

    /// The node's path for it (`proxyapi/controller_http.go:90,100-102`), which is also
    /// OpenAI's.
    pub fn path(self) -> &'static str {
        match self {
            Self::ChatCompletions => "/v1/chat/completions",
            Self::Embeddings => "/v1/embeddings",
            Self::Transcriptions => "/v1/audio/transcriptions",
            Self::Speech => "/v1/audio/speech",
        }
    }
}

/// One inference request as sent upstream through a session: the client's body with the
/// gateway-only fields removed.
#[derive(Debug, Clone)]
pub struct ChatCall {
    pub endpoint: Endpoint,
    pub session: SessionId,
    /// JSON object, ready to send (empty for a transcription, which sends `upload`).
    pub body: Bytes,
    /// A transcription's form.
    pub upload: Option<super::Upload>,
    pub stream: bool,
    /// Sent upstream as `X-Request-Id` so one request can be followed across both logs.
    pub request_id: Option<String>,
}

/// One server-sent event of a chat stream.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChatEvent {
    /// The event's `data` as the upstream sent it (a `chat.completion.chunk` JSON), relayed
    /// without re-serialising; only a final chunk with the node's `usage_from_*` counts is
    /// rewritten without them.
    pub data: String,
    /// Usage reported in this chunk, if any (checked: non-negative and in range).
    pub usage: Option<ReportedUsage>,
    /// The closing `"choices":[]` chunk that only carries `usage`: the gateway always asks for
    /// it and relays it only to clients that asked for it too.
    pub usage_only: bool,
    /// How much generated text the chunk carries: the raw length of its choices' `content`,
    /// `reasoning_content` and `tool_calls`. A cut stream whose final usage never comes is
    /// charged on what was delivered, estimated from this.
    pub generated_bytes: u32,
}

/// How a stream broke after it had started.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum StreamFault {
    #[error("the upstream stream went quiet for too long")]
    Idle,
    #[error("the upstream stream ended before the completion finished")]
    Truncated,
    #[error("the upstream connection failed mid-stream: {0}")]
    Transport(String),
    #[error("the upstream sent an unreadable event: {0}")]
    Malformed(String),
    /// The upstream itself reported an error inside the stream.
    #[error("the upstream reported an error mid-stream: {0}")]
    Upstream(String),
}

pub type ChatEventStream = Pin<Box<dyn Stream<Item = Result<ChatEvent, StreamFault>> + Send>>;

/// A successful answer from the upstream's chat endpoint.
pub enum ChatReply {
    /// A whole JSON answer: a `chat.completion`, or an embeddings `list`.
    Complete {
        /// Without the node's `usage_from_*` members.
        body: Bytes,
        usage: Option<ReportedUsage>,
    },
    /// Events as they arrive. The stream ends after the final chunk; an upstream `[DONE]` is
    /// consumed, not relayed (the gateway writes its own).
    Stream(ChatEventStream),
    /// An audio route's answer, relayed as bytes.
    Media(super::MediaReply),
}

impl std::fmt::Debug for ChatReply {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Complete { body, usage } => f
                .debug_struct("Complete")
                .field("bytes", &body.len())
                .field("usage", usage)
                .finish(),
            Self::Stream(_) => f.write_str("Stream(..)"),
            Self::Media(media) => f
                .debug_struct("Media")
                .field("content_type", &media.content_type)
                .field("usage", &media.usage)
                .finish_non_exhaustive(),
        }
    }
}

/// The proxy-router, as the services use it.
///
/// Implementations never re-send a request that may have spent money (a session open) without
/// first checking whether the first attempt succeeded.
#[async_trait]
pub trait Marketplace: Send + Sync {
    /// `GET /healthcheck`.
    async fn health(&self) -> Result<(), MarketplaceError>;
    /// Every model on chain, deleted ones included.
    async fn models(&self) -> Result<Vec<MarketModel>, MarketplaceError>;
    async fn rated_bids(&self, model: &ModelId) -> Result<Vec<RatedBid>, MarketplaceError>;
    /// One bid; `None` when the chain does not know it or it was deleted.
    async fn bid(&self, id: &BidId) -> Result<Option<Bid>, MarketplaceError>;
    /// Lets `spender` move `amount` wei of MOR from the node's wallet.
    async fn approve(&self, spender: &EthAddress, amount: u128)
    -> Result<TxHash, MarketplaceError>;
    async fn open_model_session(
        &self,
        model: &ModelId,
        terms: SessionTerms,
    ) -> Result<SessionId, MarketplaceError>;
    async fn open_bid_session(
        &self,
        bid: &BidId,
        terms: SessionTerms,
    ) -> Result<SessionId, MarketplaceError>;
    async fn session(&self, id: &SessionId) -> Result<UpstreamSession, MarketplaceError>;
    async fn close_session(&self, id: &SessionId) -> Result<TxHash, MarketplaceError>;
    /// The node wallet's sessions that are still open on chain (not closed; possibly past their
    /// end), newest first: what the janitor compares with the database to find orphans.
    async fn wallet_sessions(&self) -> Result<Vec<UpstreamSession>, MarketplaceError>;
    async fn chat(&self, call: ChatCall) -> Result<ChatReply, MarketplaceError>;
    /// `GET /blockchain/balance`: the node wallet's ETH and MOR, for the MOR low-water mark.
    async fn balance(&self) -> Result<WalletBalance, MarketplaceError>;
}

/// An optional feed of the models the operator wants listed (the original's
/// `active_models.json`), in the same shape as the chain's list.
#[async_trait]
pub trait ModelFeed: Send + Sync {
    async fn active_models(&self) -> Result<Vec<MarketModel>, MarketplaceError>;
}
