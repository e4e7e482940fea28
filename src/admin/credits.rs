//! `credits grant|balance` (also `admin credits …`): the operator's side of the ledger.

use clap::Subcommand;
use morpheus_domain::ports::PostingOutcome;
use morpheus_domain::services::GrantError;
use morpheus_domain::{LedgerEntryType, Usd};
use serde_json::json;

use super::{Report, Services};

#[derive(Debug, Clone, Subcommand)]
pub enum CreditsCommand {
    /// Grant a user credit (or take it back with a negative amount), as an `adjustment` entry
    /// of their ledger.
    Grant {
        /// The user's email address…
        #[arg(long, conflicts_with = "user", required_unless_present = "user")]
        email: Option<String>,
        /// …or their id.
        #[arg(long)]
        user: Option<i64>,
        /// USD, a decimal with at most 8 places (`25`, `0.5`, `-3.10`).
        #[arg(long, allow_hyphen_values = true)]
        usd: String,
        /// Shown in the user's ledger.
        #[arg(long)]
        description: Option<String>,
        /// Running the command again with the same key grants once.
        #[arg(long)]
        idempotency_key: Option<String>,
    },
    /// A user's credit (by user id or email).
    Balance { user: String },
}

pub(super) async fn run(services: &Services, command: CreditsCommand) -> anyhow::Result<Report> {
    let billing = &services.state.billing;
    Ok(match command {
        CreditsCommand::Grant {
            email,
            user,
            usd,
            description,
            idempotency_key,
        } => {
            let named = email.or(user.map(|id| id.to_string())).unwrap_or_default();
            let user = services.user(&named).await?;
            let amount: Usd = usd
                .parse()
                .map_err(|e: morpheus_domain::validation::Invalid| anyhow::anyhow!(e.message))?;
            anyhow::ensure!(amount != Usd::ZERO, "the amount must not be zero");
            let outcome = billing
                .grant(
                    user.id,
                    LedgerEntryType::Adjustment,
                    amount,
                    description,
                    idempotency_key.map(|k| format!("operator:{k}")),
                )
                .await
                .map_err(|e| match e {
                    GrantError::NoUser => anyhow::anyhow!("no user {named}"),
                    GrantError::Unknown(e) => e,
                })?;
            let (entry, duplicate) = match outcome {
                PostingOutcome::Posted(entry) => (entry, false),
                PostingOutcome::Duplicate(entry) => (entry, true),
                PostingOutcome::NoUser => anyhow::bail!("no user {named}"),
            };
            let balance = billing.balance(user.id).await?.unwrap_or_default();
            let text = if duplicate {
                format!(
                    "already granted (entry {}, {} USD); nothing added\navailable: {} USD\n",
                    entry.id,
                    entry.amount,
                    balance.available()
                )
            } else {
                format!(
                    "granted {} USD to {} (entry {})\navailable: {} USD\n",
                    entry.amount,
                    user.email.as_str(),
                    entry.id,
                    balance.available()
                )
            };
            Report::new(
                text,
                json!({
                    "user_id": user.id.0,
                    "entry_id": entry.id.to_string(),
                    "amount": entry.amount.to_string(),
                    "duplicate": duplicate,
                    "available": balance.available().to_string(),
                }),
            )
        }
        CreditsCommand::Balance { user } => {
            let user = services.user(&user).await?;
            let balance = billing.balance(user.id).await?.unwrap_or_default();
            Report::new(
                format!(
                    "posted: {} USD\nheld: {} USD\navailable: {} USD\n",
                    balance.posted,
                    balance.held,
                    balance.available()
                ),
                json!({
                    "user_id": user.id.0,
                    "posted": balance.posted.to_string(),
                    "held": balance.held.to_string(),
                    "available": balance.available().to_string(),
                }),
            )
        }
    })
}
