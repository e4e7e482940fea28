//! The read-only chain data (models and bids), with its JSON rendered once at start-up so the
//! catalogue routes cost a refcount bump per request.

use std::collections::HashMap;

use bytes::Bytes;
use serde::Serialize;

use crate::config::{SimBid, SimModel};
use crate::ids::derived_hex;

/// Model fee and stake are `*big.Int` on the wire: JSON numbers, above 2^53.
const MODEL_FEE: u128 = 100_000_000_000_000_000;
const MODEL_STAKE: u128 = 10_000_000_000_000_000_000;

#[derive(Serialize)]
#[serde(rename_all = "PascalCase")]
struct ModelOut<'a> {
    id: &'a str,
    #[serde(rename = "IpfsCID")]
    ipfs_cid: String,
    fee: u128,
    stake: u128,
    owner: String,
    name: &'a str,
    tags: &'a [String],
    created_at: u64,
    is_deleted: bool,
    model_type: &'static str,
}

/// The model's type from its tags, the first recognised tag winning, as
/// `blockchainapi/model_tags.go:20-37` derives it (`structs/model.go:19,27-33`).
pub(crate) fn model_type(tags: &[String]) -> &'static str {
    for tag in tags {
        match tag.to_lowercase().as_str() {
            "stt" | "transcribe" | "s2t" | "speech" | "speech-to-text" | "speech2text" => {
                return "STT";
            }
            "tts" | "text-to-speech" | "text2speech" | "t2s" => return "TTS",
            "embedding" | "embeddings" => return "EMBEDDING",
            "llm" | "textgeneration" | "text2text" | "text-to-text" | "t2t" => return "LLM",
            _ => {}
        }
    }
    "UNKNOWN"
}

/// The rated bids' outer `ID`: the node never sets it (`blockchainapi/service.go:306-317`).
const ZERO_HASH: &str = "0x0000000000000000000000000000000000000000000000000000000000000000";

/// A bid as the proxy-router renders it: its four numbers are decimal strings.
#[derive(Serialize)]
#[serde(rename_all = "PascalCase")]
struct BidOut<'a> {
    id: &'a str,
    provider: &'a str,
    model_agent_id: &'a str,
    price_per_second: String,
    nonce: String,
    created_at: String,
    deleted_at: String,
}

#[derive(Serialize)]
struct RatedBidOut<'a> {
    #[serde(rename = "ID")]
    id: &'a str,
    #[serde(rename = "Bid")]
    bid: BidOut<'a>,
    #[serde(rename = "Score")]
    score: f64,
}

// Envelopes are typed rather than `json!` because `serde_json::Value` cannot hold a u128.
#[derive(Serialize)]
struct ModelsOut<'a> {
    models: &'a [ModelOut<'a>],
}

#[derive(Serialize)]
struct RatedOut<'a> {
    bids: &'a [RatedBidOut<'a>],
}

#[derive(Serialize)]
struct BidEnvelope<'a> {
    bid: BidOut<'a>,
}

pub(crate) struct Catalog {
    pub models: Vec<SimModel>,
    /// Lower-case model id → index.
    model_index: HashMap<String, usize>,
    /// Lower-case bid id → (model index, bid index).
    bid_index: HashMap<String, (usize, usize)>,
    pub models_json: Bytes,
    /// `{"bids":[…]}` per model, best score first.
    rated_json: Vec<Bytes>,
    /// `{"bid":{…}}` per model, per bid.
    bid_json: Vec<Vec<Bytes>>,
}

fn to_bytes<T: Serialize>(v: &T) -> Bytes {
    // Serialising plain structs of strings and numbers cannot fail.
    Bytes::from(serde_json::to_vec(v).unwrap_or_default())
}

fn bid_out<'a>(model: &'a SimModel, bid: &'a SimBid, nonce: usize) -> BidOut<'a> {
    BidOut {
        id: &bid.id,
        provider: &bid.provider,
        model_agent_id: &model.id,
        price_per_second: bid.price_per_second.to_string(),
        nonce: nonce.to_string(),
        created_at: (model.created_at + 60).to_string(),
        deleted_at: "0".to_owned(),
    }
}

impl Catalog {
    pub fn new(models: Vec<SimModel>) -> Self {
        let listed: Vec<ModelOut<'_>> = models
            .iter()
            .map(|m| ModelOut {
                id: &m.id,
                ipfs_cid: derived_hex(&format!("ipfs:{}", m.id), 64),
                fee: MODEL_FEE,
                stake: MODEL_STAKE,
                owner: derived_hex(&format!("owner:{}", m.id), 40),
                name: &m.name,
                tags: &m.tags,
                created_at: m.created_at,
                is_deleted: m.is_deleted,
                model_type: model_type(&m.tags),
            })
            .collect();
        let models_json = to_bytes(&ModelsOut { models: &listed });

        let mut rated_json = Vec::with_capacity(models.len());
        let mut bid_json = Vec::with_capacity(models.len());
        for m in &models {
            let mut order: Vec<usize> = (0..m.bids.len()).collect();
            order.sort_by(|&a, &b| m.bids[b].score.total_cmp(&m.bids[a].score));
            let rated: Vec<RatedBidOut<'_>> = order
                .iter()
                .map(|&i| RatedBidOut {
                    id: ZERO_HASH,
                    bid: bid_out(m, &m.bids[i], i),
                    score: m.bids[i].score,
                })
                .collect();
            rated_json.push(to_bytes(&RatedOut { bids: &rated }));
            bid_json.push(
                m.bids
                    .iter()
                    .enumerate()
                    .map(|(i, b)| {
                        to_bytes(&BidEnvelope {
                            bid: bid_out(m, b, i),
                        })
                    })
                    .collect(),
            );
        }

        let model_index = models
            .iter()
            .enumerate()
            .map(|(i, m)| (m.id.to_ascii_lowercase(), i))
            .collect();
        let bid_index = models
            .iter()
            .enumerate()
            .flat_map(|(mi, m)| {
                m.bids
                    .iter()
                    .enumerate()
                    .map(move |(bi, b)| (b.id.to_ascii_lowercase(), (mi, bi)))
            })
            .collect();
        Self {
            models,
            model_index,
            bid_index,
            models_json,
            rated_json,
            bid_json,
        }
    }

    pub fn model_index(&self, id: &str) -> Option<usize> {
        self.model_index.get(&id.to_ascii_lowercase()).copied()
    }

    pub fn bid_index(&self, id: &str) -> Option<(usize, usize)> {
        self.bid_index.get(&id.to_ascii_lowercase()).copied()
    }

    pub fn rated_json(&self, model: usize) -> Bytes {
        self.rated_json[model].clone()
    }

    pub fn bid_json(&self, (model, bid): (usize, usize)) -> Bytes {
        self.bid_json[model][bid].clone()
    }

    /// A model's bids, best score first: the order the node tries them in when it opens by model
    /// (`blockchainapi/service.go:1164-1193`).
    pub fn bids_by_score(&self, model: usize) -> Vec<usize> {
        let bids = &self.models[model].bids;
        let mut order: Vec<usize> = (0..bids.len()).collect();
        order.sort_by(|&a, &b| bids[b].score.total_cmp(&bids[a].score));
        order
    }
}
