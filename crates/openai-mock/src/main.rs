//! `morpheus-openai-mock`: a stand-in for a plain OpenAI-compatible provider, for local runs,
//! the benchmark and the OpenAI-SDK CI script. See the library documentation for routes, faults
//! and the `/__mock/*` control surface.

use std::io::Write as _;
use std::net::SocketAddr;
use std::time::Duration;

use clap::Parser;
use morpheus_openai_mock::{MockConfig, MockProvider, default_models};

/// A stand-in for an OpenAI-compatible provider (test/benchmark tool: echo model, faults).
#[derive(Parser)]
#[command(name = "morpheus-openai-mock", version)]
struct Args {
    /// Address to listen on (port 0: any free port, printed at start).
    #[arg(long, default_value = "127.0.0.1:8090")]
    bind: SocketAddr,
    /// Pause between stream events, in milliseconds.
    #[arg(long, default_value_t = 0)]
    chunk_delay_ms: u64,
    /// Require `Authorization: Bearer KEY` on `/v1/*`.
    #[arg(long)]
    api_key: Option<String>,
    /// The provider's name: `owned_by` of its models and the `x-mock-provider` header.
    #[arg(long, default_value = "openai-mock")]
    name: String,
    /// A model to serve (repeat for several); default: llama-3.3-70b, gpt-4o-mini,
    /// text-embedding-3-small.
    #[arg(long = "model")]
    models: Vec<String>,
}

#[tokio::main]
async fn main() -> std::io::Result<()> {
    let args = Args::parse();
    let config = MockConfig {
        name: args.name,
        models: if args.models.is_empty() {
            default_models()
        } else {
            args.models
        },
        api_key: args.api_key,
        chunk_delay: Duration::from_millis(args.chunk_delay_ms),
    };
    let mock = MockProvider::start(config, args.bind).await?;
    let mut out = std::io::stdout().lock();
    writeln!(
        out,
        "morpheus-openai-mock listening on http://{}",
        mock.addr()
    )?;
    out.flush()?;
    drop(out);
    wait_for_signal().await?;
    mock.shutdown();
    Ok(())
}

#[cfg(unix)]
async fn wait_for_signal() -> std::io::Result<()> {
    use tokio::signal::unix::{SignalKind, signal};
    let mut term = signal(SignalKind::terminate())?;
    tokio::select! {
        r = tokio::signal::ctrl_c() => r,
        _ = term.recv() => Ok(()),
    }
}

#[cfg(not(unix))]
async fn wait_for_signal() -> std::io::Result<()> {
    tokio::signal::ctrl_c().await
}
