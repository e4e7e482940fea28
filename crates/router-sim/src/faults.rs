//! Injected misbehaviour: what can go wrong between the gateway and a proxy-router.

use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering::Relaxed};

use serde::{Deserialize, Serialize};

/// One injected fault. JSON form (for `POST /__sim/faults`):
/// `{"route":"chat","kind":{"type":"status","status":500,"body":"{\"error\":\"session expired\"}"},"times":1}`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Fault {
    pub route: FaultRoute,
    pub kind: FaultKind,
    /// `None`: until cleared. `Some(n)`: the next `n` matching requests only.
    #[serde(default)]
    pub times: Option<u32>,
}

/// Which requests a fault applies to. JSON: snake_case (`"open_session"`); the PascalCase
/// variant names are accepted too.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FaultRoute {
    /// `POST /v1/chat/completions`.
    #[serde(alias = "Chat")]
    Chat,
    /// `POST /blockchain/models/{id}/session` and `POST /blockchain/bids/{id}/session`.
    #[serde(alias = "OpenSession")]
    OpenSession,
    /// `POST /blockchain/sessions/{id}/close`.
    #[serde(alias = "CloseSession")]
    CloseSession,
    /// `GET /blockchain/sessions/{id}` and `GET /blockchain/sessions/user`.
    #[serde(alias = "GetSession")]
    GetSession,
    /// `GET /blockchain/models`.
    #[serde(alias = "Models")]
    Models,
    /// `GET /blockchain/models/{id}/bids/rated`.
    #[serde(alias = "RatedBids")]
    RatedBids,
    /// `POST /blockchain/approve`.
    #[serde(alias = "Approve")]
    Approve,
    /// Every proxy-router route, `/healthcheck`, `/wallet`, `/blockchain/bids/{id}` and unknown
    /// paths included (only `Any` reaches those).
    #[serde(alias = "Any")]
    Any,
}

/// What happens to a matching request. JSON: internally tagged, `{"type":"latency","ms":200}`.
///
/// The `*_after_chunks` and `drip_chunks` kinds shape a chat stream event by event; on a JSON
/// answer they count 64-byte pieces of the body instead (sent with chunked encoding).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum FaultKind {
    /// Wait this long, then answer normally.
    Latency { ms: u64 },
    /// Answer with this status and body instead (content type: the given one, else JSON when
    /// the body starts with `{`, else `text/html`).
    Status {
        status: u16,
        body: String,
        #[serde(default)]
        content_type: Option<String>,
    },
    /// Read the request, then reset the TCP connection (RST, `SO_LINGER` 0) without a response.
    Reset,
    /// Read the request and never answer; the request ends only when the client goes away.
    StallBeforeFirstByte,
    /// Send the head and `chunks` events, then hang until the client goes away.
    StallAfterChunks { chunks: u32 },
    /// Send `chunks` events, then end the body cleanly: no final chunk, no usage, no `[DONE]`.
    CutAfterChunks { chunks: u32 },
    /// Send `chunks` events, then `data: {not json\n\n`, then carry on normally.
    GarbageAfterChunks { chunks: u32 },
    /// Send `chunks` events (or body pieces), then reset the connection.
    ResetAfterChunks { chunks: u32 },
    /// `302 Found` to `location`.
    Redirect { location: String },
    /// `200 application/json` of exactly `bytes` bytes, generated lazily.
    HugeBody { bytes: u64 },
    /// The normal answer, labelled `text/html`.
    WrongContentType,
    /// The normal answer plus an `x-sim-padding` header `bytes` long.
    HugeHeaders { bytes: usize },
    /// A normal chat completion whose usage fields are negative numbers and strings.
    BadUsage,
    /// A chat stream paced at one event every `every_ms` instead of the configured delay.
    DripChunks { every_ms: u64 },
}

/// Which fault routes a request belongs to; `None` is matched by `Any` only.
pub(crate) type RouteClass = Option<FaultRoute>;

/// The installed faults, newest first in priority.
#[derive(Default)]
pub(crate) struct FaultTable {
    /// Number of installed faults, read without the lock so the no-fault path stays cheap.
    len: AtomicUsize,
    list: Mutex<Vec<Fault>>,
}

impl FaultTable {
    /// Installs a fault. The newest matching fault wins; older ones apply again once it is used
    /// up. `times: Some(0)` installs nothing.
    pub fn set(&self, fault: Fault) {
        if fault.times == Some(0) {
            return;
        }
        let mut list = self.list.lock().unwrap_or_else(|e| e.into_inner());
        list.push(fault);
        self.len.store(list.len(), Relaxed);
    }

    pub fn clear(&self) {
        let mut list = self.list.lock().unwrap_or_else(|e| e.into_inner());
        list.clear();
        self.len.store(0, Relaxed);
    }

    pub fn list(&self) -> Vec<Fault> {
        self.list.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// The fault for one request, consuming one use of it.
    pub fn take(&self, route: RouteClass) -> Option<FaultKind> {
        if self.len.load(Relaxed) == 0 {
            return None;
        }
        let mut list = self.list.lock().unwrap_or_else(|e| e.into_inner());
        let idx = list
            .iter()
            .rposition(|f| f.route == FaultRoute::Any || Some(f.route) == route)?;
        let kind = match &mut list[idx].times {
            Some(n) if *n <= 1 => {
                let kind = list.remove(idx).kind;
                self.len.store(list.len(), Relaxed);
                kind
            }
            Some(n) => {
                *n -= 1;
                list[idx].kind.clone()
            }
            None => list[idx].kind.clone(),
        };
        Some(kind)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_forms() {
        let f: Fault = serde_json::from_str(
            r#"{"route":"Chat","kind":{"type":"stall_after_chunks","chunks":3},"times":1}"#,
        )
        .unwrap();
        assert_eq!(f.route, FaultRoute::Chat);
        assert_eq!(f.kind, FaultKind::StallAfterChunks { chunks: 3 });
        let f: Fault =
            serde_json::from_str(r#"{"route":"open_session","kind":{"type":"reset"}}"#).unwrap();
        assert_eq!(f.times, None);
        assert_eq!(
            serde_json::to_string(&f).unwrap(),
            r#"{"route":"open_session","kind":{"type":"reset"},"times":null}"#
        );
    }

    #[test]
    fn newest_first_and_times() {
        let t = FaultTable::default();
        t.set(Fault {
            route: FaultRoute::Chat,
            kind: FaultKind::Reset,
            times: None,
        });
        t.set(Fault {
            route: FaultRoute::Any,
            kind: FaultKind::BadUsage,
            times: Some(2),
        });
        assert_eq!(t.take(Some(FaultRoute::Models)), Some(FaultKind::BadUsage));
        assert_eq!(t.take(Some(FaultRoute::Chat)), Some(FaultKind::BadUsage));
        assert_eq!(t.take(Some(FaultRoute::Chat)), Some(FaultKind::Reset));
        assert_eq!(t.take(Some(FaultRoute::Models)), None);
        assert_eq!(t.take(None), None);
        t.clear();
        assert_eq!(t.take(Some(FaultRoute::Chat)), None);
    }
}
