use std::path::PathBuf;

use clap::{Parser, Subcommand};

use crate::configuration::SettingFlags;

/// OpenAI-compatible API gateway for the Morpheus inference marketplace.
#[derive(Debug, Parser)]
#[command(version, about)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Option<Command>,
    /// A TOML file with settings (env vars override it)
    #[arg(long, global = true, env = "MORPHEUS_CONFIG")]
    pub config: Option<PathBuf>,
    /// The settings declared with a command-line flag (`--bind`, `--database-url`, …).
    #[command(flatten)]
    pub settings: SettingFlags,
}

#[derive(Debug, Clone, Subcommand)]
pub enum Command {
    /// Run the gateway (the default).
    Serve,
    /// Apply database migrations and exit.
    Migrate,
    /// Re-seal every stored wallet key under the current master key (after a rotation: set the
    /// new MORPHEUS_WALLET_MASTER_KEY and the old one in MORPHEUS_WALLET_PREVIOUS_MASTER_KEYS),
    /// then exit. Safe while the gateway runs.
    ResealWalletKeys,
    /// Operators' tools: users, API keys, sessions, and `doctor` (same database and settings
    /// as `serve`).
    Admin(crate::admin::AdminArgs),
    /// Grant a user credit (`credits grant --email … --usd …`) or read their balance; the
    /// same as `admin credits …`.
    Credits {
        /// JSON instead of text.
        #[arg(long, global = true)]
        json: bool,
        #[command(subcommand)]
        command: crate::admin::credits::CreditsCommand,
    },
    /// Print the effective configuration: every setting's value (secrets redacted) and where
    /// it came from (default, file, env, command line).
    Config {
        /// JSON instead of a table.
        #[arg(long)]
        json: bool,
    },
}
