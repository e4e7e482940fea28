//! The F1/F2 workload: writers doing every kind of write the gateway makes (register, log in,
//! create and revoke API keys, rotate refresh tokens, store a wallet key), each keeping a
//! client-side ledger of what the gateway acknowledged, and the check of that ledger.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

use futures_util::StreamExt;
use reqwest::{Client, StatusCode};
use serde_json::{Value, json};

use super::http_client;
use super::store::Store;
use crate::helpers::{PASSWORD, unique_email};

const WALLET_KEY: &str = "0x4c0883a69102937d6231471b5dbb6204fe5129617082792ae468d01a3f362318";
/// Rounds of key, revocation, rotation and wallet writes per registered user.
const ROUNDS_PER_USER: usize = 5;

/// Environment for a gateway under this workload: the per-client throttles would otherwise
/// turn most writes into 429s, since every writer comes from 127.0.0.1.
pub const WORKLOAD_ENV: &[(&str, &str)] = &[
    ("MORPHEUS_LOGIN_ATTEMPTS_PER_CLIENT", "1000000"),
    ("MORPHEUS_REGISTRATIONS_PER_CLIENT", "1000000"),
    ("MORPHEUS_PASSWORD_HASH_QUEUE_MS", "30000"),
    ("MORPHEUS_WORKERS", "2"),
];

/// What the gateway acknowledged (2xx) for one user, and what is in doubt because the answer
/// never came.
#[derive(Debug, Default)]
pub struct UserLedger {
    email: String,
    id: i64,
    logged_in: bool,
    /// Acknowledged refresh tokens in rotation order: all but the last were rotated away.
    refresh_chain: Vec<String>,
    /// A rotation of the last token was sent without an acknowledgement.
    rotation_in_doubt: bool,
    /// `(prefix, key)` of acknowledged keys not (acknowledged as) revoked.
    live_keys: Vec<(String, String)>,
    revoked_keys: Vec<String>,
    wallet_stored: bool,
}

impl UserLedger {
    /// Acknowledged writes: the registration, the login, each key, revocation and rotation,
    /// and the wallet key.
    pub fn acknowledged(&self) -> usize {
        1 + usize::from(self.logged_in)
            + self.live_keys.len()
            + 2 * self.revoked_keys.len()
            + self.refresh_chain.len().saturating_sub(1)
            + usize::from(self.wallet_stored)
    }
}

/// How a run of writers is steered: `stop` ends it; `warmed_up` counts the writers past their
/// first registration and login (the argon2-bound part), after which every kind of write runs.
#[derive(Clone, Default)]
pub struct Steering {
    pub stop: Arc<AtomicBool>,
    pub warmed_up: Arc<AtomicUsize>,
}

/// `writers` concurrent writers against `base` until told to stop; their ledgers.
pub async fn run_writers(base: &str, writers: usize, steering: Steering) -> Vec<UserLedger> {
    let client = http_client();
    let tasks: Vec<_> = (0..writers)
        .map(|_| tokio::spawn(writer(client.clone(), base.to_owned(), steering.clone())))
        .collect();
    let mut ledgers = Vec::new();
    for task in tasks {
        ledgers.extend(task.await.expect("a writer panicked"));
    }
    ledgers
}

async fn writer(client: Client, base: String, steering: Steering) -> Vec<UserLedger> {
    let Steering { stop, warmed_up } = steering;
    let mut users = Vec::new();
    while !stop.load(Ordering::Relaxed) {
        let Some(mut user) = register(&client, &base).await else {
            // The gateway is gone or refused; nothing of this user to check.
            continue;
        };
        let access = login(&client, &base, &mut user).await;
        if users.is_empty() {
            warmed_up.fetch_add(1, Ordering::Relaxed);
        }
        if let Some(access) = access {
            for _ in 0..ROUNDS_PER_USER {
                if stop.load(Ordering::Relaxed) || !round(&client, &base, &access, &mut user).await
                {
                    break;
                }
            }
        }
        users.push(user);
    }
    users
}

async fn send(request: reqwest::RequestBuilder) -> Option<Value> {
    let response = request.send().await.ok()?;
    if !response.status().is_success() {
        return None;
    }
    response.json().await.ok()
}

async fn register(client: &Client, base: &str) -> Option<UserLedger> {
    let email = unique_email();
    let body = json!({"email": email, "password": PASSWORD});
    let user = send(
        client
            .post(format!("{base}/api/v1/auth/register"))
            .json(&body),
    )
    .await?;
    Some(UserLedger {
        email,
        id: user["id"].as_i64()?,
        ..UserLedger::default()
    })
}

/// Logs in; the access token, the first refresh token going into the ledger.
async fn login(client: &Client, base: &str, user: &mut UserLedger) -> Option<String> {
    let body = json!({"email": user.email, "password": PASSWORD});
    let tokens = send(client.post(format!("{base}/api/v1/auth/login")).json(&body)).await?;
    user.logged_in = true;
    user.refresh_chain
        .push(tokens["refresh_token"].as_str()?.to_owned());
    Some(tokens["access_token"].as_str()?.to_owned())
}

