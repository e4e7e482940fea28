//! `/__mock/*`: steering a mock from another process (no auth, never faulted or counted).

use hyper::{Method, StatusCode};
use serde::Serialize;

use crate::faults::Fault;
use crate::reply::{self, Reply};
use crate::state::Shared;

#[derive(Serialize)]
struct FaultsOut {
    faults: Vec<Fault>,
}

/// `path` is what follows `/__mock/`.
pub(crate) fn handle(shared: &Shared, method: &Method, path: &str, body: &[u8]) -> Reply {
    let faults = || FaultsOut {
        faults: shared.faults.list(),
    };
    match (method.as_str(), path) {
        ("POST", "faults") => match serde_json::from_slice::<Fault>(body) {
            Ok(fault) => {
                shared.faults.set(fault);
                reply::ok(&faults())
            }
            Err(e) => reply::invalid(&format!("invalid fault: {e}"), None),
        },
        ("GET", "faults") => reply::ok(&faults()),
        ("DELETE", "faults") => {
            shared.faults.clear();
            reply::ok(&faults())
        }
        ("GET", "counters") => reply::ok(&shared.counters.snapshot()),
        ("GET", "last_request") => reply::ok(&shared.last_request()),
        _ => reply::error(
            StatusCode::NOT_FOUND,
            &format!("no control route {method} /__mock/{path}"),
            "invalid_request_error",
            None,
            None,
        ),
    }
}
