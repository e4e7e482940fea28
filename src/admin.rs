//! `morpheus-gateway admin …`: operators' tools on the same database and settings as `serve`.
//!
//! Every action goes through the domain services, as the API's would: disabling a user or
//! revoking a key writes the revocation log, so running replicas refuse the keys within the
//! log's delay (about 250 ms), not at their cache's expiry. Output is a table for people, or
//! JSON with `--json`.

pub mod credits;
mod doctor;
mod keys;
mod sessions;
mod users;

use anyhow::Context;
use clap::{Args, Subcommand};
use morpheus_api::AppState;
use morpheus_domain::{Email, User, UserId};
use serde_json::Value;

use crate::configuration::Loaded;
use crate::secrets::Secrets;
use crate::{marketplace, startup};

#[derive(Debug, Clone, Args)]
pub struct AdminArgs {
    /// JSON instead of a table.
    #[arg(long, global = true)]
    pub json: bool,
    #[command(subcommand)]
    pub command: AdminCommand,
}

#[derive(Debug, Clone, Subcommand)]
pub enum AdminCommand {
    /// Find, inspect, disable, enable or delete user accounts.
    #[command(subcommand)]
    Users(users::UsersCommand),
    /// List a user's API keys, or revoke one.
    #[command(subcommand)]
    Keys(keys::KeysCommand),
    /// List marketplace sessions, or close one (on chain and in the records).
    #[command(subcommand)]
    Sessions(sessions::SessionsCommand),
    /// Grant credit, or read a user's balance (also `morpheus-gateway credits …`).
    #[command(subcommand)]
    Credits(credits::CreditsCommand),
    /// Check the settings, the database, Redis and the proxy-router, and say what to fix.
    /// Exits 1 when a check fails.
    Doctor,
}

/// What a command prints: a table or a few lines for people, JSON for scripts.
pub struct Report {
    pub text: String,
    pub json: Value,
    /// The exit status: non-zero when the command found problems (doctor).
    pub failed: bool,
}

impl Report {
    fn new(text: String, json: Value) -> Self {
        Self {
            text,
            json,
            failed: false,
        }
    }
}

/// Runs an admin command.
///
/// # Errors
/// The settings, the database or the proxy-router fail, or what was named does not exist.
pub async fn run(loaded: &Loaded, args: AdminArgs) -> anyhow::Result<Report> {
    if let AdminCommand::Doctor = args.command {
        return Ok(doctor::run(loaded).await);
    }
    let services = Services::open(loaded).await?;
    match args.command {
        AdminCommand::Users(command) => users::run(&services, command).await,
        AdminCommand::Keys(command) => keys::run(&services, command).await,
        AdminCommand::Sessions(command) => sessions::run(&services, command).await,
        AdminCommand::Credits(command) => credits::run(&services, command).await,
        AdminCommand::Doctor => unreachable!("answered above"),
    }
}

/// Prints a command's report (JSON with `--json`); whether the command succeeded.
pub fn print(report: Report, json: bool) -> anyhow::Result<bool> {
    if json {
        println!("{:#}", report.json);
    } else {
        print!("{}", report.text);
    }
    Ok(!report.failed)
}

/// The domain services, wired as `serve` wires them.
struct Services {
    state: AppState,
}

impl Services {
    async fn open(loaded: &Loaded) -> anyhow::Result<Self> {
        let settings = &loaded.settings;
        let secrets = Secrets::resolve(settings)?;
        let database = startup::connect(settings).await?;
        let market = marketplace::connect(settings).await?;
        let built = startup::build_state(settings, &secrets, database, &market)?;
        Ok(Self { state: built.state })
    }

    /// A user named by id or by email.
    async fn user(&self, named: &str) -> anyhow::Result<User> {
        let accounts = &self.state.accounts;
        let found = if let Ok(id) = named.parse::<i64>() {
            accounts.find_user(UserId(id)).await?
        } else {
            let email = Email::parse(named)
                .map_err(|_| anyhow::anyhow!("{named:?} is neither a user id nor an email"))?;
            accounts.find_user_by_email(&email).await?
        };
        found.with_context(|| format!("no user {named}"))
    }
}

/// A timestamp as operators read it.
fn when(at: chrono::DateTime<chrono::Utc>) -> String {
    at.format("%Y-%m-%d %H:%M:%S UTC").to_string()
}

fn user_json(user: &User) -> Value {
    serde_json::json!({
        "id": user.id.0,
        "email": user.email.as_str(),
        "name": user.name.as_ref().map(|n| n.as_str()),
        "is_active": user.is_active,
        "limit_multiplier": user.limit_multiplier.to_string(),
        "created_at": user.created_at,
        "updated_at": user.updated_at,
    })
}
