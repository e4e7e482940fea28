//! The gateway's settings, each declared once below: name, type, default, environment
//! variable, command-line flag, bounds, checks and a one-line description (its doc comment).
//! The `Settings` struct, its `Default`, parsing, validation, the command-line flags, README's
//! settings table (checked by a test) and `morpheus-gateway config` are all made from these
//! declarations (see `configuration/declare.rs` for the syntax).
//!
//! Values are layered: defaults < TOML file (`--config`, `MORPHEUS_CONFIG`) < environment <
//! command line. A key of the file that is not a setting stops the start; an unknown
//! `MORPHEUS_*` variable is reported at start-up with the closest setting's name, and ignored
//! (orchestrators set variables of their own under a service's name, such as Kubernetes'
//! `MORPHEUS_PORT` for a service called `morpheus`).

pub mod declare;
mod flags;
mod load;
mod render;
mod types;

use std::path::{Path, PathBuf};

use secrecy::SecretString;

use declare::settings;
pub use flags::SettingFlags;
pub use load::{Loaded, Origin, Sources, load_from};
pub use render::{effective_json, effective_rows, readme_table};
use types::choice_setting;

/// `MORPHEUS_*` variables the project reads that are not settings (so they are not reported
/// as unknown). Add yours here with what it is for.
pub const OTHER_VARIABLES: &[(&str, &str)] = &[
    ("MORPHEUS_CONFIG", "the TOML file of settings (`--config`)"),
    (
        "MORPHEUS_TEST_DATABASE_URL",
        "the test suite: run it against this PostgreSQL server",
    ),
    (
        "MORPHEUS_TEST_REDIS_URL",
        "the test suite: run the shared counters' tests against this Redis server",
    ),
];

choice_setting! {
    /// `development` generates missing secrets; `production` refuses to start without them.
    Environment { Development => "development", Production => "production" } default Development
}

choice_setting! {
    LogFormat { Pretty => "pretty", Json => "json" } default Pretty
}

choice_setting! {
    /// SQLite's `synchronous` under WAL (see README "Durability checks"): `normal` may lose the
    /// last commits on power loss, `full` fsyncs every commit. Neither loses any on a crash.
    SqliteSynchronous { Normal => "normal", Full => "full" } default Normal
}

impl From<SqliteSynchronous> for morpheus_storage::SqliteSynchronous {
    fn from(setting: SqliteSynchronous) -> Self {
        match setting {
            SqliteSynchronous::Normal => morpheus_storage::SqliteSynchronous::Normal,
            SqliteSynchronous::Full => morpheus_storage::SqliteSynchronous::Full,
        }
    }
}

