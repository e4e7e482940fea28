//! `morpheus-router-sim`: a fake Morpheus proxy-router for local demos and benchmarks.
//! See the library documentation for routes, faults and the `/__sim/*` control surface.

use std::io::Write as _;
use std::net::SocketAddr;
use std::time::Duration;

use clap::Parser;
use morpheus_router_sim::{ProviderLatency, SimConfig, Simulator};

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
    /// End streams without `data: [DONE]`, as nodes before 2025-11-19 did.
    #[arg(long)]
    no_done_marker: bool,
    /// Chat requests one session serves at a time, the others waiting their turn; 0: no limit,
    /// as nodes before 2025-12-22.
    #[arg(long, default_value_t = 1)]
    session_concurrency: u32,
    /// Opens shorter than this fail as the contract's minimum does; 0 accepts any duration.
    #[arg(long, default_value_t = morpheus_router_sim::MIN_SESSION_SECONDS)]
    min_session_seconds: u64,
    /// How long an open takes, in milliseconds (a real one: seconds to minutes).
    #[arg(long, default_value_t = 0)]
    open_latency_ms: u64,
    /// The model's time to its first token, in milliseconds.
    #[arg(long, default_value_t = 0)]
    first_token_ms: u64,
    /// The model's time per further token, in milliseconds.
    #[arg(long, default_value_t = 0)]
    per_token_ms: u64,
    /// Send a usage chunk in every stream, asked for or not (the old simulator).
    #[arg(long)]
    usage_without_include_usage: bool,
    /// Leave out `usage_from_provider`/`usage_from_consumer`, as nodes before 2025-12-15.
    #[arg(long)]
    no_node_usage_fields: bool,
    /// Give the "provider" chat bodies as sent, not as go-openai re-encodes them.
    #[arg(long)]
    no_rewrite: bool,
    /// Fail sessions opened with `failover: true` over to a new one (today's node ignores the flag).
    #[arg(long)]
    honour_failover: bool,
}

#[tokio::main]
async fn main() -> std::io::Result<()> {
    let args = Args::parse();
    let config = SimConfig {
        user: args.user,
        password: args.password,
        chunk_delay: Duration::from_millis(args.chunk_delay_ms),
        done_marker: !args.no_done_marker,
        session_concurrency: (args.session_concurrency > 0).then_some(args.session_concurrency),
        min_session_seconds: args.min_session_seconds,
        open_latency: Duration::from_millis(args.open_latency_ms),
        provider_latency: ProviderLatency {
            first_token: Duration::from_millis(args.first_token_ms),
            per_token: Duration::from_millis(args.per_token_ms),
        },
        usage_without_include_usage: args.usage_without_include_usage,
        node_usage_fields: !args.no_node_usage_fields,
        rewrite_requests: !args.no_rewrite,
        honour_failover: args.honour_failover,
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
