use morpheus_domain::{MarketModel, ModelType, RatedBid};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

/// Models in OpenAI's list shape, with the marketplace's id and tags.
#[derive(Debug, Serialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ModelList {
    /// Always `list`.
    #[schema(example = "list")]
    pub object: String,
    pub data: Vec<ModelEntry>,
}

#[derive(Debug, Serialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ModelEntry {
    /// The model's name: what to send as `model`.
    #[schema(example = "llama-3.3-70b")]
    pub id: String,
    /// Always `model`.
    pub object: String,
    /// When the model was registered, in Unix seconds.
    pub created: i64,
    /// The address that registered the model.
    pub owned_by: String,
    /// The model's id on chain (`0x` + 64 hex digits).
    #[serde(rename = "blockchainID")]
    pub blockchain_id: String,
    pub tags: Vec<String>,
    /// What the model does, from the marketplace's tags: the routes it serves (`LLM`: chat,
    /// `EMBEDDING`: embeddings, `STT`: transcriptions, `TTS`: speech; `UNKNOWN`: any).
    pub model_type: ModelKind,
}

/// A model's type, as the proxy-router names it.
#[derive(Debug, Clone, Copy, Serialize, ToSchema)]
#[serde(rename_all = "UPPERCASE")]
pub enum ModelKind {
    Llm,
    Embedding,
    Stt,
    Tts,
    Unknown,
}

impl From<ModelType> for ModelKind {
    fn from(t: ModelType) -> Self {
        match t {
            ModelType::Llm => Self::Llm,
            ModelType::Embedding => Self::Embedding,
            ModelType::Stt => Self::Stt,
            ModelType::Tts => Self::Tts,
            ModelType::Unknown => Self::Unknown,
        }
    }
}

impl ModelList {
    pub fn from_models(models: &[MarketModel]) -> Self {
        Self {
            object: "list".to_owned(),
            data: models
                .iter()
                .map(|m| ModelEntry {
                    id: m.name.clone(),
                    object: "model".to_owned(),
                    created: m.created_at,
                    owned_by: if m.owner.is_empty() {
                        "morpheus".to_owned()
                    } else {
                        m.owner.clone()
                    },
                    blockchain_id: m.id.to_string(),
                    tags: m.tags.clone(),
                    model_type: m.model_type.into(),
                })
                .collect(),
        }
    }
}

#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct RatedBidsQuery {
    /// A model name, alias or on-chain id (`0x` + 64 hex digits).
    #[param(min_length = 1, max_length = 256, pattern = "\\S")]
    pub model_id: String,
}

/// The proxy-router's rated bids, in its own field names; amounts are decimal strings (they
/// exceed 2^64).
#[derive(Debug, Serialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RatedBids {
    pub bids: Vec<RatedBidEntry>,
}

#[derive(Debug, Serialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RatedBidEntry {
    #[serde(rename = "ID")]
    pub id: String,
    #[serde(rename = "Bid")]
    pub bid: BidEntry,
    #[serde(rename = "Score")]
    pub score: f64,
}

#[derive(Debug, Serialize, ToSchema)]
#[serde(deny_unknown_fields, rename_all = "PascalCase")]
pub struct BidEntry {
    pub id: String,
    pub provider: String,
    pub model_agent_id: String,
    /// Wei of MOR per second, as a decimal string.
    #[schema(pattern = "^[0-9]+$")]
    pub price_per_second: String,
    #[schema(pattern = "^[0-9]+$")]
    pub nonce: String,
    #[schema(pattern = "^[0-9]+$")]
    pub created_at: String,
    #[schema(pattern = "^[0-9]+$")]
    pub deleted_at: String,
}

impl From<&RatedBid> for RatedBidEntry {
    fn from(r: &RatedBid) -> Self {
        Self {
            id: r.id.to_string(),
            bid: BidEntry {
                id: r.bid.id.to_string(),
                provider: r.bid.provider.clone(),
                model_agent_id: r.bid.model_agent_id.clone(),
                price_per_second: r.bid.price_per_second.to_string(),
                nonce: r.bid.nonce.to_string(),
                created_at: r.bid.created_at.to_string(),
                deleted_at: r.bid.deleted_at.to_string(),
            },
            score: r.score,
        }
    }
}
