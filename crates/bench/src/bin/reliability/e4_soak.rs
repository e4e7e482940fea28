//! E4 · Soak: a steady mix at half the knee (capped, see [`MAX_RPS`]) — 70 % non-stream chat,
//! 20 % streamed chat, 5 % API-key operations (create, list, revoke with a JWT), 5 % logins —
//! while the gateway's RSS, fds, threads and SQLite file and WAL sizes are sampled every 10 s.
//!
//! The key operations belong to a user of their own, replaced (account deleted, a new one
//! registered) every [`KEYS_PER_USER`] keys. A revoked key stays in its owner's list, so on one
//! user the list, and the memory and CPU each listing takes, would grow for the whole soak:
//! a 30-minute run on one user reached 18,000 keys and a saturated core, which measures the
//! workload's growth, not the gateway's.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context as _, Result, bail};
use bytes::Bytes;
use http_body_util::BodyExt as _;
use hyper::Method;
use morpheus_bench::http::{self, Conn, Target, drain};
use serde_json::{Value, json};
use tokio::time::Instant;

use crate::outcome::{Outcome, mib};
use crate::progress;
use crate::rig::{self, Ctx, Rig};
use crate::sampler::{Sample, slope};

/// The soak's ceiling: its 5 % logins cost about 25 ms of argon2 each on the gateway's one
/// core, so at 300 RPS they alone take 15 × 25 ms ≈ 40 % of it. Half of a chat-only knee
/// would ask for more hashing than the core can do, and the soak is about leaks, not capacity.
const MAX_RPS: f64 = 300.0;
const CONNS: usize = 32;
/// Keys created per key-operations user before it is replaced: the gateway's default
/// `MORPHEUS_KEY_CREATIONS_PER_DAY`, past which a user's creations are refused (429).
const KEYS_PER_USER: u32 = 20;
const KEYS_USER_PASSWORD: &str = "soak keys user password";
const SAMPLE_EVERY: Duration = Duration::from_secs(10);
const SLOPE_MIB_PER_10_MIN: f64 = 1.0;
const FD_TOLERANCE: f64 = 0.05;
/// SQLite checkpoints its WAL every 1,000 pages (4 MiB); a WAL well beyond that means
/// checkpoints are not keeping up.
const WAL_LIMIT_BYTES: u64 = 16 * 1024 * 1024;

