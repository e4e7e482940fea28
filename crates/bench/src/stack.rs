//! The processes under test: `morpheus-router-sim`, `morpheus-gateway` and (for the benchmark's
//! plain-provider lane) `morpheus-openai-mock` started from their release binaries on fresh
//! temporary directories, and the chat bodies sent to them.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{Context as _, Result, bail};
use bytes::Bytes;
use serde_json::json;

use crate::http::probe_200;
use crate::procs::{self, ChildGuard};
use crate::setup;

/// Where the programs under test are.
pub struct Bins {
    pub gateway: PathBuf,
    pub sim: PathBuf,
    /// `morpheus-openai-mock`, when it was built (`bench/run` builds it; the reliability checks
    /// do not need it).
    pub openai_mock: Option<PathBuf>,
}

impl Bins {
    /// `morpheus-gateway` and `morpheus-router-sim` in `dir`, or else next to this binary;
    /// `how_to_build` goes into the error when they are missing. `morpheus-openai-mock` is
    /// looked for in the same place.
    pub fn locate(dir: Option<&Path>, how_to_build: &str) -> Result<Self> {
        let dir = match dir {
            Some(d) => d.to_path_buf(),
            None => std::env::current_exe()?
                .parent()
                .map(Path::to_path_buf)
                .context("this binary's directory")?,
        };
        let find = |name: &str| {
            let p = dir.join(name);
            if p.is_file() {
                Ok(p)
            } else {
                bail!("{} is missing: {how_to_build}", p.display())
            }
        };
        Ok(Self {
            gateway: find("morpheus-gateway")?,
            sim: find("morpheus-router-sim")?,
            openai_mock: find("morpheus-openai-mock").ok(),
        })
    }

    /// The cargo target directory the binaries were built in (`<target>/release/..`).
    pub fn target_dir(&self) -> PathBuf {
        self.gateway
            .parent()
            .and_then(Path::parent)
            .map_or_else(|| PathBuf::from("target"), Path::to_path_buf)
    }
}

