//! Starting a mock provider and steering it from a test.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use tokio::net::{TcpListener, TcpStream};

use crate::config::MockConfig;
use crate::counters::Counters;
use crate::faults::Fault;
use crate::state::{LastRequest, Shared};

/// Entry point: `MockProvider::start(config, addr)`.
pub struct MockProvider;

impl MockProvider {
    /// Binds `bind` (port 0 picks a free port) and serves on the current tokio runtime until
    /// [`MockHandle::shutdown`] or the runtime ends.
    pub async fn start(config: MockConfig, bind: SocketAddr) -> std::io::Result<MockHandle> {
        let listener = TcpListener::bind(bind).await?;
        let addr = listener.local_addr()?;
        let shared = Arc::new(Shared::new(config));
        tokio::spawn(accept_loop(Arc::clone(&shared), listener));
        Ok(MockHandle { shared, addr })
    }
}

async fn accept_loop(shared: Arc<Shared>, listener: TcpListener) {
    let mut shutdown = shared.shutdown.subscribe();
    loop {
        tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => {
                    tokio::spawn(serve(Arc::clone(&shared), stream));
                }
                // Out of descriptors and the like: back off instead of spinning.
                Err(_) => tokio::time::sleep(Duration::from_millis(5)).await,
            },
            () = stopped(&mut shutdown) => break,
        }
    }
}

/// One connection: HTTP/1.1 with keep-alive. A handler error (the `refuse` fault) or a body
/// error (`cut_after_chunks`) makes hyper close it without finishing the answer.
async fn serve(shared: Arc<Shared>, stream: TcpStream) {
    // Small SSE events must leave at once, not wait for Nagle.
    let _ = stream.set_nodelay(true);
    let mut shutdown = shared.shutdown.subscribe();
    let service = service_fn(move |req| crate::handler::handle(Arc::clone(&shared), req));
    let conn = http1::Builder::new()
        .keep_alive(true)
        .serve_connection(TokioIo::new(stream), service);
    tokio::select! {
        _ = conn => {}
        () = stopped(&mut shutdown) => {}
    }
}

/// Resolves once shutdown was requested.
async fn stopped(rx: &mut tokio::sync::watch::Receiver<bool>) {
    let _ = rx.wait_for(|stop| *stop).await;
}

/// A running mock. Cheap to clone; dropping it does not stop the server.
#[derive(Clone)]
pub struct MockHandle {
    shared: Arc<Shared>,
    addr: SocketAddr,
}

impl std::fmt::Debug for MockHandle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MockHandle")
            .field("addr", &self.addr)
            .field("name", &self.shared.config.name)
            .finish_non_exhaustive()
    }
}

impl MockHandle {
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

    /// `base_url()` + `/v1`: what OpenAI clients take as their base URL.
    pub fn openai_base_url(&self) -> String {
        format!("{}/v1", self.base_url())
    }

    /// Installs a fault; the newest matching fault applies first.
    pub fn set_fault(&self, fault: Fault) {
        self.shared.faults.set(fault);
    }

    /// Removes every installed fault.
    pub fn clear_faults(&self) {
        self.shared.faults.clear();
    }

    /// The faults still installed, oldest first.
    pub fn faults(&self) -> Vec<Fault> {
        self.shared.faults.list()
    }

    pub fn counters(&self) -> Counters {
        self.shared.counters.snapshot()
    }

    /// The latest chat, embeddings, speech or transcription request received, `None` before
    /// the first.
    pub fn last_request(&self) -> Option<LastRequest> {
        self.shared.last_request()
    }

    /// Stops accepting and closes every connection, in-flight requests included.
    pub fn shutdown(&self) {
        self.shared.shutdown.send_replace(true);
    }
}
