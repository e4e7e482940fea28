//! `/__sim/*`: steering a simulator from another process (no auth, never faulted or counted).

use std::time::Duration;

use hyper::{Method, StatusCode};
use serde::{Deserialize, Serialize};

use crate::faults::Fault;
use crate::reply::Reply;
use crate::state::Shared;

#[derive(Serialize)]
struct OkOut {
    status: &'static str,
}

#[derive(Deserialize)]
struct AdvanceBody {
    seconds: u64,
}

#[derive(Deserialize)]
struct DelayBody {
    ms: u64,
}

#[derive(Serialize)]
struct ClockOut {
    now: u64,
}

#[derive(Deserialize)]
struct HealthBody {
    /// `null` or absent: healthy.
    #[serde(default)]
    degraded: Option<String>,
}

#[derive(Deserialize)]
struct BalanceBody {
    /// Wei, as a decimal string (it exceeds 2^64).
    mor: String,
}

#[derive(Deserialize)]
struct ProviderBody {
    provider: String,
    down: bool,
}

#[derive(Serialize)]
struct ForwardedOut<'a> {
    body: &'a serde_json::Value,
    dropped: &'a [String],
}

const OK: OkOut = OkOut { status: "ok" };

/// `path` is what follows `/__sim/`.
pub(crate) fn handle(shared: &Shared, method: &Method, path: &str, body: &[u8]) -> Reply {
    match (method.as_str(), path) {
        ("POST", "faults") => match serde_json::from_slice::<Fault>(body) {
            Ok(fault) => {
                shared.faults.set(fault);
                Reply::ok(&OK)
            }
            Err(e) => Reply::bad_request(&format!("invalid fault: {e}")),
        },
        ("GET", "faults") => Reply::ok(&shared.faults.list()),
        ("DELETE", "faults") => {
            shared.faults.clear();
            Reply::ok(&OK)
        }
        ("GET", "counters") => Reply::ok(&shared.counters.snapshot()),
        ("GET", "clock") => Reply::ok(&ClockOut {
            now: shared.now_unix(),
        }),
        ("POST", "clock/advance") => match serde_json::from_slice::<AdvanceBody>(body) {
            Ok(b) => {
                shared.advance_clock(Duration::from_secs(b.seconds));
                Reply::ok(&ClockOut {
                    now: shared.now_unix(),
                })
            }
            Err(e) => Reply::bad_request(&format!("invalid body: {e}")),
        },
        ("POST", "chunk-delay") => match serde_json::from_slice::<DelayBody>(body) {
            Ok(b) => {
                shared.set_chunk_delay(Duration::from_millis(b.ms));
                Reply::ok(&OK)
            }
            Err(e) => Reply::bad_request(&format!("invalid body: {e}")),
        },
        ("POST", "health") => match serde_json::from_slice::<HealthBody>(body) {
            Ok(b) => {
                shared.set_degraded(b.degraded);
                Reply::ok(&OK)
            }
            Err(e) => Reply::bad_request(&format!("invalid body: {e}")),
        },
        ("POST", "balance") => match serde_json::from_slice::<BalanceBody>(body) {
            Ok(b) => match b.mor.parse::<u128>() {
                Ok(mor) => {
                    shared.set_mor_balance(mor);
                    Reply::ok(&OK)
                }
                Err(e) => Reply::bad_request(&format!("invalid mor: {e}")),
            },
            Err(e) => Reply::bad_request(&format!("invalid body: {e}")),
        },
        ("POST", "providers") => match serde_json::from_slice::<ProviderBody>(body) {
            Ok(b) => {
                shared.set_provider_down(&b.provider, b.down);
                Reply::ok(&OK)
            }
            Err(e) => Reply::bad_request(&format!("invalid body: {e}")),
        },
        ("GET", path) if path.starts_with("sessions/") && path.ends_with("/forwarded") => {
            let id = &path["sessions/".len()..path.len() - "/forwarded".len()];
            let book = shared.sessions();
            match book.get_any(id).and_then(|s| s.forwarded.as_ref()) {
                Some(f) => Reply::ok(&ForwardedOut {
                    body: &f.body,
                    dropped: &f.dropped,
                }),
                None => Reply::error(StatusCode::NOT_FOUND, "no request reached the provider"),
            }
        }
        _ => Reply::error(StatusCode::NOT_FOUND, "not found"),
    }
}