pub async fn run(ctx: &Ctx) -> Result<Outcome> {
    let mut out = Outcome::new("e4", "Soak");
    let mut rig = Rig::start(ctx, "e4", &rig::raised_login_limits()).await?;
    let (total, warmup) = if ctx.long {
        (Duration::from_secs(30 * 60), Duration::from_secs(5 * 60))
    } else {
        (Duration::from_secs(3 * 60), Duration::from_secs(60))
    };
    let rps = ctx.knee_rps.map_or(ctx.soak_rate, |k| k / 2.0).min(MAX_RPS);
    out.figure(
        "rate",
        format!(
            "{rps} RPS ({}), {} s of which {} s warm-up",
            match ctx.knee_rps {
                Some(k) => format!("half of E2's knee {k}, capped at {MAX_RPS}"),
                None => "E2 not run: --soak-rate".to_owned(),
            },
            total.as_secs(),
            warmup.as_secs()
        ),
    );
    progress(format!("E4: soak at {rps} RPS for {} s…", total.as_secs()));
    let mix = Mix::new(&rig)?;
    let started = std::time::Instant::now();
    let load = tokio::spawn(mix.clone().run(rps, total));
    let (pid, db) = (rig.gw_pid(), rig.db_file());
    let mut samples = vec![Sample::take(pid, started, &db).await];
    // The last sample comes a couple of seconds before the load stops, so every one is
    // taken under load (the connections close at the end).
    while started.elapsed() + SAMPLE_EVERY + Duration::from_secs(2) <= total {
        tokio::time::sleep(SAMPLE_EVERY).await;
        rig.alive()?;
        let s = Sample::take(pid, started, &db).await;
        progress(format!(
            "E4 {:.0} s: RSS {} MiB, {} fds, {} threads, WAL {} KiB",
            s.at_seconds,
            mib(s.rss_kib),
            s.fds,
            s.threads,
            s.wal_bytes / 1024
        ));
        samples.push(s);
    }
    // Every sample was taken under load; the last one is the end of the run.
    let tally = load.await??;
    rig.alive()?;
    let last = *samples.last().context("no samples")?;

    let warm = *samples
        .iter()
        .find(|s| s.at_seconds >= warmup.as_secs_f64() - 1.0)
        .unwrap_or(&last);
    let after: Vec<Sample> = samples
        .iter()
        .filter(|s| s.at_seconds >= warm.at_seconds)
        .copied()
        .collect();
    let end = *after.last().unwrap_or(&warm);
    let points: Vec<(f64, f64)> = after
        .iter()
        .map(|s| (s.at_seconds, s.rss_kib as f64 / 1024.0))
        .collect();
    let slope_per_10_min = (slope(&points) * 600.0 * 100.0).round() / 100.0;
    let fd_worst = after
        .iter()
        .map(|s| (s.fds as f64 - warm.fds as f64).abs() / warm.fds.max(1) as f64)
        .fold(0.0, f64::max);
    let wal_max = after.iter().map(|s| s.wal_bytes).max().unwrap_or(0);
    let five_xx: u64 = tally
        .statuses
        .iter()
        .filter(|(s, _)| **s >= 500)
        .map(|(_, n)| n)
        .sum();
    out.line(
        format!(
            "{} requests ({} chats, {} streams, {} key operations, {} logins); {five_xx} 5xx, {} other non-2xx, {} socket errors; RSS start {} / warm {} / end {} MiB, slope {slope_per_10_min} MiB per 10 min; fds {} → {} (worst {:.1} %); WAL ≤ {} KiB",
            tally.requests,
            tally.ops[0],
            tally.ops[1],
            tally.ops[2],
            tally.ops[3],
            tally.non_2xx() - five_xx,
            tally.socket_errors,
            mib(samples[0].rss_kib),
            mib(warm.rss_kib),
            mib(end.rss_kib),
            warm.fds,
            end.fds,
            fd_worst * 100.0,
            wal_max / 1024
        ),
    );
    out.figure(
        "requests",
        json!({"total": tally.requests, "chat": tally.ops[0], "stream": tally.ops[1], "key_operations": tally.ops[2], "logins": tally.ops[3],
               "non_2xx": tally.statuses.iter().map(|(s, n)| (s.to_string(), json!(n))).collect::<serde_json::Map<_, _>>(),
               "socket_errors": tally.socket_errors, "first_error": tally.first_error}),
    );
    out.figure("rss_mib", json!({"start": mib(samples[0].rss_kib), "warm": mib(warm.rss_kib), "end": mib(end.rss_kib), "slope_per_10_min": slope_per_10_min}));
    out.figure(
        "samples",
        samples.iter().map(Sample::json).collect::<Vec<_>>(),
    );
    out.criterion("5xx answers", five_xx.to_string(), "0", five_xx == 0);
    out.criterion(
        "socket errors",
        tally.socket_errors.to_string(),
        "0",
        tally.socket_errors == 0,
    );
    out.target(
        "RSS slope after warm-up",
        format!("{slope_per_10_min} MiB per 10 min"),
        &format!("< {SLOPE_MIB_PER_10_MIN} MiB per 10 min"),
        slope_per_10_min < SLOPE_MIB_PER_10_MIN,
    );
    out.target(
        "final RSS",
        format!("{} MiB", mib(end.rss_kib)),
        &format!("≤ warm + 10 % = {} MiB", mib(warm.rss_kib * 11 / 10)),
        end.rss_kib * 10 <= warm.rss_kib * 11,
    );
    out.target(
        "fd count after warm-up",
        format!(
            "{} at warm-up, worst {:.1} % away",
            warm.fds,
            fd_worst * 100.0
        ),
        "within ±5 %",
        fd_worst <= FD_TOLERANCE,
    );
    out.criterion(
        "WAL size after warm-up",
        format!("≤ {} KiB", wal_max / 1024),
        &format!(
            "≤ {} MiB (checkpoints happen)",
            WAL_LIMIT_BYTES / 1024 / 1024
        ),
        wal_max <= WAL_LIMIT_BYTES,
    );
    Ok(out)
}

