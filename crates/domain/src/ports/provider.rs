//! A plain OpenAI-compatible upstream the operator declares beside the marketplace (vLLM,
//! Ollama, an OpenAI account, …). Its answers have the marketplace's shapes, so the relay,
//! billing and limits treat both alike.

use async_trait::async_trait;
use bytes::Bytes;

use super::{ChatReply, Endpoint, MarketplaceError};

/// One request to a provider.
#[derive(Debug, Clone)]
pub struct ProviderCall {
    pub endpoint: Endpoint,
    /// The provider's own name for the model, sent as the body's `model`.
    pub model: String,
    /// The client's body without `model` and the gateway's own fields.
    pub body: Bytes,
    /// A transcription's form (its fields without `model`).
    pub upload: Option<super::Upload>,
    pub stream: bool,
    pub request_id: Option<String>,
}

#[async_trait]
pub trait Provider: Send + Sync {
    /// Failures use the marketplace's error cases: `Unreachable` (nothing ran), `Timeout`,
    /// `Rejected` (with the provider's status and `Retry-After`), `InvalidResponse`.
    async fn call(&self, call: ProviderCall) -> Result<ChatReply, MarketplaceError>;
}
