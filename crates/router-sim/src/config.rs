//! What a simulator serves: credentials, the model/bid catalogue, stream pacing.

use std::time::Duration;

use crate::ids::derived_hex;

/// Start-up configuration of one simulator.
#[derive(Clone, Debug)]
pub struct SimConfig {
    /// HTTP Basic auth user every non-public route requires.
    pub user: String,
    pub password: String,
    /// The on-chain catalogue, deleted models included.
    pub models: Vec<SimModel>,
    /// Pause between two SSE events of a chat stream; zero streams as fast as possible.
    pub chunk_delay: Duration,
    /// Whether streams end with `data: [DONE]`. The 2025 proxy-router did not send it, so the
    /// default is `false` and gateways must cope without it.
    pub done_marker: bool,
    /// The node's wallet (`0x` + 40 hex): `GET /wallet` and the `User` of every session.
    pub wallet: String,
    /// The methods `user` may call (`chat`, `get_models`, …, as in the node's whitelist);
    /// others answer 403 `method not allowed`. `None`: every method, like a node user without
    /// a whitelist.
    pub permissions: Option<Vec<String>>,
    /// What `GET /config` reports for `PROXY_STORE_CHAT_CONTEXT` (and the forward setting):
    /// `true` is the node's default.
    pub store_chat_context: bool,
}

/// The default node wallet.
pub const DEFAULT_WALLET: &str = "0x9f3a1c5e7b2d4f608a1e3c5b7d9f0e2a4c6b8d01";

impl Default for SimConfig {
    fn default() -> Self {
        Self {
            user: "morpheus".to_owned(),
            password: "sim-password".to_owned(),
            models: default_models(),
            chunk_delay: Duration::ZERO,
            done_marker: false,
            wallet: DEFAULT_WALLET.to_owned(),
            permissions: None,
            store_chat_context: true,
        }
    }
}

/// One model registered on chain.
#[derive(Clone, Debug, PartialEq)]
pub struct SimModel {
    /// `0x` + 64 hex.
    pub id: String,
    pub name: String,
    pub tags: Vec<String>,
    /// Unix seconds.
    pub created_at: u64,
    /// Deleted models are still listed (as the chain does) but accept no session.
    pub is_deleted: bool,
    pub bids: Vec<SimBid>,
}

/// One provider's offer for a model.
#[derive(Clone, Debug, PartialEq)]
pub struct SimBid {
    /// `0x` + 64 hex.
    pub id: String,
    /// `0x` + 40 hex.
    pub provider: String,
    /// Wei of MOR per second; real values exceed 2^53, which is the point.
    pub price_per_second: u128,
    /// Rating the proxy-router gives the bid; sessions opened by model pick the highest.
    pub score: f64,
}

/// Id of the default catalogue's `llama-3.3-70b` (the id the live network used).
pub const LLAMA_MODEL_ID: &str =
    "0xdf474728f624712570170f311a866a6937436c14861568f38593a531b7f45845";

/// 2^53 + 1: the smallest integer an f64 (JavaScript number) cannot hold, so a client that
/// parses prices as floats visibly corrupts it.
const JUST_ABOVE_2_POW_53: u128 = 9_007_199_254_740_993;

/// The default catalogue: three live models and one deleted one, two bids each, stable ids.
pub fn default_models() -> Vec<SimModel> {
    let model = |id: String,
                 name: &str,
                 tags: &[&str],
                 created_at: u64,
                 is_deleted: bool,
                 bids: [(u128, f64); 2]| SimModel {
        bids: bids
            .iter()
            .enumerate()
            .map(|(i, &(price_per_second, score))| SimBid {
                id: derived_hex(&format!("bid:{name}:{i}"), 64),
                provider: derived_hex(&format!("provider:{name}:{i}"), 40),
                price_per_second,
                score,
            })
            .collect(),
        id,
        name: name.to_owned(),
        tags: tags.iter().map(|t| (*t).to_owned()).collect(),
        created_at,
        is_deleted,
    };
    vec![
        model(
            LLAMA_MODEL_ID.to_owned(),
            "llama-3.3-70b",
            &["LLM", "Llama"],
            1_735_689_600,
            false,
            [
                (12_000_000_000_000_000_000, 0.92),
                (JUST_ABOVE_2_POW_53, 0.61),
            ],
        ),
        model(
            derived_hex("model:mistral-31-24b", 64),
            "mistral-31-24b",
            &["Mistral", "Default"],
            1_738_368_000,
            false,
            [
                (3_000_000_000_000_000_000, 0.88),
                (4_500_000_000_000_000_000, 0.45),
            ],
        ),
        model(
            derived_hex("model:qwen3-235b", 64),
            "qwen3-235b",
            &["LLM", "Qwen"],
            1_746_057_600,
            false,
            [
                (15_000_000_000_000_000_000, 0.97),
                (11_000_000_000_000_000_000, 0.73),
            ],
        ),
        model(
            derived_hex("model:retired-model", 64),
            "retired-model",
            &["Deprecated"],
            1_704_067_200,
            true,
            [
                (1_000_000_000_000_000_000, 0.5),
                (2_000_000_000_000_000_000, 0.4),
            ],
        ),
    ]
}
