//! What every check starts from: a fresh simulator and gateway (pinned like the benchmark:
//! load generator and simulator on core 0, gateway on core 1), a user, a JWT, an API key with
//! automation on and its session open, and the simulator's own session for the direct lane.

use std::net::SocketAddr;
use std::path::PathBuf;

use anyhow::Result;
use morpheus_bench::http::Target;
use morpheus_bench::procs::ChildGuard;
use morpheus_bench::setup::{self, Ready};
use morpheus_bench::stack::{self, Bins};

/// What all checks share.
pub struct Ctx {
    pub bins: Bins,
    pub long: bool,
    /// Cores of (load generator and simulator, gateway) when pinning is on.
    pub cores: Option<(usize, usize)>,
    pub tmp: tempfile::TempDir,
    /// The knee E2 found, for E4's rate.
    pub knee_rps: Option<f64>,
    /// E4's rate when E2 did not run first.
    pub soak_rate: f64,
}

pub struct Rig {
    pub sim: ChildGuard,
    pub sim_addr: SocketAddr,
    pub gw: ChildGuard,
    pub gw_addr: SocketAddr,
    pub ready: Ready,
    pub dir: PathBuf,
}

impl Rig {
    /// A fresh simulator and gateway in `<tmp>/<name>`, the gateway with `env` added.
    pub async fn start(ctx: &Ctx, name: &str, env: &[(&'static str, String)]) -> Result<Self> {
        let dir = ctx.tmp.path().join(name);
        std::fs::create_dir_all(&dir)?;
        // The direct lanes put every concurrent request (up to E3's 1,000 streams) on the one
        // session `setup` opens: the node before 2025-12-22 served them all at once, today's
        // would queue them behind each other. The gateway lanes never share a session.
        let (sim, sim_addr) = stack::start_sim(
            &ctx.bins,
            &dir,
            ctx.cores.map(|c| c.0),
            &["--session-concurrency", "0"],
        )?;
        // Start-up and shutdown events in the log: a gateway that stops says why.
        let mut env = env.to_vec();
        env.push(("RUST_LOG", "warn,morpheus_gateway=info".to_owned()));
        let gw = stack::start_gateway(
            &ctx.bins,
            &dir.join("gateway"),
            sim_addr,
            ctx.cores.map(|c| c.1),
            &env,
        )?;
        let ready = setup::run(gw.addr, sim_addr).await?;
        Ok(Self {
            sim,
            sim_addr,
            gw: gw.child,
            gw_addr: gw.addr,
            ready,
            dir,
        })
    }

    /// An error, with the end of its log, when the gateway or the simulator has exited.
    pub fn alive(&mut self) -> Result<()> {
        self.gw.check_running()?;
        self.sim.check_running()
    }

    pub fn gw_pid(&self) -> u32 {
        self.gw.pid()
    }

    /// `POST /api/v1/chat/completions` with the API key.
    pub fn gateway(&self) -> Result<Target> {
        Target::new(
            self.gw_addr,
            "/api/v1/chat/completions",
            &[("authorization", format!("Bearer {}", self.ready.api_key))],
        )
    }

    /// The simulator's own chat route, on the session opened for the direct lane.
    pub fn direct(&self) -> Result<Target> {
        Target::new(
            self.sim_addr,
            "/v1/chat/completions",
            &[
                ("authorization", setup::basic_auth()),
                ("session_id", self.ready.sim_session.clone()),
            ],
        )
    }

    /// The gateway's SQLite database file (its WAL is beside it, `-wal`).
    pub fn db_file(&self) -> PathBuf {
        self.dir.join("gateway").join("bench.db")
    }

    pub fn model(&self) -> &str {
        &self.ready.model
    }
}

/// Login and registration limits raised far beyond what a check sends, so the hashing path is
/// what is measured and not the per-account or per-client throttle (all load comes from one
/// address; E4 registers a new key-operations user every 100 keys).
pub fn raised_login_limits() -> Vec<(&'static str, String)> {
    vec![
        (
            "MORPHEUS_LOGIN_ATTEMPTS_PER_ACCOUNT_CLIENT",
            "1000000".to_owned(),
        ),
        (
            "MORPHEUS_LOGIN_ACCOUNT_CLIENT_REFILL_SECONDS",
            "1".to_owned(),
        ),
        ("MORPHEUS_LOGIN_FAILURES_PER_ACCOUNT", "1000000".to_owned()),
        ("MORPHEUS_LOGIN_ACCOUNT_REFILL_SECONDS", "1".to_owned()),
        ("MORPHEUS_LOGIN_ATTEMPTS_PER_CLIENT", "1000000".to_owned()),
        ("MORPHEUS_LOGIN_CLIENT_REFILL_SECONDS", "1".to_owned()),
        ("MORPHEUS_REGISTRATIONS_PER_CLIENT", "1000000".to_owned()),
        (
            "MORPHEUS_REGISTRATION_CLIENT_REFILL_SECONDS",
            "1".to_owned(),
        ),
    ]
}
