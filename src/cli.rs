use std::path::PathBuf;

use clap::{Parser, Subcommand};

/// OpenAI-compatible API gateway for the Morpheus inference marketplace.
#[derive(Debug, Parser)]
#[command(version, about)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Option<Command>,
    /// Address to listen on [env: MORPHEUS_BIND] [default: 127.0.0.1:8000]
    #[arg(long, global = true)]
    pub bind: Option<String>,
    /// postgres://…, sqlite://PATH or a file path [env: DATABASE_URL] [default: sqlite://data/morpheus.db]
    #[arg(long, global = true)]
    pub database_url: Option<String>,
    /// A TOML file with settings (env vars override it) [env: MORPHEUS_CONFIG]
    #[arg(long, global = true, env = "MORPHEUS_CONFIG")]
    pub config: Option<PathBuf>,
    /// The Morpheus proxy-router, e.g. http://127.0.0.1:8082 [env: MORPHEUS_PROXY_ROUTER_URL]
    #[arg(long, global = true)]
    pub proxy_router_url: Option<String>,
    /// Demo mode: run a simulated marketplace in-process and use it (never in production)
    /// [env: MORPHEUS_SIMULATE_MARKETPLACE]
    #[arg(long, global = true)]
    pub simulate_marketplace: bool,
}

#[derive(Debug, Clone, Copy, Subcommand)]
pub enum Command {
    /// Run the gateway (the default).
    Serve,
    /// Apply database migrations and exit.
    Migrate,
    /// Re-seal every stored wallet key under the current master key (after a rotation: set the
    /// new MORPHEUS_WALLET_MASTER_KEY and the old one in MORPHEUS_WALLET_PREVIOUS_MASTER_KEYS),
    /// then exit. Safe while the gateway runs.
    ResealWalletKeys,
}