/// What the soak sends.
#[derive(Clone)]
struct Mix {
    gw: SocketAddr,
    chat: Target,
    chat_body: Bytes,
    stream_body: Bytes,
    login_body: Value,
    /// Held through each key operation: a replacement must not pull the account from under
    /// another one.
    keys_user: Arc<tokio::sync::Mutex<KeysUser>>,
}

/// The user the key operations act as.
#[derive(Default)]
struct KeysUser {
    /// `None` before the first key operation and after a failed replacement.
    jwt: Option<String>,
    generation: u32,
    keys_made: u32,
}

#[derive(Default)]
struct Tally {
    requests: u64,
    /// chat, stream, key operation, login
    ops: [u64; 4],
    statuses: BTreeMap<u16, u64>,
    socket_errors: u64,
    first_error: Option<String>,
}

impl Tally {
    fn non_2xx(&self) -> u64 {
        self.statuses.values().sum()
    }

    fn add(&mut self, other: Tally) {
        self.requests += other.requests;
        for (a, b) in self.ops.iter_mut().zip(other.ops) {
            *a += b;
        }
        for (s, n) in other.statuses {
            *self.statuses.entry(s).or_default() += n;
        }
        self.socket_errors += other.socket_errors;
        if self.first_error.is_none() {
            self.first_error = other.first_error;
        }
    }
}

impl Mix {
    fn new(rig: &Rig) -> Result<Self> {
        Ok(Self {
            gw: rig.gw_addr,
            chat: rig.gateway()?,
            chat_body: morpheus_bench::stack::chat_body(rig.model(), 20, 21, false),
            stream_body: morpheus_bench::stack::chat_body(rig.model(), 15, 16, true),
            login_body: json!({"email": morpheus_bench::setup::EMAIL, "password": morpheus_bench::setup::PASSWORD}),
            keys_user: Arc::default(),
        })
    }

    /// The mix at `rps` over [`CONNS`] connections for `span`, open loop: of every 20 slots
    /// 14 are chats, 4 streams, 1 key operation, 1 login.
    async fn run(self, rps: f64, span: Duration) -> Result<Tally> {
        let interval = Duration::from_secs_f64(CONNS as f64 / rps);
        let start = Instant::now();
        let until = start + span;
        let mut tasks = Vec::new();
        for i in 0..CONNS {
            let mix = self.clone();
            let mut conn = Conn::open(self.gw).await?;
            let offset = interval.mul_f64(i as f64 / CONNS as f64);
            tasks.push(tokio::spawn(async move {
                let mut tally = Tally::default();
                for k in 0u32.. {
                    let at = start + offset + interval * k;
                    if at >= until {
                        break;
                    }
                    tokio::time::sleep_until(at).await;
                    let op = match (k as usize * CONNS + i) % 20 {
                        0..=13 => 0,
                        14..=17 => 1,
                        18 => 2,
                        _ => 3,
                    };
                    tally.ops[op] += 1;
                    if let Err(e) = mix.one(op, &mut conn, &mut tally).await {
                        tally.socket_errors += 1;
                        tally.first_error.get_or_insert(format!("{e:#}"));
                        conn = Conn::open(mix.gw).await?;
                    }
                }
                Ok::<_, anyhow::Error>(tally)
            }));
        }
        let mut all = Tally::default();
        for task in tasks {
            all.add(task.await??);
        }
        Ok(all)
    }

    async fn one(&self, op: usize, conn: &mut Conn, tally: &mut Tally) -> Result<()> {
        match op {
            0 => self
                .send(conn, tally, self.chat.request(&self.chat_body))
                .await
                .map(drop),
            1 => self
                .send(conn, tally, self.chat.request(&self.stream_body))
                .await
                .map(drop),
            2 => self.key_operation(conn, tally).await,
            _ => {
                let req = http::request(
                    self.gw,
                    Method::POST,
                    "/api/v1/auth/login",
                    &[],
                    Some(&self.login_body),
                )?;
                self.send(conn, tally, req).await.map(drop)
            }
        }
    }