settings! {
    /// `production` refuses to start without the three secrets below, or with any secret that
    /// is obviously not random (see Security notes)
    env: Environment = Environment::Development;
    /// listen address
    bind: String = "127.0.0.1:8000".into(), cli = "bind";
    /// `postgres://…`, `sqlite://PATH` or a file path
    database_url: String = "sqlite://data/morpheus.db".into(),
        env = "DATABASE_URL", cli = "database-url", check = checks::database_url,
        shown = checks::database_url_shown;
    /// where development secrets are kept
    data_dir: PathBuf = PathBuf::from("data");
    /// HS256 key, at least 32 bytes
    jwt_secret: Option<SecretString> = None, default_doc = "generated in development";
    /// retired HS256 keys, comma-separated: tokens they signed stay valid until they expire
    jwt_previous_secrets: Option<SecretString> = None;
    /// HMAC-SHA256 key for API-key digests, at least 32 bytes
    api_key_pepper: Option<SecretString> = None, default_doc = "generated in development";
    /// AES-256-GCM key for wallet keys, 64 hex digits
    wallet_master_key: Option<SecretString> = None, default_doc = "generated in development";
    /// retired master keys, comma-separated; they only open what they sealed (see rotation below)
    wallet_previous_master_keys: Option<SecretString> = None;
    /// access-token lifetime
    access_token_minutes: i64 = 30, range = 1 ..= 1440;
    /// refresh-token lifetime
    refresh_token_days: i64 = 7, range = 1 ..= 365;
    /// access tokens are checked against users read at most this long ago: a sign-out,
    /// password change or disabled account on another replica takes effect within it (`0`:
    /// read on every request)
    user_cache_seconds: u64 = 5, range = 0 ..= 3_600;
    /// a login (or password change) this recent lets its access tokens delete the account
    /// without the password (refreshing keeps the login's time)
    fresh_sign_in_seconds: i64 = 300, range = 0 ..= 86_400;
    /// database connections
    db_pool_size: u32 = 10, range = 1 ..= 1000;
    /// wait for a pooled connection before answering 503
    db_connect_timeout_ms: u64 = 2000, range = 1 ..= 600_000;
    /// SQLite only: `full` also keeps the last commits through a power loss, at one fsync per
    /// write ([Durability checks](#durability-checks))
    sqlite_synchronous: SqliteSynchronous = SqliteSynchronous::Normal;
    /// HTTP worker threads
    workers: usize = 0, range = 0 ..= 1024, default_doc = "`0` (one per CPU)";
    /// argon2 computations at once
    password_hash_concurrency: usize = 0, range = 0 ..= 1024, default_doc = "`0` (one per CPU)";
    /// wait for a hashing slot before answering 503
    password_hash_queue_ms: u64 = 2000, range = 0 ..= 600_000;
    /// login attempts per account from one client address in a burst (the hard limit, 429)…
    login_attempts_per_account_client: u32 = 10, range = 1 ..= 1_000_000_000;
    /// …and one more every this many seconds (10 per 15 min)
    login_account_client_refill_seconds: u64 = 90, range = 1 ..= 86_400;
    /// attempts in a row on an account without a success, after which only addresses it has
    /// logged in from may try (NIST SP 800-63B: 100)…
    login_failures_per_account: u32 = 100, range = 1 ..= 1_000_000_000;
    /// …one of them forgotten every this many seconds
    login_account_refill_seconds: u64 = 90, range = 1 ..= 86_400;
    /// past `MORPHEUS_LOGIN_ATTEMPTS_PER_ACCOUNT_CLIENT` attempts in a row on an account, each
    /// waits before its password is checked, from 250 ms, doubling, up to this
    login_account_max_delay_ms: u64 = 4_000, range = 0 ..= 600_000;
    /// login attempts per client address in a burst…
    login_attempts_per_client: u32 = 30, range = 1 ..= 1_000_000_000;
    /// …and one more every this many seconds
    login_client_refill_seconds: u64 = 2, range = 1 ..= 86_400;
    /// registrations per client address in a burst…
    registrations_per_client: u32 = 20, range = 1 ..= 1_000_000_000;
    /// …and one more every this many seconds
    registration_client_refill_seconds: u64 = 60, range = 1 ..= 86_400;
    /// active keys per user (409 beyond)
    max_api_keys_per_user: u64 = 100, range = 1 ..= 1_000_000;
    /// API keys a user may create in any 24 hours, revoked ones included, so the active-key cap
    /// cannot be reset by revoking and creating again (429 beyond)
    key_creations_per_day: u64 = 20, range = 1 ..= 1_000_000;
    /// delegations stored per user, active or not (409 beyond)
    max_delegations_per_user: u64 = 100, range = 1 ..= 1_000_000;
    /// characters of one signed delegation (422 beyond)
    max_delegation_chars: usize = 65_536, range = 1 ..= 1_000_000;
    /// chats stored per user, archived ones included (409 beyond)
    max_chats_per_user: u64 = 1_000, range = 1 ..= 1_000_000;
    /// messages stored per chat (409 beyond)
    max_messages_per_chat: u64 = 10_000, range = 1 ..= 1_000_000;
    /// bytes of one stored chat message's content (422 beyond; request bodies are capped at
    /// 1 MiB whatever this says)
    max_chat_message_bytes: usize = 262_144, range = 1 ..= 1_048_576;
    /// when set, delegations must be granted to this address
    gateway_delegate_address: Option<String> = None, check = checks::eth_address;
    /// `json` for one JSON object per line
    log_format: LogFormat = LogFormat::Pretty;
    /// the Morpheus proxy-router, e.g. `http://127.0.0.1:8082`; unset → marketplace routes
    /// answer 503
    proxy_router_url: Option<String> = None, cli = "proxy-router-url",
        shown = checks::url_shown;
    /// its Basic-auth user
    proxy_router_user: Option<String> = None;
    /// its Basic-auth password
    proxy_router_password: Option<SecretString> = None;
    /// connecting to it (504 beyond)
    proxy_router_connect_timeout_ms: u64 = 3_000, range = 1 ..= 600_000;
    /// wait for the head of an answer: a stream's first event, a non-chat call's answer (504
    /// beyond)
    proxy_router_first_byte_timeout_ms: u64 = 60_000, range = 1 ..= 3_600_000;
    /// longest quiet gap inside a stream (then a terminal error event)
    proxy_router_idle_timeout_ms: u64 = 60_000, range = 1 ..= 3_600_000;
    /// whole non-chat calls (models, bids, sessions, approve)
    proxy_router_request_timeout_ms: u64 = 30_000, range = 1 ..= 3_600_000;
    /// a whole session open: two mined transactions and a provider handshake (504 beyond, then
    /// the session is looked for)
    proxy_router_open_timeout_ms: u64 = 300_000, range = 1 ..= 3_600_000;
    /// after an open with an unknown outcome (a timeout, or a text the node returns after the
    /// money moved), how long the node's sessions are watched for the one it opened
    proxy_router_open_recovery_ms: u64 = 120_000, range = 0 ..= 3_600_000;
    /// a whole non-streamed chat completion, head included: the node sends nothing before the
    /// provider has finished (504 beyond)
    proxy_router_chat_timeout_ms: u64 = 300_000, range = 1 ..= 3_600_000;
    /// demo: run morpheus-router-sim in-process and use it; refused in production
    simulate_marketplace: bool = false, cli = "simulate-marketplace";
    /// a feed of the models to offer (`{"models":[…]}`, the chain's shape); default: the
    /// chain's list
    active_models_url: Option<String> = None, shown = checks::url_shown;
    /// how often the model catalogue is refreshed
    models_refresh_seconds: u64 = 60, range = 1 ..= 86_400;
    /// model for requests that name none (else the one tagged `Default`)
    default_model: Option<String> = None;
    /// extra names, `alias=model,alias2=0x…`
    model_aliases: Option<String> = None, check = checks::model_aliases;
    /// the spender of `POST /session/approve` (503 while unset)
    diamond_contract_address: Option<String> = None, check = checks::eth_address;
    /// how often ended sessions are closed and records reconciled
    session_sweep_seconds: u64 = 60, range = 1 ..= 86_400;
    /// most pooled sessions per model, open or being opened, all replicas together (each
    /// stakes MOR; the node serves one request per session at a time)
    pool_max_sessions_per_model: u32 = 8, range = 1 ..= 1_000;
    /// most requests waiting for a pooled session, per model and replica (429 `pool_busy` beyond)
    pool_queue_depth: usize = 256, range = 0 ..= 100_000;
    /// how long a request waits for a pooled session (429 `pool_busy` with Retry-After beyond);
    /// opening one takes the node seconds to minutes
    pool_queue_ms: u64 = 30_000, range = 0 ..= 600_000;
    /// how long a replica's hold on a pooled session lasts unrenewed (renewed every quarter);
    /// a replica that dies lets its sessions go after this
    pool_lease_seconds: u64 = 60, range = 4 ..= 3_600;
    /// close idle pooled sessions (beyond one per model) after this many seconds; 0 keeps them
    /// until their end, since closing early locks the unused stake for about a day
    pool_idle_grace_seconds: u64 = 0, range = 0 ..= 86_400;
    /// most bids one pool open tries, best rated first, moving on when a provider refuses (503
    /// `model_unavailable` when none accepts)
    pool_open_attempts: u32 = 3, range = 1 ..= 50;
    /// how long a provider that refused a session, or whose session stopped working, gets no
    /// new pooled sessions
    pool_provider_cooldown_seconds: u64 = 300, range = 0 ..= 86_400;
    /// MOR all session opens together (pooled and explicit) may stake per UTC day, counted on
    /// every replica through `MORPHEUS_REDIS_URL` (503 `stake_budget_exhausted` beyond, with
    /// Retry-After to the day's end); unset: no budget ([Stake governance](#stake-governance))
    stake_daily_budget_mor: Option<String> = None, check = checks::mor;
    /// no session is opened on a bid asking more MOR per second than this: the pool skips such
    /// bids (503 `bid_price_above_limit` when none is left), an explicit open is refused; unset:
    /// no limit
    max_bid_price_per_second_mor: Option<String> = None, check = checks::mor;
    /// below this MOR balance of the node's wallet only `MORPHEUS_WARM_MODELS` open new sessions
    /// (503 `mor_below_low_water_mark`); unset: no mark
    mor_low_water_mark_mor: Option<String> = None, check = checks::mor;
    /// models (names or ids, comma-separated) that may still open sessions below the MOR
    /// low-water mark
    warm_models: Option<String> = None;
    /// how long a replica reuses its read of the node wallet's balance (a failed read lets opens
    /// through)
    mor_balance_cache_seconds: u64 = 15, range = 0 ..= 3_600;
    /// the node's stake per MOR of bid price × duration (its token supply ÷ today's budget),
    /// for reserving an open's stake from the daily budget before it is known; each open's real
    /// stake replaces it on that replica
    stake_estimate_factor: String = "1".into(), check = checks::stake_factor;
    /// active explicit sessions (`/session/modelsession`, `/session/bidsession`) per user, all
    /// keys together (429 `too_many_sessions` beyond); `0`: no limit
    max_sessions_per_user: u64 = 5, range = 0 ..= 1_000_000;
    /// longest `sessionDuration` of an explicit session, in seconds (422
    /// `session_duration_exceeded` beyond)
    max_session_duration_seconds: u32 = 3_600, range = 300 ..= 86_400;
    /// cap on `max_tokens` / `max_completion_tokens`
    chat_max_tokens: u32 = 32_768, range = 1 ..= 100_000_000;
    /// cap on `n`
    chat_max_choices: u32 = 8, range = 1 ..= 128;
    /// cap on messages per request
    chat_max_messages: usize = 1_000, range = 1 ..= 1_000_000;
    /// cap on tools per request
    chat_max_tools: usize = 128, range = 0 ..= 100_000;
    /// largest chat request (images and audio travel inside it; 413 beyond)
    chat_max_body_bytes: usize = 4 * 1024 * 1024, range = 1024 ..= 1_073_741_824;
    /// largest audio file a transcription may upload (413 beyond); spooled to the temporary
    /// directory, never held in memory
    max_upload_bytes: u64 = 25 * 1024 * 1024, range = 1024 ..= 4_294_967_296_u64;
    /// load shedding: a worker whose tasks wait longer than this for the CPU (smoothed over
    /// ~40 ms) while it is busy with its own work answers new chats 503 `gateway_overloaded`
    /// with `Retry-After: 1`; `0` = never
    chat_shed_lateness_ms: u64 = 20, range = 0 ..= 60_000;
    /// hold credit before each chat and charge what it used (`false`: nothing is held or
    /// charged; the billing routes still answer)
    billing: bool = true;
    /// the price list and the operator's rate limits, TOML ([The pricing file](#the-pricing-file),
    /// [Rate limits and budgets](#rate-limits-and-budgets)); re-read on SIGHUP. Unset: 0.50 /
    /// 2.00 USD per million input / output tokens for every model, no operator limits
    pricing_file: Option<PathBuf> = None;
    /// plain OpenAI-compatible providers beside the marketplace (vLLM, Ollama, OpenAI, …), TOML
    /// ([Plain OpenAI-compatible providers](#plain-openai-compatible-providers)): their models,
    /// priorities and weights, with failover between them and the marketplace; re-read on
    /// SIGHUP. Unset: the marketplace alone
    providers_file: Option<PathBuf> = None;
    /// credit (USD) each user starts with, given at their first billed request or balance read
    signup_credit_usd: String = "1.00".into(), check = checks::usd;
    /// a credit hold pending this long was left by a process that died before settling it:
    /// it is voided
    hold_max_pending_seconds: u64 = 3_600, range = 1 ..= 604_800;
    /// credit leases: for a run of requests, a replica sets a share of a user's ample credit
    /// aside once and serves that user's holds from it in memory, writing their charges in
    /// batches every 250 ms ([Credits and billing](#credits-and-billing)); near zero, and
    /// with `false`, each request places its own hold
    credit_lease: bool = true;
    /// streams a client left that are read on at once to their final usage, so they are
    /// charged on the provider's count (beyond: charged on the text delivered, marked
    /// estimated)
    stream_drains: usize = 256, range = 0 ..= 100_000;
    /// how long such a stream is read on at most
    stream_drain_seconds: u64 = 120, range = 1 ..= 3_600;
    /// a `: keep-alive` comment goes out on a stream quiet this long
    sse_keep_alive_seconds: u64 = 15, range = 1 ..= 3_600;
    /// allow mid-stream continuation for the keys that ask for it (`stream_continuation`):
    /// when an upstream's stream breaks after some text, another upstream of the model is
    /// asked to continue from the delivered text (assistant prefill) under the same completion
    /// id, never once tool calls have started
    /// ([Plain OpenAI-compatible providers](#plain-openai-compatible-providers)); off: the
    /// stream ends with its error event
    stream_continuation: bool = false;
    /// `GET /metrics` then needs `Authorization: Bearer <token>` (at least 16 characters)
    metrics_token: Option<SecretString> = None, check = checks::token_length;
    /// the operator's credential (at least 16 characters) for `POST /session/approve`, sent as
    /// `X-Admin-Token`; unset, the route answers 503 (it makes the node's wallet sign a
    /// transaction)
    admin_token: Option<SecretString> = None, check = checks::token_length;
    /// serve `/metrics` on this address only (no token); the main listener's `/metrics`
    /// answers 404
    metrics_bind: Option<String> = None;
    /// origins whose web pages may call the API from a browser, comma-separated
    /// (`https://app.example.com,http://localhost:3000`): preflights are answered and may be
    /// cached, answers carry `Access-Control-Allow-Origin`; `*` lets any origin (refused
    /// together with `MORPHEUS_CORS_ALLOW_CREDENTIALS`); unset: no cross-origin access
    /// ([Browser clients](#browser-clients-cors))
    cors_allowed_origins: Option<String> = None, check = checks::cors_origins;
    /// cross-origin requests may carry cookies and HTTP authentication (the API itself needs
    /// neither: its tokens and keys go in `Authorization`); never with the `*` origin
    cors_allow_credentials: bool = false;
    /// how long a browser may cache a preflight's answer (browsers cap it: Chromium at 2 h)
    cors_max_age_seconds: u64 = 86_400, range = 0 ..= 86_400;
    /// on SIGTERM/SIGINT, how long in-flight requests and streams get to finish
    shutdown_grace_seconds: u64 = 30, range = 0 ..= 3_600;
    /// API keys kept in memory (authentication without a database round trip)
    api_key_cache_capacity: usize = 10_000, range = 1 ..= 100_000_000;
    /// a cached key is re-read from the database after this long in any case
    api_key_cache_seconds: u64 = 60, range = 1 ..= 86_400;
    /// OpenTelemetry traces go to this OTLP/HTTP collector (`http://host:4318`, or the whole
    /// `…/v1/traces` URL); unset: no traces
    otlp_endpoint: Option<String> = None, check = checks::http_url, shown = checks::url_shown;
    /// a request body not received in full this long after its headers: 408, connection closed
    body_read_timeout_ms: u64 = 10_000, range = 1 ..= 3_600_000;
    /// the same for chat requests, which may be `MORPHEUS_CHAT_MAX_BODY_BYTES` large
    chat_body_read_timeout_ms: u64 = 30_000, range = 1 ..= 3_600_000;
    /// the same for a transcription's upload, which may be `MORPHEUS_MAX_UPLOAD_BYTES` large
    upload_read_timeout_ms: u64 = 300_000, range = 1 ..= 3_600_000;
    /// open connections at most; a connection beyond is answered 503 at once and closed. Must fit
    /// in a third of the open-file limit left after a reserve (the start-up log says how many
    /// fit); the gateway raises its soft limit to the hard one
    max_connections: usize = 0, range = 0 ..= 10_000_000,
        default_doc = "`0` (as many as the open-file limit allows)";
    /// open connections per client address (behind a trusted proxy: requests in progress per
    /// forwarded client); 503 beyond
    max_connections_per_client: usize = 256, range = 1 ..= 10_000_000;
    /// proxies (addresses and CIDR ranges, comma-separated) whose `X-Forwarded-For` names the
    /// client; anyone else's is ignored
    trusted_proxies: Option<String> = None;
    /// per-client limits count IPv4 clients per network of this prefix length…
    client_ipv4_prefix: u8 = 32, range = 1 ..= 32;
    /// …and IPv6 clients per network of this one (a host usually has a whole /64)
    client_ipv6_prefix: u8 = 64, range = 1 ..= 128;
    /// `GET /models/ratedbids` answers are shared for this long per model
    rated_bids_cache_ms: u64 = 2_000, range = 0 ..= 3_600_000;
    /// `GET /models/ratedbids` calls per client address in a burst…
    rated_bids_per_client: u32 = 20, range = 1 ..= 1_000_000_000;
    /// …and one more every this many milliseconds
    rated_bids_client_refill_ms: u64 = 1_000, range = 1 ..= 3_600_000;
    /// Redis, `redis://[:password@]host:6379[/db]`: rate limits, budget windows and the login
    /// and registration throttles are counted there, shared by every replica (the limits are
    /// global); unset, each process counts alone, in memory. `admin doctor` checks that it answers
    redis_url: Option<String> = None, check = checks::redis_url, shown = checks::url_shown;
    /// a call to Redis not answered within this fails, and the failure policy decides; after a
    /// failure the replica leaves Redis alone for 0.5 s, twice as long after each failed retry, up
    /// to 10 s
    redis_timeout_ms: u64 = 250, range = 1 ..= 60_000;
    /// the longest a connection attempt to Redis may take
    redis_connect_timeout_ms: u64 = 1_000, range = 1 ..= 60_000;
    /// every key the gateway writes in Redis starts with this (several deployments can share a
    /// server)
    redis_key_prefix: String = "morpheus:".into();
    /// when Redis fails: `false` lets limited requests through uncounted (fail-open), `true`
    /// refuses them with `Retry-After` (fail-closed); never an error 500 either way
    limits_fail_closed: bool = false;
    /// with Redis, each replica takes a thousandth of a large limit (one that covers the
    /// request) ahead of use and counts that limit's requests in memory until it is spent: no
    /// round trip per request, never past the limit, at most a thousandth short per other
    /// replica holding a share (given back after 2 s unused); `false`: every limited request
    /// asks Redis ([Shared counters](#shared-counters-redis))
    limit_allowances: bool = true;
}

