//! One accepted TCP connection: HTTP/1.1 with keep-alive, plus the hook that lets a fault reset
//! it.

use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;
use tokio::sync::Notify;

use crate::counters::{bump, drop_one};
use crate::handler::handle;
use crate::state::Shared;

/// Per-connection control a handler can use to kill its own connection.
pub(crate) struct ConnCtl {
    /// A duplicate of the connection's socket. hyper owns the stream; this handle only sets
    /// `SO_LINGER` 0. Because the socket closes when its last descriptor does, the connection
    /// task drops hyper's side first and this one right after, which sends the RST.
    sock: Option<socket2::Socket>,
    kill: Notify,
}

impl ConnCtl {
    /// Reset the connection (RST): no response, no FIN.
    pub fn reset(&self) {
        if let Some(sock) = &self.sock {
            let _ = sock.set_linger(Some(Duration::ZERO));
        }
        self.kill.notify_one();
    }

    /// Close the connection (FIN) without a response.
    pub fn close(&self) {
        self.kill.notify_one();
    }
}

pub(crate) async fn serve(shared: Arc<Shared>, stream: TcpStream) {
    // Small SSE events must leave immediately, not wait for Nagle.
    let _ = stream.set_nodelay(true);
    let ctl = Arc::new(ConnCtl {
        sock: socket2::SockRef::from(&stream).try_clone().ok(),
        kill: Notify::new(),
    });
    bump(&shared.counters.connections_open);
    let mut shutdown = shared.shutdown.subscribe();

    let service = {
        let shared = Arc::clone(&shared);
        let ctl = Arc::clone(&ctl);
        service_fn(move |req| {
            let shared = Arc::clone(&shared);
            let ctl = Arc::clone(&ctl);
            async move { Ok::<_, Infallible>(handle(shared, ctl, req).await) }
        })
    };
    let conn = http1::Builder::new()
        .keep_alive(true)
        .serve_connection(TokioIo::new(stream), service);
    tokio::select! {
        _ = conn => {}
        () = ctl.kill.notified() => {}
        () = crate::server::stopped(&mut shutdown) => {}
    }
    // `conn` (hyper's descriptor) is gone here; dropping the last `ctl` closes the duplicate.
    drop(ctl);
    drop_one(&shared.counters.connections_open);
}