    /// Creates an API key, lists the keys and revokes the new one, as the key-operations user
    /// (replaced first when it has made [`KEYS_PER_USER`] keys).
    async fn key_operation(&self, conn: &mut Conn, tally: &mut Tally) -> Result<()> {
        let mut user = self.keys_user.lock().await;
        if user.jwt.is_none() || user.keys_made >= KEYS_PER_USER {
            self.replace_keys_user(&mut user, conn, tally).await?;
        }
        let Some(jwt) = user.jwt.clone() else {
            return Ok(());
        };
        user.keys_made += 1;
        let bearer = [("authorization", format!("Bearer {jwt}"))];
        let create = http::request(
            self.gw,
            Method::POST,
            "/api/v1/auth/keys",
            &bearer,
            Some(&json!({"name": "soak"})),
        )?;
        let Some(created) = self.send(conn, tally, create).await? else {
            return Ok(());
        };
        let prefix = created["key_prefix"]
            .as_str()
            .unwrap_or_default()
            .to_owned();
        let list = http::request(self.gw, Method::GET, "/api/v1/auth/keys", &bearer, None)?;
        let Some(keys) = self.send(conn, tally, list).await? else {
            return Ok(());
        };
        let Some(id) = keys
            .as_array()
            .and_then(|keys| keys.iter().find(|k| k["key_prefix"] == prefix.as_str()))
            .and_then(|k| k["id"].as_u64())
        else {
            bail!("the new key {prefix} is not in the list");
        };
        let revoke = http::request(
            self.gw,
            Method::DELETE,
            &format!("/api/v1/auth/keys/{id}"),
            &bearer,
            None,
        )?;
        self.send(conn, tally, revoke).await.map(drop)
    }

    /// Deletes the key-operations user's account (its keys go with it) and registers and logs
    /// in the next one. Every request is tallied like the rest of the mix.
    async fn replace_keys_user(
        &self,
        user: &mut KeysUser,
        conn: &mut Conn,
        tally: &mut Tally,
    ) -> Result<()> {
        if let Some(jwt) = user.jwt.take() {
            let bearer = [("authorization", format!("Bearer {jwt}"))];
            // With the password: the login may be older than a deletion accepts without it.
            let delete = http::request(
                self.gw,
                Method::DELETE,
                "/api/v1/auth/register",
                &bearer,
                Some(&json!({"password": KEYS_USER_PASSWORD})),
            )?;
            self.send(conn, tally, delete).await?;
        }
        user.generation += 1;
        user.keys_made = 0;
        let credentials = json!({
            "email": format!("soak-keys-{}@example.com", user.generation),
            "password": KEYS_USER_PASSWORD,
        });
        let mut registration = credentials.clone();
        registration["name"] = json!("soak keys");
        let register = http::request(
            self.gw,
            Method::POST,
            "/api/v1/auth/register",
            &[],
            Some(&registration),
        )?;
        if self.send(conn, tally, register).await?.is_none() {
            return Ok(());
        }
        let login = http::request(
            self.gw,
            Method::POST,
            "/api/v1/auth/login",
            &[],
            Some(&credentials),
        )?;
        user.jwt = self
            .send(conn, tally, login)
            .await?
            .and_then(|answer| answer["access_token"].as_str().map(str::to_owned));
        Ok(())
    }

    /// One exchange within 15 s: the JSON answer of a 2xx (`Value::Null` for other bodies),
    /// `None` for another status (tallied), an error when the connection failed.
    async fn send(
        &self,
        conn: &mut Conn,
        tally: &mut Tally,
        req: hyper::Request<http_body_util::Full<Bytes>>,
    ) -> Result<Option<Value>> {
        tally.requests += 1;
        let is_json = req.uri().path() != "/api/v1/chat/completions";
        let answer = tokio::time::timeout(http::REQUEST_TIMEOUT, async {
            let resp = conn.send(req).await?;
            let status = resp.status().as_u16();
            let body = if is_json {
                resp.into_body().collect().await?.to_bytes()
            } else {
                drain(resp.into_body()).await?;
                Bytes::new()
            };
            Ok::<_, anyhow::Error>((status, body))
        })
        .await
        .map_err(|_| anyhow::anyhow!("no answer within {:?}", http::REQUEST_TIMEOUT))??;
        let (status, body) = answer;
        if !(200..300).contains(&status) {
            *tally.statuses.entry(status).or_default() += 1;
            tally.first_error.get_or_insert(format!(
                "status {status}: {}",
                String::from_utf8_lossy(&body)
            ));
            return Ok(None);
        }
        Ok(Some(serde_json::from_slice(&body).unwrap_or(Value::Null)))
    }
}