/// The `check` and `shown` functions of the declarations above.
mod checks {
    use secrecy::{ExposeSecret, SecretString};

    pub fn database_url(url: &str) -> Result<(), String> {
        morpheus_storage::DatabaseUrl::parse(url)
            .map(|_| ())
            .map_err(|e| e.to_string())
    }

    /// A PostgreSQL password is shown as `***`.
    pub fn database_url_shown(url: &str) -> Option<String> {
        Some(match morpheus_storage::DatabaseUrl::parse(url) {
            Ok(parsed) => parsed.to_string(),
            Err(_) => "<invalid>".to_owned(),
        })
    }

    /// Credentials in the URL's user-info are shown as `***`.
    pub fn url_shown(url: &Option<String>) -> Option<String> {
        let url = url.as_ref()?;
        let Some((scheme, rest)) = url.split_once("://") else {
            return Some(url.clone());
        };
        let (authority, path) = rest.split_at(rest.find(['/', '?', '#']).unwrap_or(rest.len()));
        Some(match authority.rsplit_once('@') {
            Some((_, host)) => format!("{scheme}://***@{host}{path}"),
            None => url.clone(),
        })
    }

    pub fn http_url(url: &Option<String>) -> Result<(), String> {
        match url {
            Some(u) if !(u.starts_with("http://") || u.starts_with("https://")) => {
                Err("an OTLP/HTTP endpoint starts with http:// or https://".to_owned())
            }
            _ => Ok(()),
        }
    }

