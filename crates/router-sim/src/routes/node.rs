//! `GET /healthcheck` and `GET /wallet`.

use std::fmt::Write as _;
use std::sync::Arc;
use std::time::Duration;

use hyper::StatusCode;
use serde::Serialize;

use crate::reply::Reply;
use crate::state::Shared;

/// `HealthCheckResponse` (`system/structs.go:19-24`).
#[derive(Serialize)]
struct HealthOut {
    status: &'static str,
    version: &'static str,
    uptime: String,
    components: Components,
}

#[derive(Serialize)]
struct Components {
    badgerdb: String,
}

/// `system/controller.go:72-98`: 200 `healthy`, or 503 `degraded` when the node's badger store
/// fails its check; the uptime is rounded to whole seconds.
pub(crate) fn health(shared: &Shared) -> Reply {
    let degraded = shared.degraded();
    let uptime = Duration::from_secs(shared.started.elapsed().as_secs_f64().round() as u64);
    let body = HealthOut {
        status: if degraded.is_some() {
            "degraded"
        } else {
            "healthy"
        },
        version: concat!("sim-", env!("CARGO_PKG_VERSION")),
        uptime: go_duration(uptime),
        components: Components {
            badgerdb: match &degraded {
                Some(reason) => format!("unhealthy: {reason}"),
                None => "healthy, size=0.1MB".to_owned(),
            },
        },
    };
    let status = if degraded.is_some() {
        StatusCode::SERVICE_UNAVAILABLE
    } else {
        StatusCode::OK
    };
    Reply::json(status, bytes::Bytes::from(crate::gojson::to_vec(&body)))
}

/// `GET /config`: the node's sanitised configuration, of which only the chat-storage settings
/// are modelled. The node's `lib.Bool` has no JSON form of its own, hence `{"Bool":…}`.
pub(crate) fn config(shared: &Shared) -> Reply {
    let stored = serde_json::json!({ "Bool": shared.store_chat_context });
    Reply::ok(&serde_json::json!({
        "Version": concat!("sim-", env!("CARGO_PKG_VERSION")),
        "Commit": "",
        "DerivedConfig": { "WalletAddress": shared.wallet },
        "Config": { "Proxy": { "StoreChatContext": stored, "ForwardChatContext": stored } },
    }))
}

pub(crate) fn wallet(shared: &Arc<Shared>) -> Reply {
    Reply::json(StatusCode::OK, shared.wallet_json.clone())
}

/// `GET /blockchain/balance` (`blockchainapi/controller.go:35,447-460`): the wallet's ETH and MOR
/// as `structs.TokenBalanceRes` (`blockchainapi/structs/res.go:56-59`), whose `lib.BigInt`
/// members marshal as quoted decimal strings (`lib/bigint.go:29-31`), `mor` first.
pub(crate) fn balance(shared: &Shared) -> Reply {
    crate::counters::bump(&shared.counters.balance_reads);
    let (eth, mor) = shared.balance();
    Reply::ok(&serde_json::json!({ "mor": mor.to_string(), "eth": eth.to_string() }))
}

/// Formats like Go's `time.Duration.String()` ("1h2m3.5s", "250ms"), as the real node does.
fn go_duration(d: Duration) -> String {
    let ns = d.as_nanos();
    if ns == 0 {
        return "0s".to_owned();
    }
    if ns < 1_000 {
        return format!("{ns}ns");
    }
    if ns < 1_000_000 {
        return format!("{}µs", decimal(ns, 1_000));
    }
    if ns < 1_000_000_000 {
        return format!("{}ms", decimal(ns, 1_000_000));
    }
    let secs = d.as_secs();
    let (h, m) = (secs / 3600, (secs / 60) % 60);
    let mut out = String::new();
    if h > 0 {
        let _ = write!(out, "{h}h");
    }
    if h > 0 || m > 0 {
        let _ = write!(out, "{m}m");
    }
    let _ = write!(out, "{}s", decimal(ns % 60_000_000_000, 1_000_000_000));
    out
}

/// `value / unit` with the fraction's trailing zeros dropped.
fn decimal(value: u128, unit: u128) -> String {
    let whole = value / unit;
    let frac = value % unit;
    if frac == 0 {
        return whole.to_string();
    }
    let width = unit.ilog10() as usize;
    let digits = format!("{frac:0width$}");
    format!("{whole}.{}", digits.trim_end_matches('0'))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn like_go() {
        assert_eq!(go_duration(Duration::ZERO), "0s");
        assert_eq!(go_duration(Duration::from_millis(1500)), "1.5s");
        assert_eq!(go_duration(Duration::from_millis(250)), "250ms");
        assert_eq!(go_duration(Duration::from_secs(3723)), "1h2m3s");
        assert_eq!(go_duration(Duration::from_secs(120)), "2m0s");
        assert_eq!(go_duration(Duration::from_micros(1500)), "1.5ms");
    }
}
