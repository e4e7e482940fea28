//! What a simulator serves: credentials, the model/bid catalogue, stream pacing.

use std::time::Duration;

use crate::ids::derived_hex;

/// Start-up configuration of one simulator.
///
/// The defaults are today's proxy-router (`main` 04e6c425); each setting that restores an older
/// node's (or the old simulator's) behaviour says so. Latencies default to zero so tests stay
/// fast; a real node takes seconds to minutes to open a session and a real model hundreds of
/// milliseconds to its first token.
#[derive(Clone, Debug)]
pub struct SimConfig {
    /// HTTP Basic auth user every non-public route requires.
    pub user: String,
    pub password: String,
    /// The methods `user` may call, as in the node's `rpcwhitelist=user:m1,m2` (`"*"`: all).
    /// Others are refused with 403 `method not allowed` (`system/auth.go:369-389,411-415`).
    pub user_methods: Vec<String>,
    /// Further Basic-auth users, each with its own methods.
    pub extra_users: Vec<SimUser>,
    /// The on-chain catalogue, deleted models included.
    pub models: Vec<SimModel>,
    /// Pause between two SSE events of a chat stream; zero streams as fast as possible.
    pub chunk_delay: Duration,
    /// Whether streams end with `data: [DONE]`: the node relays the backend's, which an
    /// OpenAI-compatible backend always sends (`aiengine/openai.go:144-152`,
    /// `proxyapi/proxy_sender.go:1002-1006`, `controller_http.go:250-258`, since 69389199,
    /// 2025-11-19). `false` is the older node.
    pub done_marker: bool,
    /// The node's wallet (`0x` + 40 hex): `GET /wallet` and the `User` of every session.
    pub wallet: String,
    /// What `GET /config` reports for `PROXY_STORE_CHAT_CONTEXT` (and the forward setting):
    /// `true` is the node's default.
    pub store_chat_context: bool,
    /// Chat requests one session serves at a time; later ones wait their turn, first come first
    /// served, with nothing written to them meanwhile (`proxyapi/session_semaphore.go:50`,
    /// acquired at `proxy_sender.go:662-668`, since 30a2238f, 2025-12-22). `None`: no limit (the
    /// older node).
    pub session_concurrency: Option<u32>,
    /// Sessions shorter than this are refused the way the contract refuses them (after the
    /// open's latency, with the `SessionTooShort` revert). `0` accepts any positive duration
    /// (the old simulator).
    pub min_session_seconds: u64,
    /// How long an open takes before its answer (the provider handshake and up to two mined
    /// transactions, reference §2.1).
    pub open_latency: Duration,
    /// How long the provider's model takes (see [`ProviderLatency`]).
    pub provider_latency: ProviderLatency,
    /// Send a usage chunk in every stream, as the old simulator did. The node relays the
    /// backend's, which exists only when the request asks for `stream_options.include_usage`
    /// (reference §2.10).
    pub usage_without_include_usage: bool,
    /// Add `usage_from_provider` and `usage_from_consumer` to final stream chunks and JSON
    /// answers (`proxyapi/proxy_receiver.go:221-258`, `proxy_sender.go:1028-1043,1060-1061`,
    /// since ea87270a, 2025-12-15). `false` is the older node.
    pub node_usage_fields: bool,
    /// Pass chat bodies through go-openai v1.41.2 as the node does (reference §2.5): `stop` as a
    /// string and other type mismatches are 400, zero-valued and unknown nested fields are
    /// dropped before the "provider" sees the request. `false` reads the body as sent.
    pub rewrite_requests: bool,
    /// Honour `failover: true` on opens by model. Today's node ignores it: the flag has not been
    /// stored on the session since 0dbe2b29 (2025-01-22; `SetFailoverEnabled` is never called),
    /// so `proxy_sender.go:684-697` never fails over. `true` shows what the current code does
    /// with a failover session: on a provider failure it closes the session, opens a new one by
    /// model and writes control chunks (`proxy_sender.go:591-626`, `controller_http.go:250-258`).
    pub honour_failover: bool,
}

/// A further Basic-auth user of the node.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SimUser {
    pub name: String,
    pub password: String,
    /// As [`SimConfig::user_methods`].
    pub methods: Vec<String>,
}

/// How long the provider's model takes to answer: its first token after `first_token`, then one
/// token every `per_token`. A stream's head and first event arrive after `first_token` (gin writes
/// nothing before the first chunk); a JSON answer arrives whole after `first_token + per_token ×
/// completion tokens` (the backend's answer is decoded whole before anything is written,
/// `aiengine/openai.go:98-111`, `controller_http.go:243-277`). Stream events are `per_token` (plus
/// the chunk delay) apart.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ProviderLatency {
    pub first_token: Duration,
    pub per_token: Duration,
}

/// The default node wallet.
pub const DEFAULT_WALLET: &str = "0x9f3a1c5e7b2d4f608a1e3c5b7d9f0e2a4c6b8d01";

impl Default for SimConfig {
    fn default() -> Self {
        Self {
            user: "morpheus".to_owned(),
            password: "sim-password".to_owned(),
            user_methods: vec!["*".to_owned()],
            extra_users: Vec::new(),
            models: default_models(),
            chunk_delay: Duration::ZERO,
            done_marker: true,
            wallet: DEFAULT_WALLET.to_owned(),
            store_chat_context: true,
            session_concurrency: Some(1),
            min_session_seconds: crate::texts::MIN_SESSION_SECONDS,
            open_latency: Duration::ZERO,
            provider_latency: ProviderLatency::default(),
            usage_without_include_usage: false,
            node_usage_fields: true,
            rewrite_requests: true,
            honour_failover: false,
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

/// The default catalogue, two bids each, stable ids: three live chat models, one deleted model,
/// then one model of each other type the node serves (`ModelType` from their tags):
/// `text-embedding-bge-m3` (EMBEDDING), `tts-kokoro` (TTS) and `whisper-1` (STT).
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
        model(
            derived_hex("model:text-embedding-bge-m3", 64),
            "text-embedding-bge-m3",
            &["Embedding", "BGE"],
            1_748_736_000,
            false,
            [
                (500_000_000_000_000_000, 0.9),
                (700_000_000_000_000_000, 0.6),
            ],
        ),
        model(
            derived_hex("model:tts-kokoro", 64),
            "tts-kokoro",
            &["TTS", "Kokoro"],
            1_751_328_000,
            false,
            [
                (2_000_000_000_000_000_000, 0.86),
                (2_500_000_000_000_000_000, 0.52),
            ],
        ),
        model(
            derived_hex("model:whisper-1", 64),
            "whisper-1",
            &["STT", "Whisper"],
            1_754_006_400,
            false,
            [
                (1_500_000_000_000_000_000, 0.91),
                (1_800_000_000_000_000_000, 0.58),
            ],
        ),
    ]
}