    pub fn cors_origins(origins: &Option<String>) -> Result<(), String> {
        let Some(origins) = origins else {
            return Ok(());
        };
        let list = crate::cors::origins(origins);
        if list.is_empty() {
            return Err("no origin in the list".to_owned());
        }
        for origin in list {
            if origin == "*" {
                continue;
            }
            let Some((scheme, host)) = origin.split_once("://") else {
                return Err(format!("{origin:?} is not scheme://host[:port]"));
            };
            if !(scheme == "http" || scheme == "https")
                || host.is_empty()
                || host.contains(['/', '?', '#', '*', ' '])
            {
                return Err(format!(
                    "{origin:?} is not an origin: http(s)://host[:port], no path and no wildcard"
                ));
            }
        }
        Ok(())
    }

    pub fn redis_url(url: &Option<String>) -> Result<(), String> {
        match url {
            Some(u) if !(u.starts_with("redis://") || u.starts_with("rediss://")) => {
                Err("a Redis URL starts with redis:// (or rediss://)".to_owned())
            }
            _ => Ok(()),
        }
    }

    pub fn eth_address(address: &Option<String>) -> Result<(), String> {
        match address {
            Some(a) => morpheus_domain::EthAddress::parse(a)
                .map(|_| ())
                .map_err(|_| format!("{a:?} is not 0x followed by 40 hex digits")),
            None => Ok(()),
        }
    }

