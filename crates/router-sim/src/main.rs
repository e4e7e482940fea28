//! `morpheus-router-sim`: a fake Morpheus proxy-router for local demos and benchmarks.
//! See the library documentation for routes, faults and the `/__sim/*` control surface.

use std::io::Write as _;
use std::net::SocketAddr;
use std::time::Duration;

use clap::Parser;
use morpheus_router_sim::{SimConfig, Simulator};

/// A stand-in for the Morpheus proxy-router (test/demo tool: no chain, no model, no keys).
#[derive(Parser)]
#[command(name = "morpheus-router-sim", version)]
struct Args {
    /// Address to listen on.
    #[arg(long, default_value = "127.0.0.1:8082")]
    bind: SocketAddr,
    /// HTTP Basic auth user.
    #[arg(long, default_value = "morpheus")]
    user: String,
    /// HTTP Basic auth password.
    #[arg(long, default_value = "sim-password")]
    password: String,
    /// Pause between stream events, in milliseconds.
    #[arg(long, default_value_t = 0)]
    chunk_delay_ms: u64,
    /// End streams with `data: [DONE]` (the 2025 proxy-router did not).
    #[arg(long)]
    done_marker: bool,
}

#[tokio::main]
async fn main() -> std::io::Result<()> {
    let args = Args::parse();
    let config = SimConfig {
        user: args.user,
        password: args.password,
        chunk_delay: Duration::from_millis(args.chunk_delay_ms),
        done_marker: args.done_marker,
        ..SimConfig::default()
    };
    let sim = Simulator::start(config, args.bind).await?;
    let mut out = std::io::stdout().lock();
    writeln!(
        out,
        "morpheus-router-sim listening on http://{}",
        sim.addr()
    )?;
    out.flush()?;
    drop(out);
    wait_for_signal().await?;
    sim.shutdown();
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
