//! Starting a simulator and steering it from a test.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use tokio::net::TcpListener;

use crate::config::SimConfig;
use crate::counters::Counters;
use crate::faults::Fault;
use crate::state::Shared;

/// Entry point: `Simulator::start(config, addr)`.
pub struct Simulator;

impl Simulator {
    /// Binds `bind` (port 0 picks a free port) and serves on the current tokio runtime until
    /// [`SimHandle::shutdown`] or the runtime ends.
    pub async fn start(config: SimConfig, bind: SocketAddr) -> std::io::Result<SimHandle> {
        let listener = TcpListener::bind(bind).await?;
        let addr = listener.local_addr()?;
        let shared = Arc::new(Shared::new(config));
        tokio::spawn(accept_loop(Arc::clone(&shared), listener));
        Ok(SimHandle { shared, addr })
    }
}

async fn accept_loop(shared: Arc<Shared>, listener: TcpListener) {
    let mut shutdown = shared.shutdown.subscribe();
    loop {
        tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => {
                    tokio::spawn(crate::conn::serve(Arc::clone(&shared), stream));
                }
                // Out of descriptors and the like: back off instead of spinning.
                Err(_) => tokio::time::sleep(Duration::from_millis(5)).await,
            },
            () = stopped(&mut shutdown) => break,
        }
    }
}

/// Resolves once shutdown was requested (the `Ref` guard `wait_for` returns is not `Send`, so
/// it must not live in a `select!` output).
pub(crate) async fn stopped(rx: &mut tokio::sync::watch::Receiver<bool>) {
    let _ = rx.wait_for(|stop| *stop).await;
}

/// A running simulator. Cheap to clone; dropping it does not stop the server.
#[derive(Clone)]
pub struct SimHandle {
    shared: Arc<Shared>,
    addr: SocketAddr,
}

impl std::fmt::Debug for SimHandle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SimHandle")
            .field("addr", &self.addr)
            .finish_non_exhaustive()
    }
}

impl SimHandle {
    /// The bound address (with the real port when started on port 0).
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// `http://IP:PORT`; an unspecified bind address (`0.0.0.0`, `::`) becomes loopback.
    pub fn base_url(&self) -> String {
        let ip = match self.addr.ip() {
            IpAddr::V4(ip) if ip.is_unspecified() => IpAddr::V4(Ipv4Addr::LOCALHOST),
            IpAddr::V6(ip) if ip.is_unspecified() => IpAddr::V6(Ipv6Addr::LOCALHOST),
            ip => ip,
        };
        format!("http://{}", SocketAddr::new(ip, self.addr.port()))
    }

    /// Installs a fault; the newest matching fault applies first.
    pub fn set_fault(&self, fault: Fault) {
        self.shared.faults.set(fault);
    }

    pub fn clear_faults(&self) {
        self.shared.faults.clear();
    }

    pub fn counters(&self) -> Counters {
        self.shared.counters.snapshot()
    }

    /// Moves the chain clock forward (rounded up to whole seconds), so sessions expire without
    /// waiting.
    pub fn advance_clock(&self, by: Duration) {
        self.shared.advance_clock(by);
    }

    /// The chain clock, unix seconds.
    pub fn now_unix(&self) -> u64 {
        self.shared.now_unix()
    }

    /// Pause between stream events for streams started from now on.
    pub fn set_chunk_delay(&self, d: Duration) {
        self.shared.set_chunk_delay(d);
    }

    /// Sets the wallet's MOR (wei) that `GET /blockchain/balance` reports (1,000,000 MOR at
    /// start).
    pub fn set_mor_balance(&self, mor: u128) {
        self.shared.set_mor_balance(mor);
    }

    /// `Some(reason)`: `/healthcheck` answers 503 `{"status":"degraded",…}` with `reason` as its
    /// store's state (`system/controller.go:76-91`); `None`: healthy again.
    pub fn set_degraded(&self, reason: Option<&str>) {
        self.shared.set_degraded(reason.map(str::to_owned));
    }

    /// Takes a provider's endpoint down (or back up): its handshakes and its sessions' chats are
    /// refused (`failed to connect to provider: … connection refused`), and opens by model skip
    /// its bids as the node does after a failed handshake.
    pub fn set_provider_down(&self, provider: &str, down: bool) {
        self.shared.set_provider_down(provider, down);
    }

    /// The latest chat body the provider received on `session_id`, after the node's go-openai
    /// rewrite (`model` is the provider's model), and the JSON paths of the values the rewrite
    /// dropped. `None` before the first request reached the provider.
    pub fn last_forwarded(&self, session_id: &str) -> Option<(serde_json::Value, Vec<String>)> {
        let book = self.shared.sessions();
        let fwd = book.get_any(session_id)?.forwarded.as_ref()?;
        Some((fwd.body.clone(), fwd.dropped.clone()))
    }

    /// Ids of every session on the simulated chain, visible or not yet, in opening order.
    pub fn session_ids(&self) -> Vec<String> {
        self.shared.sessions().ids()
    }

    /// Stops accepting and closes every connection, in-flight requests included.
    pub fn shutdown(&self) {
        self.shared.shutdown.send_replace(true);
    }
}