    pub fn model_aliases(raw: &Option<String>) -> Result<(), String> {
        super::parse_model_aliases(raw.as_deref())
            .map(|_| ())
            .map_err(|e| e.to_string())
    }

    pub fn usd(amount: &str) -> Result<(), String> {
        match amount.parse::<morpheus_domain::Usd>() {
            Ok(usd) if usd.is_negative() => Err("the amount must not be negative".to_owned()),
            Ok(_) => Ok(()),
            Err(invalid) => Err(invalid.message),
        }
    }

    pub fn mor(amount: &Option<String>) -> Result<(), String> {
        match amount {
            Some(a) => morpheus_domain::parse_mor(a)
                .map(|_| ())
                .map_err(|invalid| invalid.message),
            None => Ok(()),
        }
    }

    pub fn stake_factor(factor: &str) -> Result<(), String> {
        match morpheus_domain::parse_mor(factor) {
            Ok(0) => Err("the factor must be above 0".to_owned()),
            Ok(_) => Ok(()),
            Err(invalid) => Err(invalid.message.replace("amount of MOR", "decimal number")),
        }
    }

    pub fn token_length(token: &Option<SecretString>) -> Result<(), String> {
        match token {
            Some(t) if t.expose_secret().len() < 16 => {
                Err("the token must be at least 16 characters".to_owned())
            }
            _ => Ok(()),
        }
    }
}

