//! `admin sessions list|close`.

use clap::Subcommand;
use morpheus_domain::services::CloseSessionError;
use morpheus_domain::{SessionId, SessionRecord};
use serde_json::{Value, json};

use super::{Report, Services, when};
use crate::output::table;

#[derive(Debug, Clone, Subcommand)]
pub enum SessionsCommand {
    /// Sessions not yet closed on chain (with `--all`, closed ones too), newest first.
    List {
        /// Only this user's (id or email).
        #[arg(long)]
        user: Option<String>,
        /// Closed sessions too.
        #[arg(long)]
        all: bool,
        #[arg(long, default_value_t = 50)]
        limit: u32,
    },
    /// Close a session on chain (its unused stake comes back) and in the records.
    Close { session: String },
}

pub(super) async fn run(services: &Services, command: SessionsCommand) -> anyhow::Result<Report> {
    let sessions = &services.state.sessions;
    Ok(match command {
        SessionsCommand::List { user, all, limit } => {
            let user = match user {
                Some(named) => Some(services.user(&named).await?.id),
                None => None,
            };
            let listed = sessions.list_all(user, all, limit).await?;
            let rows: Vec<[String; 7]> = listed
                .iter()
                .map(|s| {
                    [
                        s.id.to_string(),
                        s.user_id.to_string(),
                        s.model_id.to_string(),
                        s.state.as_str().to_owned(),
                        when(s.opened_at),
                        when(s.ends_at),
                        s.closed_at.map_or_else(String::new, when),
                    ]
                })
                .collect();
            Report::new(
                table(
                    ["ID", "USER", "MODEL", "STATE", "OPENED", "ENDS", "CLOSED"],
                    &rows,
                ),
                json!({ "sessions": listed.iter().map(session_json).collect::<Vec<_>>() }),
            )
        }
        SessionsCommand::Close { session } => {
            let id = SessionId::parse(&session).map_err(|_| {
                anyhow::anyhow!("{session:?} is not a session id (0x and 64 hex digits)")
            })?;
            let closed = sessions.close_any(&id).await.map_err(|e| match e {
                CloseSessionError::NotFound => anyhow::anyhow!("no session {id}"),
                CloseSessionError::Upstream(e) => {
                    anyhow::anyhow!("the proxy-router did not close session {id}: {e}")
                }
                CloseSessionError::Unknown(e) => e,
            })?;
            let text = if closed {
                format!("session {id} closed on chain and in the records\n")
            } else {
                format!("session {id} was already closed\n")
            };
            Report::new(text, json!({ "session_id": id.as_str(), "closed": closed }))
        }
    })
}

fn session_json(s: &SessionRecord) -> Value {
    json!({
        "id": s.id.as_str(),
        "user_id": s.user_id.0,
        "api_key_id": s.api_key_id.0,
        "model_id": s.model_id.as_str(),
        "state": s.state.as_str(),
        "opened_at": s.opened_at,
        "ends_at": s.ends_at,
        "closed_at": s.closed_at,
    })
}