/// One key, one revocation, one rotation, one wallet write; false once one went unanswered.
async fn round(client: &Client, base: &str, access: &str, user: &mut UserLedger) -> bool {
    let keys = format!("{base}/api/v1/auth/keys");
    let create = client
        .post(&keys)
        .bearer_auth(access)
        .json(&json!({"name": "d"}));
    let Some(key) = send(create).await else {
        return false;
    };
    let (Some(prefix), Some(secret)) = (key["key_prefix"].as_str(), key["key"].as_str()) else {
        return false;
    };
    user.live_keys.push((prefix.to_owned(), secret.to_owned()));
    if user.live_keys.len() > 1 && !revoke_oldest(client, &keys, access, user).await {
        return false;
    }
    rotate_and_store(client, base, access, user).await
}

/// Revokes the user's oldest live key (its id comes from the listing: creation does not
/// return it).
async fn revoke_oldest(client: &Client, keys: &str, access: &str, user: &mut UserLedger) -> bool {
    let Some(listed) = send(client.get(keys).bearer_auth(access)).await else {
        return false;
    };
    let prefix = user.live_keys[0].0.clone();
    let Some(id) = listed
        .as_array()
        .and_then(|all| all.iter().find(|k| k["key_prefix"] == prefix.as_str()))
        .and_then(|k| k["id"].as_i64())
    else {
        return false;
    };
    let (_, secret) = user.live_keys.remove(0);
    if send(client.delete(format!("{keys}/{id}")).bearer_auth(access))
        .await
        .is_none()
    {
        // Revoked or not: both are right for an unanswered revocation.
        return false;
    }
    user.revoked_keys.push(secret);
    true
}

async fn rotate_and_store(
    client: &Client,
    base: &str,
    access: &str,
    user: &mut UserLedger,
) -> bool {
    let current = user.refresh_chain.last().cloned().unwrap_or_default();
    let refresh = client
        .post(format!("{base}/api/v1/auth/refresh"))
        .json(&json!({"refresh_token": current}));
    match send(refresh).await {
        Some(tokens) => match tokens["refresh_token"].as_str() {
            Some(next) => user.refresh_chain.push(next.to_owned()),
            None => return false,
        },
        None => {
            user.rotation_in_doubt = true;
            return false;
        }
    }
    let wallet = client
        .post(format!("{base}/api/v1/auth/private-key"))
        .bearer_auth(access)
        .json(&json!({"private_key": WALLET_KEY}));
    if send(wallet).await.is_none() {
        return false;
    }
    user.wallet_stored = true;
    true
}

/// Checks every acknowledged write in the ledgers through the gateway at `base` (and the
/// wallet rows in `store`); the writes found missing or undone.
pub async fn lost_writes(base: &str, store: &Store, ledgers: &[UserLedger]) -> Vec<String> {
    let client = http_client();
    futures_util::stream::iter(ledgers)
        .map(|user| check_user(&client, base, store, user))
        .buffer_unordered(8)
        .concat()
        .await
}

/// A status, or none when the gateway did not answer (that fails the check, with the
/// restarted process's fate reported by the caller).
#[derive(PartialEq, Eq)]
struct Answer(Option<StatusCode>);

impl std::fmt::Display for Answer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.0 {
            Some(status) => write!(f, "{status}"),
            None => f.write_str("no answer"),
        }
    }
}

const OK: Answer = Answer(Some(StatusCode::OK));
const UNAUTHORIZED: Answer = Answer(Some(StatusCode::UNAUTHORIZED));

async fn status(request: reqwest::RequestBuilder) -> Answer {
    Answer(request.send().await.ok().map(|r| r.status()))
}

async fn check_user(client: &Client, base: &str, store: &Store, user: &UserLedger) -> Vec<String> {
    let mut lost = Vec::new();
    let login = json!({"email": user.email, "password": PASSWORD});
    let logged_in = status(
        client
            .post(format!("{base}/api/v1/auth/login"))
            .json(&login),
    )
    .await;
    if logged_in != OK {
        lost.push(format!("{}: login {logged_in}", user.email));
    }
    let settings = format!("{base}/api/v1/automation/settings");
    for (prefix, key) in &user.live_keys {
        let used = status(client.get(&settings).bearer_auth(key)).await;
        if used != OK {
            lost.push(format!(
                "{}: created key {prefix} answers {used}",
                user.email
            ));
        }
    }
    for key in &user.revoked_keys {
        let used = status(client.get(&settings).bearer_auth(key)).await;
        if used != UNAUTHORIZED {
            lost.push(format!("{}: a revoked key answers {used}", user.email));
        }
    }
    let refresh = format!("{base}/api/v1/auth/refresh");
    if let Some((last, rotated_away)) = user.refresh_chain.split_last() {
        // The live token first: presenting a rotated-away one revokes the whole login.
        if !user.rotation_in_doubt {
            let live = status(client.post(&refresh).json(&json!({"refresh_token": last}))).await;
            if live != OK {
                lost.push(format!(
                    "{}: the live refresh token answers {live}",
                    user.email
                ));
            }
        }
        for old in rotated_away {
            let reused = status(client.post(&refresh).json(&json!({"refresh_token": old}))).await;
            if reused != UNAUTHORIZED {
                lost.push(format!(
                    "{}: a rotated-away token answers {reused}",
                    user.email
                ));
            }
        }
    }
    let wallets = store.count(&format!(
        "SELECT COUNT(*) AS n FROM wallet_keys WHERE user_id = {}",
        user.id
    ));
    if user.wallet_stored && wallets != 1 {
        lost.push(format!("{}: the stored wallet key is gone", user.email));
    }
    lost
}