impl Settings {
    pub fn data_dir(&self) -> &Path {
        &self.data_dir
    }

    /// `alias=model` pairs from `model_aliases`.
    ///
    /// # Errors
    /// When an entry has no `=` or an empty side.
    pub fn model_aliases(&self) -> anyhow::Result<Vec<(String, String)>> {
        parse_model_aliases(self.model_aliases.as_deref())
    }
}

fn parse_model_aliases(raw: Option<&str>) -> anyhow::Result<Vec<(String, String)>> {
    let Some(raw) = raw else {
        return Ok(vec![]);
    };
    raw.split(',')
        .map(str::trim)
        .filter(|entry| !entry.is_empty())
        .map(|entry| match entry.split_once('=') {
            Some((alias, model)) if !alias.trim().is_empty() && !model.trim().is_empty() => {
                Ok((alias.trim().to_owned(), model.trim().to_owned()))
            }
            _ => anyhow::bail!("entries are alias=model, got {entry:?}"),
        })
        .collect()
}

/// Loads the settings from the command line's `--config` file, the process environment and
/// the command line's flags.
///
/// # Errors
/// See [`load_from`].
pub fn load(cli: &crate::cli::Cli) -> anyhow::Result<Loaded> {
    load_from(Sources {
        file: cli.config.as_deref(),
        env: std::env::vars_os(),
        command_line: cli.settings.0.clone(),
    })
}

#[cfg(test)]
mod tests;
