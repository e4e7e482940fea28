//! Set-up through the real APIs: a user, a JWT, an API key and automation on the gateway; a
//! session opened on the simulator directly for the direct lane; a user and key on the
//! plain-provider lane's gateway.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use anyhow::{Context as _, Result, bail};
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use bytes::Bytes;
use hyper::{Method, StatusCode};
use serde_json::{Value, json};

use crate::http::call;

pub const SIM_USER: &str = "morpheus";
pub const SIM_PASSWORD: &str = "sim-password";
pub const EMAIL: &str = "bench@example.com";
pub const PASSWORD: &str = "bench: correct horse battery staple";

pub struct Ready {
    /// An access token of the set-up user (30 minutes).
    pub jwt: String,
    /// `sk-…`, automation on, its session opened by the first chat.
    pub api_key: String,
    /// The gateway's name for the model (`GET /api/v1/models`, first entry).
    pub model: String,
    /// The same model's on-chain id, for opening the direct lane's session.
    pub blockchain_id: String,
    /// The direct lane's session on the simulator.
    pub sim_session: String,
}

pub fn basic_auth() -> String {
    format!(
        "Basic {}",
        STANDARD.encode(format!("{SIM_USER}:{SIM_PASSWORD}"))
    )
}

fn expect(status: StatusCode, want: &[u16], body: &Bytes, what: &str) -> Result<Value> {
    if !want.contains(&status.as_u16()) {
        bail!(
            "{what}: status {status}, body {}",
            String::from_utf8_lossy(body)
        );
    }
    serde_json::from_slice(body).with_context(|| format!("{what}: the answer is not JSON"))
}

fn text(v: &Value, key: &str, what: &str) -> Result<String> {
    v[key]
        .as_str()
        .map(str::to_owned)
        .with_context(|| format!("{what}: no string `{key}` in {v}"))
}

pub async fn run(gw: SocketAddr, sim: SocketAddr) -> Result<Ready> {
    run_with_key(gw, sim, &json!({"name": "bench"})).await
}

/// Registers the set-up user, logs in and makes an API key with `key` as its
/// `POST /api/v1/auth/keys` body: (JWT, `sk-…`).
async fn user_and_key(gw: SocketAddr, key: &Value) -> Result<(String, String)> {
    let (s, b) = call(
        gw,
        Method::POST,
        "/api/v1/auth/register",
        &[],
        Some(&json!({"email": EMAIL, "password": PASSWORD, "name": "bench"})),
    )
    .await?;
    expect(s, &[200, 201], &b, "register")?;

    let (s, b) = call(
        gw,
        Method::POST,
        "/api/v1/auth/login",
        &[],
        Some(&json!({"email": EMAIL, "password": PASSWORD})),
    )
    .await?;
    let jwt = text(&expect(s, &[200], &b, "login")?, "access_token", "login")?;

    let (s, b) = call(
        gw,
        Method::POST,
        "/api/v1/auth/keys",
        &[("authorization", format!("Bearer {jwt}"))],
        Some(key),
    )
    .await?;
    let api_key = text(
        &expect(s, &[200, 201], &b, "create key")?,
        "key",
        "create key",
    )?;
    Ok((jwt, api_key))
}

/// Set-up of a gateway whose model `model` is served by a plain OpenAI-compatible provider: a
/// user and an API key (no automation: providers need no sessions), then one chat on `model`
/// through the gateway, which must come back as the provider's echo. Returns the key.
pub async fn run_for_provider(gw: SocketAddr, model: &str) -> Result<String> {
    let (_, api_key) = user_and_key(gw, &json!({"name": "bench"})).await?;
    let probe = json!({"model": model, "messages": [{"role": "user", "content": "hello"}]});
    let (s, b) = call(
        gw,
        Method::POST,
        "/api/v1/chat/completions",
        &[("authorization", format!("Bearer {api_key}"))],
        Some(&probe),
    )
    .await?;
    let what = "first chat through the gateway to the provider";
    check_echo(&expect(s, &[200], &b, what)?, what)?;
    Ok(api_key)
}

/// [`run`], the key made with `key` as its `POST /api/v1/auth/keys` body (a policy).
pub async fn run_with_key(gw: SocketAddr, sim: SocketAddr, key: &Value) -> Result<Ready> {
    let (jwt, api_key) = user_and_key(gw, key).await?;
    let bearer = [("authorization", format!("Bearer {api_key}"))];

    let (s, b) = call(
        gw,
        Method::PUT,
        "/api/v1/automation/settings",
        &bearer,
        Some(&json!({"is_enabled": true, "session_duration": 3600})),
    )
    .await?;
    expect(s, &[200], &b, "enable automation")?;

    let (model, blockchain_id) = first_model(gw).await?;

    // The gateway lane's session: opened by this first chat, reused by every later one.
    let probe = json!({"model": model, "messages": [{"role": "user", "content": "hello"}]});
    let (s, b) = call(
        gw,
        Method::POST,
        "/api/v1/chat/completions",
        &bearer,
        Some(&probe),
    )
    .await?;
    let answer = expect(s, &[200], &b, "first chat through the gateway")?;
    check_echo(&answer, "first chat through the gateway")?;

    // The direct lane's session, opened the way the gateway's upstream client opens one.
    let basic = [("authorization", basic_auth())];
    let (s, b) = call(
        sim,
        Method::POST,
        &format!("/blockchain/models/{blockchain_id}/session"),
        &basic,
        Some(&json!({"sessionDuration": 3600, "directPayment": false, "failover": false})),
    )
    .await?;
    let sim_session = text(
        &expect(s, &[200], &b, "open a session on the simulator")?,
        "sessionID",
        "open a session on the simulator",
    )?;
    let (s, b) = call(
        sim,
        Method::POST,
        "/v1/chat/completions",
        &[basic[0].clone(), ("session_id", sim_session.clone())],
        Some(&probe),
    )
    .await?;
    check_echo(
        &expect(s, &[200], &b, "first direct chat")?,
        "first direct chat",
    )?;

    Ok(Ready {
        jwt,
        api_key,
        model,
        blockchain_id,
        sim_session,
    })
}

fn check_echo(answer: &Value, what: &str) -> Result<()> {
    let content = answer["choices"][0]["message"]["content"]
        .as_str()
        .unwrap_or_default();
    if !content.starts_with("Echo:") {
        bail!("{what}: unexpected answer {answer}");
    }
    Ok(())
}

/// The first listed model, waiting (up to 10 s) for the catalogue to be filled.
async fn first_model(gw: SocketAddr) -> Result<(String, String)> {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let (s, b) = call(gw, Method::GET, "/api/v1/models", &[], None).await?;
        let list = expect(s, &[200], &b, "list models")?;
        if let Some(first) = list["data"].as_array().and_then(|d| d.first()) {
            let id = text(first, "id", "list models")?;
            let chain = text(first, "blockchainID", "list models")?;
            return Ok((id, chain));
        }
        if Instant::now() > deadline {
            bail!("GET /api/v1/models stayed empty for 10 s: {list}");
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Sets the simulator's pause between stream events (its `/__sim/chunk-delay` control).
pub async fn set_chunk_delay(sim: SocketAddr, ms: u64) -> Result<()> {
    let (s, b) = call(
        sim,
        Method::POST,
        "/__sim/chunk-delay",
        &[],
        Some(&json!({"ms": ms})),
    )
    .await?;
    if !s.is_success() {
        bail!(
            "setting the simulator's chunk delay: status {s}, body {}",
            String::from_utf8_lossy(&b)
        );
    }
    Ok(())
}
