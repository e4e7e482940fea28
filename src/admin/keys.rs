//! `admin keys list|revoke`.

use clap::Subcommand;
use morpheus_domain::{ApiKey, KeyPrefix, Page};
use serde_json::{Value, json};

use super::{Report, Services, when};
use crate::output::table;

#[derive(Debug, Clone, Subcommand)]
pub enum KeysCommand {
    /// A user's API keys (by user id or email), newest first, revoked ones included.
    List { user: String },
    /// Revoke a key by its public prefix (`sk-XXXXXX`, shown by `keys list` and in logs).
    Revoke { prefix: String },
}

pub(super) async fn run(services: &Services, command: KeysCommand) -> anyhow::Result<Report> {
    let keys = &services.state.api_keys;
    Ok(match command {
        KeysCommand::List { user } => {
            let user = services.user(&user).await?;
            let listed = keys.list(user.id, Page::ALL).await?;
            let rows: Vec<[String; 6]> = listed
                .iter()
                .map(|k| {
                    [
                        k.id.to_string(),
                        k.prefix.as_str().to_owned(),
                        k.name.clone().unwrap_or_default(),
                        if k.is_active { "yes" } else { "no" }.to_owned(),
                        when(k.created_at),
                        k.last_used_at.map_or_else(|| "never".to_owned(), when),
                    ]
                })
                .collect();
            Report::new(
                table(
                    ["ID", "PREFIX", "NAME", "ACTIVE", "CREATED", "LAST USED"],
                    &rows,
                ),
                json!({ "user_id": user.id.0, "api_keys": listed.iter().map(key_json).collect::<Vec<_>>() }),
            )
        }
        KeysCommand::Revoke { prefix } => {
            anyhow::ensure!(
                prefix.len() == KeyPrefix::LEN && prefix.starts_with("sk-"),
                "{prefix:?} is not a key prefix (sk- and 6 characters)"
            );
            let revoked = keys
                .revoke_by_prefix(&KeyPrefix::from_trusted(prefix.clone()))
                .await
                .map_err(|e| match e {
                    morpheus_domain::services::RevokeApiKeyError::NotFound => {
                        anyhow::anyhow!("no API key {prefix}")
                    }
                    other => other.into(),
                })?;
            Report::new(
                format!(
                    "API key {} of user {} revoked (refused on every replica within about a second)\n",
                    revoked.prefix.as_str(),
                    revoked.user_id
                ),
                json!({ "api_key": key_json(&revoked) }),
            )
        }
    })
}

fn key_json(key: &ApiKey) -> Value {
    json!({
        "id": key.id.0,
        "user_id": key.user_id.0,
        "key_prefix": key.prefix.as_str(),
        "name": key.name,
        "is_active": key.is_active,
        "created_at": key.created_at,
        "last_used_at": key.last_used_at,
    })
}
