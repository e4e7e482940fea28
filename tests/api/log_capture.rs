//! Every log line the servers of this test binary write, at TRACE level, so tests can prove
//! secrets never reach a log.

use std::io::Write;
use std::sync::{Mutex, OnceLock};

static LOGS: OnceLock<Mutex<Vec<u8>>> = OnceLock::new();

struct Capture;

impl Write for Capture {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        if let Some(logs) = LOGS.get()
            && let Ok(mut logs) = logs.lock()
        {
            logs.extend_from_slice(buf);
        }
        if std::env::var_os("TEST_LOG").is_some() {
            std::io::stderr().write_all(buf)?;
        }
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

pub fn install() {
    LOGS.get_or_init(|| {
        let _ = tracing_subscriber::fmt()
            .with_env_filter("trace,h2=info,hyper=info,mio=info,actix_server=info,actix_http=debug")
            .with_writer(|| Capture)
            .with_ansi(false)
            .try_init();
        Mutex::new(Vec::new())
    });
}

/// Everything logged so far.
pub fn captured() -> String {
    LOGS.get()
        .and_then(|l| {
            l.lock()
                .ok()
                .map(|l| String::from_utf8_lossy(&l).into_owned())
        })
        .unwrap_or_default()
}
