//! The plain-provider lane: the same small chat sent to `morpheus-openai-mock` (a stand-in for
//! an operator's vLLM or OpenAI account) directly, and through a gateway of its own whose
//! providers file (`MORPHEUS_PROVIDERS_FILE`) routes one model to that mock — what the gateway
//! adds in front of a plain OpenAI-compatible provider, and the figure to put beside other
//! gateways measured the same way. The gateway has the main lane's settings (the same
//! [`stack::start_gateway`] environment, governance off) plus the providers file; the mock is
//! pinned with the simulator and the load generator, the gateway with the main gateway.

use std::net::SocketAddr;
use std::path::Path;

use anyhow::{Context as _, Result};
use bytes::Bytes;
use morpheus_bench::http::Target;
use morpheus_bench::procs::ChildGuard;
use morpheus_bench::setup;
use morpheus_bench::stack::{self, Bins, Gateway, chat_body};

/// The gateway's name for the model, and the mock's (the gateway renames it on the way, as an
/// operator's `upstream` does). Both 20 characters, so the two lanes' bodies are the same size.
pub const MODEL: &str = "bench-provider-model";
pub const UPSTREAM_MODEL: &str = "bench-upstream-model";
/// The provider's name in the providers file (and the mock's `--name`).
const PROVIDER: &str = "mock";

pub struct ProviderLane {
    mock: ChildGuard,
    gateway: Gateway,
    /// Load generator → mock, `POST /v1/chat/completions`.
    pub direct: Target,
    /// Load generator → gateway (`Bearer sk-…`) → mock.
    pub through: Target,
    /// The small chat for each (the same but for the model's name).
    pub direct_body: Bytes,
    pub through_body: Bytes,
}

/// Starts the mock and the lane's gateway (SQLite and providers file in `dir`), and sets the
/// gateway up through its API (a user, a key, one chat answered by the mock).
pub async fn start(
    bins: &Bins,
    dir: &Path,
    sim: SocketAddr,
    (core_lg, core_gw): (Option<usize>, Option<usize>),
) -> Result<ProviderLane> {
    let bin = bins.openai_mock.as_deref().with_context(|| {
        format!(
            "morpheus-openai-mock is missing next to {}: run bench/run (it builds it too)",
            bins.gateway.display()
        )
    })?;
    std::fs::create_dir_all(dir)?;
    let (mock, mock_addr) =
        stack::start_openai_mock(bin, dir, core_lg, PROVIDER, &[UPSTREAM_MODEL])?;
    let file = dir.join("providers.toml");
    std::fs::write(
        &file,
        format!(
            "[[providers]]\nname = \"{PROVIDER}\"\nbase_url = \"http://{mock_addr}/v1\"\n\
             models = [{{ name = \"{MODEL}\", upstream = \"{UPSTREAM_MODEL}\" }}]\n"
        ),
    )?;
    let gateway = stack::start_gateway(
        bins,
        &dir.join("gateway"),
        sim,
        core_gw,
        &[("MORPHEUS_PROVIDERS_FILE", file.display().to_string())],
    )?;
    let api_key = setup::run_for_provider(gateway.addr, MODEL).await?;
    Ok(ProviderLane {
        mock,
        direct: Target::new(mock_addr, "/v1/chat/completions", &[])?,
        through: Target::new(
            gateway.addr,
            "/api/v1/chat/completions",
            &[("authorization", format!("Bearer {api_key}"))],
        )?,
        gateway,
        direct_body: chat_body(UPSTREAM_MODEL, 4, 16, false),
        through_body: chat_body(MODEL, 4, 16, false),
    })
}

impl ProviderLane {
    pub fn gateway_addr(&self) -> SocketAddr {
        self.gateway.addr
    }

    pub fn mock_pid(&self) -> u32 {
        self.mock.pid()
    }

    pub fn gateway_pid(&self) -> u32 {
        self.gateway.child.pid()
    }

    /// An error, with the end of its log, when the mock or the gateway has exited.
    pub fn check_running(&mut self) -> Result<()> {
        self.mock.check_running()?;
        self.gateway.child.check_running()
    }
}