/// The gateway's environment: SQLite in `dir`, the simulator as its proxy-router, one worker
/// (it gets one core when pinned), no per-client connection cap, then `extra` (which may
/// override any of these).
pub fn gateway_env(
    dir: &Path,
    bind: SocketAddr,
    sim: SocketAddr,
    extra: &[(&'static str, String)],
) -> Vec<(&'static str, String)> {
    let mut env = vec![
        ("MORPHEUS_BIND", bind.to_string()),
        (
            "DATABASE_URL",
            format!("sqlite://{}", dir.join("bench.db").display()),
        ),
        ("MORPHEUS_DATA_DIR", dir.display().to_string()),
        ("MORPHEUS_PROXY_ROUTER_URL", format!("http://{sim}")),
        ("MORPHEUS_PROXY_ROUTER_USER", setup::SIM_USER.to_owned()),
        (
            "MORPHEUS_PROXY_ROUTER_PASSWORD",
            setup::SIM_PASSWORD.to_owned(),
        ),
        ("MORPHEUS_WORKERS", "1".to_owned()),
        // The lanes measure what the gateway costs per request, not the session pool's cap:
        // as many pooled sessions as the 1,000 concurrent streams need, and no queue limit
        // (the realistic lane sets its own cap).
        ("MORPHEUS_POOL_MAX_SESSIONS_PER_MODEL", "1000".to_owned()),
        ("MORPHEUS_POOL_QUEUE_DEPTH", "100000".to_owned()),
        // The load generator plays every client from one address.
        ("MORPHEUS_MAX_CONNECTIONS_PER_CLIENT", "1000000".to_owned()),
        // The lanes measure the gateway without governance (a lane of one key sends more
        // requests than any sign-up credit pays for).
        ("MORPHEUS_BILLING", "false".to_owned()),
        ("RUST_LOG", "warn".to_owned()),
    ];
    for (key, value) in extra {
        env.retain(|(k, _)| k != key);
        env.push((key, value.clone()));
    }
    env
}

/// A running gateway, its address, and how long it took to become healthy.
pub struct Gateway {
    pub child: ChildGuard,
    pub addr: SocketAddr,
    pub startup: Duration,
}

/// Starts a gateway on a fresh, empty data directory and waits for its first healthy
/// `GET /health`, polled about every millisecond.
pub fn start_gateway(
    bins: &Bins,
    dir: &Path,
    sim: SocketAddr,
    cpu: Option<usize>,
    extra_env: &[(&'static str, String)],
) -> Result<Gateway> {
    std::fs::create_dir_all(dir)?;
    let bind = procs::free_addr()?;
    let env = gateway_env(dir, bind, sim, extra_env);
    let started = Instant::now();
    let mut child = procs::spawn(
        "morpheus-gateway",
        &bins.gateway,
        &["serve"],
        &env,
        cpu,
        dir.join("gateway.log"),
    )?;
    let deadline = started + Duration::from_secs(30);
    loop {
        if probe_200(bind, "/health") {
            return Ok(Gateway {
                child,
                addr: bind,
                startup: started.elapsed(),
            });
        }
        child.check_running()?;
        if Instant::now() > deadline {
            bail!(
                "the gateway was not healthy within 30 s; its log:\n{}",
                child.log_tail(30)
            );
        }
        std::thread::sleep(Duration::from_millis(1));
    }
}

/// Starts the simulator in fast mode (no pause between stream events, no provider or open
/// latency, one request per session at a time as today's node), then `extra` arguments.
pub fn start_sim(
    bins: &Bins,
    dir: &Path,
    cpu: Option<usize>,
    extra: &[&str],
) -> Result<(ChildGuard, SocketAddr)> {
    let bind = procs::free_addr()?;
    let bind_arg = bind.to_string();
    let mut args = vec!["--bind", &bind_arg, "--chunk-delay-ms", "0"];
    args.extend_from_slice(extra);
    let mut sim = procs::spawn(
        "morpheus-router-sim",
        &bins.sim,
        &args,
        &[],
        cpu,
        dir.join("router-sim.log"),
    )?;
    let deadline = Instant::now() + Duration::from_secs(10);
    while !probe_200(bind, "/healthcheck") {
        sim.check_running()?;
        if Instant::now() > deadline {
            bail!("the simulator did not answer /healthcheck within 10 s");
        }
        std::thread::sleep(Duration::from_millis(2));
    }
    Ok((sim, bind))
}

/// Starts `morpheus-openai-mock` (no pause between stream events, no key) serving `models`, and
/// waits for its `GET /v1/models`.
pub fn start_openai_mock(
    bin: &Path,
    dir: &Path,
    cpu: Option<usize>,
    name: &str,
    models: &[&str],
) -> Result<(ChildGuard, SocketAddr)> {
    std::fs::create_dir_all(dir)?;
    let bind = procs::free_addr()?;
    let bind_arg = bind.to_string();
    let mut args = vec!["--bind", &bind_arg, "--chunk-delay-ms", "0", "--name", name];
    for model in models {
        args.extend_from_slice(&["--model", model]);
    }
    let mut mock = procs::spawn(
        "morpheus-openai-mock",
        bin,
        &args,
        &[],
        cpu,
        dir.join("openai-mock.log"),
    )?;
    let deadline = Instant::now() + Duration::from_secs(10);
    while !probe_200(bind, "/v1/models") {
        mock.check_running()?;
        if Instant::now() > deadline {
            bail!("the OpenAI mock did not answer /v1/models within 10 s");
        }
        std::thread::sleep(Duration::from_millis(2));
    }
    Ok((mock, bind))
}

/// A chat of one user message of `words` words. The simulator echoes `Echo:` plus the words,
/// one per stream chunk, cut to `max_tokens`.
pub fn chat_body(model: &str, words: u32, max_tokens: u32, stream: bool) -> Bytes {
    let text: Vec<String> = (1..=words).map(|i| format!("word{i}")).collect();
    let mut body = json!({
        "model": model,
        "messages": [{"role": "user", "content": text.join(" ")}],
        "max_tokens": max_tokens,
    });
    if stream {
        body["stream"] = json!(true);
    }
    Bytes::from(body.to_string())
}
