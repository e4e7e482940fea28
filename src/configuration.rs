//! Settings, layered: built-in defaults < TOML file (`--config`) < environment < command line.
//!
//! | setting | env | default |
//! |---|---|---|
//! | see README.md "Configuration" | | |
//!
//! Every key is documented in README.md; unknown keys in the file are an error.

use std::path::{Path, PathBuf};

use figment::Figment;
use figment::providers::{Env, Format, Toml};
use secrecy::SecretString;
use serde::Deserialize;

use crate::cli::Cli;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum Environment {
    #[default]
    Development,
    Production,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    #[default]
    Pretty,
    Json,
}

/// SQLite's `synchronous` under WAL (see README "Durability checks"): `normal` may lose the
/// last commits on power loss, `full` fsyncs every commit. Neither loses any on a crash.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum SqliteSynchronous {
    #[default]
    Normal,
    Full,
}

impl From<SqliteSynchronous> for morpheus_storage::SqliteSynchronous {
    fn from(setting: SqliteSynchronous) -> Self {
        match setting {
            SqliteSynchronous::Normal => morpheus_storage::SqliteSynchronous::Normal,
            SqliteSynchronous::Full => morpheus_storage::SqliteSynchronous::Full,
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Settings {
    /// `development` generates missing secrets; `production` refuses to start without them.
    pub env: Environment,
    pub bind: String,
    pub database_url: String,
    /// Where development secrets and the default SQLite database live.
    pub data_dir: PathBuf,
    /// HS256 signing key for JWTs, at least 32 bytes.
    pub jwt_secret: Option<SecretString>,
    /// Retired JWT keys, comma-separated: tokens they signed stay valid until they expire.
    pub jwt_previous_secrets: Option<SecretString>,
    /// HMAC key for API-key digests, at least 32 bytes.
    pub api_key_pepper: Option<SecretString>,
    /// AES-256 key sealing wallet private keys: 64 hex digits.
    pub wallet_master_key: Option<SecretString>,
    /// Retired master keys, comma-separated (64 hex digits each): they only open what they
    /// sealed, until `reseal-wallet-keys` has moved those keys to the current one.
    pub wallet_previous_master_keys: Option<SecretString>,
    pub access_token_minutes: i64,
    pub refresh_token_days: i64,
    pub db_pool_size: u32,
    pub db_connect_timeout_ms: u64,
    pub sqlite_synchronous: SqliteSynchronous,
    /// HTTP worker threads; 0 = one per CPU.
    pub workers: usize,
    /// Concurrent argon2 computations; 0 = one per CPU.
    pub password_hash_concurrency: usize,
    /// How long a login waits for a hashing slot before answering 503.
    pub password_hash_queue_ms: u64,
    pub login_attempts_per_account: u32,
    pub login_account_refill_seconds: u64,
    pub login_attempts_per_client: u32,
    pub login_client_refill_seconds: u64,
    pub registrations_per_client: u32,
    pub registration_client_refill_seconds: u64,
    pub max_api_keys_per_user: u64,
    /// When set, delegations must be granted to this address.
    pub gateway_delegate_address: Option<String>,
    pub log_format: LogFormat,
    /// The Morpheus proxy-router (`http://host:8082`); without one, marketplace routes
    /// answer 503 saying what to configure.
    pub proxy_router_url: Option<String>,
    pub proxy_router_user: Option<String>,
    pub proxy_router_password: Option<SecretString>,
    pub proxy_router_connect_timeout_ms: u64,
    /// Longest wait for the head of an answer (chat included).
    pub proxy_router_first_byte_timeout_ms: u64,
    /// Longest quiet gap inside a streamed answer.
    pub proxy_router_idle_timeout_ms: u64,
    /// Longest whole exchange for the non-chat calls (models, sessions, approve).
    pub proxy_router_request_timeout_ms: u64,
    /// Runs an in-process marketplace simulator and uses it as the proxy-router: a local
    /// demo, refused in production.
    pub simulate_marketplace: bool,
    /// An optional feed of the models to offer (`{"models":[…]}`, the chain's shape).
    pub active_models_url: Option<String>,
    pub models_refresh_seconds: u64,
    /// The model used when a request names none (name or 0x id).
    pub default_model: Option<String>,
    /// Extra model names: `alias=model,alias2=0x…`.
    pub model_aliases: Option<String>,
    /// The spender `POST /session/approve` approves (the Diamond contract).
    pub diamond_contract_address: Option<String>,
    /// How often ended sessions are closed and records reconciled with the chain.
    pub session_sweep_seconds: u64,
    pub chat_max_tokens: u32,
    pub chat_max_choices: u32,
    pub chat_max_messages: usize,
    pub chat_max_tools: usize,
    /// A `: keep-alive` comment goes out on a stream quiet for this long.
    pub sse_keep_alive_seconds: u64,
    /// The largest chat request body (images and audio travel inside it).
    pub chat_max_body_bytes: usize,
    /// A worker running later than this (its ready tasks waiting this long for the CPU)
    /// answers new chats 503 `gateway_overloaded`; 0 = never.
    pub chat_shed_lateness_ms: u64,
    /// When set, `GET /metrics` on the main listener requires `Authorization: Bearer <token>`.
    pub metrics_token: Option<SecretString>,
    /// When set, metrics are served on their own listener at this address (no token), and the
    /// main listener's `/metrics` answers 404.
    pub metrics_bind: Option<String>,
    /// On SIGTERM or SIGINT: how long in-flight requests and streams get to finish. Streams
    /// still running shortly before the end receive a terminal error event.
    pub shutdown_grace_seconds: u64,
    /// API keys kept in memory (authentication without a database round trip).
    pub api_key_cache_capacity: usize,
    /// A cached key is re-read from the database after this long in any case.
    pub api_key_cache_seconds: u64,
}

impl Default for Settings {
    fn default() -> Self {
        Self {
            env: Environment::Development,
            bind: "127.0.0.1:8000".to_owned(),
            database_url: "sqlite://data/morpheus.db".to_owned(),
            data_dir: PathBuf::from("data"),
            jwt_secret: None,
            jwt_previous_secrets: None,
            api_key_pepper: None,
            wallet_master_key: None,
            wallet_previous_master_keys: None,
            access_token_minutes: 30,
            refresh_token_days: 7,
            db_pool_size: 10,
            db_connect_timeout_ms: 2000,
            sqlite_synchronous: SqliteSynchronous::Normal,
            workers: 0,
            password_hash_concurrency: 0,
            password_hash_queue_ms: 2000,
            login_attempts_per_account: 10,
            login_account_refill_seconds: 90,
            login_attempts_per_client: 30,
            login_client_refill_seconds: 2,
            registrations_per_client: 20,
            registration_client_refill_seconds: 60,
            max_api_keys_per_user: 100,
            gateway_delegate_address: None,
            log_format: LogFormat::Pretty,
            proxy_router_url: None,
            proxy_router_user: None,
            proxy_router_password: None,
            proxy_router_connect_timeout_ms: 3_000,
            proxy_router_first_byte_timeout_ms: 60_000,
            proxy_router_idle_timeout_ms: 60_000,
            proxy_router_request_timeout_ms: 30_000,
            simulate_marketplace: false,
            active_models_url: None,
            models_refresh_seconds: 60,
            default_model: None,
            model_aliases: None,
            diamond_contract_address: None,
            session_sweep_seconds: 60,
            chat_max_tokens: 32_768,
            chat_max_choices: 8,
            chat_max_messages: 1_000,
            chat_max_tools: 128,
            sse_keep_alive_seconds: 15,
            chat_max_body_bytes: 4 * 1024 * 1024,
            chat_shed_lateness_ms: 20,
            metrics_token: None,
            metrics_bind: None,
            shutdown_grace_seconds: 30,
            api_key_cache_capacity: 10_000,
            api_key_cache_seconds: 60,
        }
    }
}

/// Environment variables read, without their `MORPHEUS_` prefix (lower-cased they are the
/// setting names). Other `MORPHEUS_*` variables (the test suite's, for instance) are ignored.
const ENV_KEYS: &[&str] = &[
    "env",
    "bind",
    "data_dir",
    "jwt_secret",
    "jwt_previous_secrets",
    "api_key_pepper",
    "wallet_master_key",
    "wallet_previous_master_keys",
    "access_token_minutes",
    "refresh_token_days",
    "db_pool_size",
    "db_connect_timeout_ms",
    "sqlite_synchronous",
    "workers",
    "password_hash_concurrency",
    "password_hash_queue_ms",
    "login_attempts_per_account",
    "login_account_refill_seconds",
    "login_attempts_per_client",
    "login_client_refill_seconds",
    "registrations_per_client",
    "registration_client_refill_seconds",
    "max_api_keys_per_user",
    "gateway_delegate_address",
    "log_format",
    "proxy_router_url",
    "proxy_router_user",
    "proxy_router_password",
    "proxy_router_connect_timeout_ms",
    "proxy_router_first_byte_timeout_ms",
    "proxy_router_idle_timeout_ms",
    "proxy_router_request_timeout_ms",
    "simulate_marketplace",
    "active_models_url",
    "models_refresh_seconds",
    "default_model",
    "model_aliases",
    "diamond_contract_address",
    "session_sweep_seconds",
    "chat_max_tokens",
    "chat_max_choices",
    "chat_max_messages",
    "chat_max_tools",
    "sse_keep_alive_seconds",
    "chat_max_body_bytes",
    "chat_shed_lateness_ms",
    "metrics_token",
    "metrics_bind",
    "shutdown_grace_seconds",
    "api_key_cache_capacity",
    "api_key_cache_seconds",
];

impl Settings {
    /// # Errors
    /// When the file cannot be read, a value has the wrong type, or a key is unknown.
    pub fn load(cli: &Cli) -> anyhow::Result<Self> {
        let mut figment = Figment::new();
        if let Some(path) = &cli.config {
            anyhow::ensure!(path.exists(), "config file {} not found", path.display());
            figment = figment.merge(Toml::file(path));
        }
        figment = figment
            // `k` is case-insensitive: `MORPHEUS_DATA_DIR` matches "data_dir".
            .merge(Env::prefixed("MORPHEUS_").filter(|k| ENV_KEYS.iter().any(|known| k == *known)))
            .merge(Env::raw().only(&["DATABASE_URL"]));
        if let Some(bind) = &cli.bind {
            figment = figment.merge(("bind", bind));
        }
        if let Some(url) = &cli.database_url {
            figment = figment.merge(("database_url", url));
        }
        if let Some(url) = &cli.proxy_router_url {
            figment = figment.merge(("proxy_router_url", url));
        }
        if cli.simulate_marketplace {
            figment = figment.merge(("simulate_marketplace", true));
        }
        Ok(figment.extract()?)
    }

    pub fn data_dir(&self) -> &Path {
        &self.data_dir
    }

    /// `alias=model` pairs from `model_aliases`.
    ///
    /// # Errors
    /// When an entry has no `=` or an empty side.
    pub fn model_aliases(&self) -> anyhow::Result<Vec<(String, String)>> {
        let Some(raw) = &self.model_aliases else {
            return Ok(vec![]);
        };
        raw.split(',')
            .map(str::trim)
            .filter(|entry| !entry.is_empty())
            .map(|entry| match entry.split_once('=') {
                Some((alias, model)) if !alias.trim().is_empty() && !model.trim().is_empty() => {
                    Ok((alias.trim().to_owned(), model.trim().to_owned()))
                }
                _ => anyhow::bail!("MORPHEUS_MODEL_ALIASES entries are alias=model, got {entry:?}"),
            })
            .collect()
    }
}

#[cfg(test)]
// figment's `Jail` closures return its large error type; that is its API, not ours.
#[expect(clippy::result_large_err)]
mod tests {
    use clap::Parser;

    use super::*;

    #[test]
    fn env_overrides_the_file_and_the_command_line_overrides_env() {
        figment::Jail::expect_with(|jail| {
            jail.create_file("gateway.toml", "bind = \"127.0.0.1:1\"\nworkers = 3\n")?;
            jail.set_env("MORPHEUS_DATA_DIR", "/tmp/elsewhere");
            jail.set_env("MORPHEUS_WORKERS", "5");
            jail.set_env("MORPHEUS_SQLITE_SYNCHRONOUS", "full");
            jail.set_env("MORPHEUS_TEST_DATABASE_URL", "ignored: not a setting");
            jail.set_env("DATABASE_URL", "postgres://db/x");
            let cli = Cli::parse_from(["gw", "--config", "gateway.toml", "--bind", "0.0.0.0:9"]);
            let s = Settings::load(&cli).map_err(|e| e.to_string())?;
            assert_eq!(s.data_dir, PathBuf::from("/tmp/elsewhere"));
            assert_eq!(s.workers, 5);
            assert_eq!(s.sqlite_synchronous, SqliteSynchronous::Full);
            assert_eq!(s.bind, "0.0.0.0:9");
            assert_eq!(s.database_url, "postgres://db/x");
            Ok(())
        });
    }

    #[test]
    fn model_aliases_are_pairs() {
        let mut s = Settings {
            model_aliases: Some(" gpt-4o = llama-3.3-70b ,fast=0xab ,".into()),
            ..Settings::default()
        };
        assert_eq!(
            s.model_aliases().unwrap(),
            vec![
                ("gpt-4o".to_owned(), "llama-3.3-70b".to_owned()),
                ("fast".to_owned(), "0xab".to_owned())
            ]
        );
        s.model_aliases = Some("nonsense".into());
        assert!(s.model_aliases().is_err());
    }

    #[test]
    fn unknown_keys_in_the_file_are_an_error() {
        figment::Jail::expect_with(|jail| {
            jail.create_file("gateway.toml", "bnid = \"127.0.0.1:1\"\n")?;
            let cli = Cli::parse_from(["gw", "--config", "gateway.toml"]);
            assert!(Settings::load(&cli).is_err());
            Ok(())
        });
    }
}
