//! `admin users list|show|disable|enable|limits|delete`.

use clap::Subcommand;
use morpheus_domain::Page;
use serde_json::json;

use super::{Report, Services, user_json, when};
use crate::output::table;

#[derive(Debug, Clone, Subcommand)]
pub enum UsersCommand {
    /// Users, newest first.
    List {
        /// Only users whose email contains this text.
        #[arg(long)]
        email: Option<String>,
        #[arg(long, default_value_t = 50)]
        limit: u32,
    },
    /// One user (by id or email), with their keys and sessions counted.
    Show { user: String },
    /// Refuse the user's tokens and API keys (every replica, within about a second).
    Disable { user: String },
    /// Accept the user's tokens and API keys again.
    Enable { user: String },
    /// Scale the operator's rate limits (the pricing file's `[limits]`) for this user.
    Limits {
        user: String,
        /// A decimal with at most two places, from 0.01 to 1000: 2 doubles the limits, 0.5
        /// halves them.
        #[arg(long)]
        multiplier: morpheus_domain::LimitMultiplier,
    },
    /// Delete the account and everything it owns (its sessions are still closed at their end).
    Delete {
        user: String,
        /// Confirms the deletion, which cannot be undone.
        #[arg(long)]
        yes: bool,
    },
}

pub(super) async fn run(services: &Services, command: UsersCommand) -> anyhow::Result<Report> {
    let state = &services.state;
    let active = matches!(command, UsersCommand::Enable { .. });
    Ok(match command {
        UsersCommand::List { email, limit } => {
            let users = state.accounts.list_users(email.as_deref(), limit).await?;
            let rows: Vec<[String; 5]> = users
                .iter()
                .map(|u| {
                    [
                        u.id.to_string(),
                        u.email.as_str().to_owned(),
                        u.name.as_ref().map_or("", |n| n.as_str()).to_owned(),
                        if u.is_active { "yes" } else { "no" }.to_owned(),
                        when(u.created_at),
                    ]
                })
                .collect();
            Report::new(
                table(["ID", "EMAIL", "NAME", "ACTIVE", "CREATED"], &rows),
                json!({ "users": users.iter().map(user_json).collect::<Vec<_>>() }),
            )
        }
        UsersCommand::Show { user } => {
            let user = services.user(&user).await?;
            let keys = state.api_keys.list(user.id, Page::ALL).await?;
            let active_keys = keys.iter().filter(|k| k.is_active).count();
            let sessions = state.sessions.list_all(Some(user.id), false, 1000).await?;
            let rows = [
                ["id".to_owned(), user.id.to_string()],
                ["email".to_owned(), user.email.as_str().to_owned()],
                [
                    "name".to_owned(),
                    user.name.as_ref().map_or("", |n| n.as_str()).to_owned(),
                ],
                [
                    "active".to_owned(),
                    if user.is_active { "yes" } else { "no" }.to_owned(),
                ],
                [
                    "limit multiplier".to_owned(),
                    user.limit_multiplier.to_string(),
                ],
                ["created".to_owned(), when(user.created_at)],
                ["updated".to_owned(), when(user.updated_at)],
                [
                    "api keys".to_owned(),
                    format!("{active_keys} active, {} in all", keys.len()),
                ],
                ["open sessions".to_owned(), sessions.len().to_string()],
            ];
            Report::new(
                table(["FIELD", "VALUE"], &rows),
                json!({
                    "user": user_json(&user),
                    "api_keys": { "active": active_keys, "total": keys.len() },
                    "open_sessions": sessions.len(),
                }),
            )
        }
        UsersCommand::Disable { user } | UsersCommand::Enable { user } => {
            let user = services.user(&user).await?;
            let user = state.accounts.set_active(user.id, active).await?;
            let text = if active {
                format!("user {} ({}) enabled\n", user.id, user.email.as_str())
            } else {
                format!(
                    "user {} ({}) disabled: their tokens and API keys are refused (on other \
                     replicas within about a second)\n",
                    user.id,
                    user.email.as_str()
                )
            };
            Report::new(text, json!({ "user": user_json(&user) }))
        }
        UsersCommand::Limits { user, multiplier } => {
            let user = services.user(&user).await?;
            let user = state
                .accounts
                .set_limit_multiplier(user.id, multiplier)
                .await?;
            let text = format!(
                "user {} ({}) gets {}× the operator's rate limits (on other replicas within \
                 about a second)\n",
                user.id,
                user.email.as_str(),
                user.limit_multiplier
            );
            Report::new(text, json!({ "user": user_json(&user) }))
        }
        UsersCommand::Delete { user, yes } => {
            let user = services.user(&user).await?;
            anyhow::ensure!(
                yes,
                "deleting user {} ({}) cannot be undone: add --yes",
                user.id,
                user.email.as_str()
            );
            let deleted = state.accounts.delete_account(user.id).await?;
            let text = format!(
                "user {} ({}) deleted: {} API keys, {} sessions retired (closed on chain at \
                 their end), wallet key {}, automation settings {}, {} delegations\n",
                user.id,
                user.email.as_str(),
                deleted.api_keys,
                deleted.sessions,
                if deleted.private_key {
                    "removed"
                } else {
                    "none"
                },
                if deleted.automation_settings {
                    "removed"
                } else {
                    "none"
                },
                deleted.delegations,
            );
            Report::new(
                text,
                json!({
                    "user_id": user.id.0,
                    "deleted": {
                        "api_keys": deleted.api_keys,
                        "sessions": deleted.sessions,
                        "private_key": deleted.private_key,
                        "automation_settings": deleted.automation_settings,
                        "delegations": deleted.delegations,
                    },
                }),
            )
        }
    })
}
