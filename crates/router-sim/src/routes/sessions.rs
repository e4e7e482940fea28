//! Opening, reading and closing sessions.
//!
//! An open runs on its own task, as the node's Go handler does: the `*gin.Context` the node passes
//! down as its `context.Context` is never cancelled (its `Done()` is nil unless the engine sets
//! `ContextWithFallback`, gin v1.10.0 `context.go:1218-1238`, which the node does not,
//! `handlers/httphandlers/http.go:55`), so an open whose caller went away still completes — the
//! transactions are sent and mined, the session exists.

use std::sync::Arc;
use std::time::{Duration, Instant};

use serde::Serialize;
use serde_json::Value;

use crate::counters::bump;
use crate::faults::FaultKind;
use crate::gate::Gate;
use crate::ids::is_hex_id;
use crate::reply::Reply;
use crate::routes::catalog::TxOut;
use crate::routes::detached;
use crate::sessions::{SessionOut, SessionRec};
use crate::state::Shared;
use crate::texts;

#[derive(Serialize)]
struct OpenedOut {
    #[serde(rename = "sessionID")]
    session_id: String,
}

#[derive(Serialize)]
struct SessionEnvelope<'a> {
    session: SessionOut<'a>,
}

#[derive(Serialize)]
struct SessionsEnvelope<'a> {
    sessions: Vec<SessionOut<'a>>,
}

/// An open's body, bound like `structs.OpenSessionWithFailover` (`structs/req.go:66-74`).
struct OpenBody {
    /// `None`: absent or null, a nil `*lib.BigInt`.
    seconds: Option<i128>,
    failover: bool,
}

/// `Err(reply)`: a 400 with the binding error. `by_model`: the body has the two flags too
/// (`structs/req.go:66-74`).
fn open_body(body: &[u8], by_model: bool) -> Result<OpenBody, Reply> {
    let value: Value = serde_json::from_slice(body)
        .map_err(|e| Reply::bad_request(&format!("invalid request body: {e}")))?;
    let Value::Object(fields) = value else {
        return Err(Reply::bad_request(
            "json: cannot unmarshal non-object into Go value of type structs.OpenSessionWithFailover",
        ));
    };
    // `lib.BigInt.UnmarshalJSON` takes a number or a quoted number (`lib/bigint.go:12-27`).
    let seconds = match fields.get("sessionDuration") {
        None | Some(Value::Null) => None,
        Some(v) => {
            let text = match v {
                Value::String(s) => s.clone(),
                other => other.to_string(),
            };
            Some(
                text.parse::<i128>()
                    .map_err(|_| Reply::bad_request(&format!("invalid big.Int string: {text}")))?,
            )
        }
    };
    let flag = |key: &str| match fields.get(key) {
        None | Some(Value::Null) => Ok(false),
        Some(Value::Bool(b)) => Ok(*b),
        Some(other) => Err(Reply::bad_request(&format!(
            "json: cannot unmarshal {} into Go struct field OpenSessionWithFailover.{key} of type bool",
            json_kind(other)
        ))),
    };
    if !by_model {
        return Ok(OpenBody {
            seconds,
            failover: false,
        });
    }
    let failover = flag("failover")?;
    flag("directPayment")?;
    Ok(OpenBody { seconds, failover })
}

fn json_kind(v: &Value) -> &'static str {
    match v {
        Value::String(_) => "string",
        Value::Number(_) => "number",
        Value::Array(_) => "array",
        Value::Object(_) => "object",
        Value::Bool(_) | Value::Null => "bool",
    }
}

pub(crate) async fn open_by_model(
    shared: &Arc<Shared>,
    model_id: &str,
    body: &[u8],
    fault: Option<FaultKind>,
) -> Reply {
    let parsed = match open_body(body, true) {
        Ok(b) => b,
        Err(reply) => return reply,
    };
    if !is_hex_id(model_id, 64) {
        return Reply::bad_request("invalid model id");
    }
    // A nil duration is dereferenced and panics; with no gin.Recovery, `net/http` drops the
    // connection (`blockchainapi/controller.go:671-672`).
    let Some(seconds) = parsed.seconds else {
        return Reply::close_connection();
    };
    let catalog = &shared.catalog;
    let Some(model) = catalog
        .model_index(model_id)
        .filter(|&m| !catalog.models[m].is_deleted && !catalog.models[m].bids.is_empty())
    else {
        // Found out from chain reads before any handshake (`blockchainapi/service.go:1138-1145`).
        return Reply::internal(texts::NO_BIDS);
    };
    let at = match walk_bids(shared, model, None) {
        Ok(bid) => (model, bid),
        Err(text) => return Reply::internal(&text),
    };
    let failover = parsed.failover && shared.honour_failover;
    let task = Arc::clone(shared);
    let work = async move { complete_open(&task, at, seconds, failover, fault).await };
    detached(work, caller_gone(shared)).await
}

pub(crate) async fn open_by_bid(
    shared: &Arc<Shared>,
    bid_id: &str,
    body: &[u8],
    fault: Option<FaultKind>,
) -> Reply {
    let parsed = match open_body(body, false) {
        Ok(b) => b,
        Err(reply) => return reply,
    };
    if !is_hex_id(bid_id, 64) {
        return Reply::bad_request("invalid bid id");
    }
    let Some(seconds) = parsed.seconds else {
        return Reply::close_connection();
    };
    let Some(at) = shared.catalog.bid_index(bid_id) else {
        return Reply::internal(texts::UNKNOWN_BID);
    };
    let provider = &shared.catalog.models[at.0].bids[at.1].provider;
    if shared.provider_down(provider) {
        return Reply::internal(texts::HANDSHAKE_REFUSED);
    }
    let task = Arc::clone(shared);
    let work = async move { complete_open(&task, at, seconds, false, fault).await };
    detached(work, caller_gone(shared)).await
}

/// The bid an open by model gets: the best-scored one whose provider takes the handshake, other
/// than `omit` (the failover's `omitProvider`). A provider that is down is skipped, as the node
/// tries the next bid after a failed handshake; when none is left the node lists why each failed
/// (`blockchainapi/service.go:1157-1196`; addresses lower-case here, checksummed by the node).
pub(crate) fn walk_bids(
    shared: &Shared,
    model: usize,
    omit: Option<&str>,
) -> Result<usize, String> {
    #[derive(Serialize)]
    struct Failure<'a> {
        provider: &'a str,
        reason: &'a str,
    }
    let bids = &shared.catalog.models[model].bids;
    let mut failures = Vec::new();
    for i in shared.catalog.bids_by_score(model) {
        let provider = bids[i].provider.as_str();
        if omit.is_some_and(|p| p.eq_ignore_ascii_case(provider)) {
            failures.push(Failure {
                provider,
                reason: "skipped: omitted provider",
            });
        } else if shared.provider_down(provider) {
            failures.push(Failure {
                provider,
                reason: texts::HANDSHAKE_REFUSED,
            });
        } else {
            return Ok(i);
        }
    }
    let listed = String::from_utf8(crate::gojson::to_vec(&failures)).unwrap_or_default();
    Err(format!("no provider accepting session: {listed}"))
}

/// Counts an open whose caller left before its answer.
fn caller_gone(shared: &Arc<Shared>) -> impl FnOnce() + Send + 'static {
    let shared = Arc::clone(shared);
    move || bump(&shared.counters.opens_caller_gone)
}

/// The part of an open that takes time: the handshake and the transactions.
async fn complete_open(
    shared: &Arc<Shared>,
    at: (usize, usize),
    seconds: i128,
    failover: bool,
    fault: Option<FaultKind>,
) -> Reply {
    crate::state::pause(shared.open_latency).await;
    let floor = i128::from(shared.min_session_seconds.max(1));
    if seconds < floor {
        return Reply::internal(texts::SESSION_TOO_SHORT);
    }
    let seconds = u64::try_from(seconds).unwrap_or(u64::MAX);
    if let Some(FaultKind::OpenFailsAfterMining {
        error,
        visible_after_ms,
    }) = fault
    {
        let visible_from = Instant::now() + Duration::from_millis(visible_after_ms);
        create(shared, at, seconds, failover, Some(visible_from));
        return Reply::internal(&error.text(&shared.fresh_hash()));
    }
    let id = create(shared, at, seconds, failover, None);
    Reply::ok(&OpenedOut { session_id: id })
}

/// Puts a new session on the simulated chain and returns its id.
pub(crate) fn create(
    shared: &Shared,
    (model, bid): (usize, usize),
    seconds: u64,
    failover: bool,
    visible_from: Option<Instant>,
) -> String {
    let m = &shared.catalog.models[model];
    let b = &m.bids[bid];
    let now = shared.now_unix();
    let id = shared.fresh_hash();
    let rec = SessionRec {
        id: id.clone(),
        user: shared.wallet.clone(),
        provider: b.provider.clone(),
        model_id: m.id.clone(),
        bid_id: b.id.clone(),
        model_name: Arc::from(m.name.as_str()),
        // What the user locks for the whole session: far beyond 2^53, often beyond u64.
        stake: b.price_per_second.saturating_mul(u128::from(seconds)),
        price_per_second: b.price_per_second,
        opened_at: now,
        ends_at: now.saturating_add(seconds),
        closed_at: 0,
        visible_from,
        failover,
        dead: None,
        forwarded: None,
        gate: Gate::new(shared.session_concurrency),
    };
    shared.sessions().insert(rec);
    bump(&shared.counters.sessions_opened);
    id
}

pub(crate) fn get(shared: &Arc<Shared>, id: &str, blip: bool) -> Reply {
    if !is_hex_id(id, 64) {
        return Reply::bad_request("invalid session id");
    }
    let book = shared.sessions();
    match book.get(id).filter(|_| !blip) {
        Some(rec) => Reply::ok(&SessionEnvelope { session: rec.out() }),
        None => Reply::internal(texts::SESSION_NOT_FOUND),
    }
}

/// The paging of `structs.QueryOffsetLimitOrder` (`structs/req.go:32-36`): only its `binding`
/// tags are checked, not its `validate` ones, so any `order` is accepted.
#[derive(serde::Deserialize)]
struct UserQuery {
    user: Option<String>,
    offset: Option<usize>,
    limit: Option<u8>,
    order: Option<String>,
}

pub(crate) fn of_user(shared: &Arc<Shared>, query: &str, blip: bool) -> Reply {
    let q = match serde_urlencoded::from_str::<UserQuery>(query) {
        Ok(q) => q,
        Err(e) => return Reply::bad_request(&format!("invalid query: {e}")),
    };
    let Some(user) = q.user.filter(|u| !u.is_empty()) else {
        return Reply::bad_request("user is required");
    };
    if !is_hex_id(&user, 40) {
        return Reply::bad_request("invalid user address");
    }
    if blip {
        return Reply::internal(texts::RPC_RATE_LIMITED);
    }
    // Only the exact `ASC` is ascending; `asc`, `desc` and the default `asc` are descending
    // (`blockchainapi/mappers.go:105-110`, `structs/req.go:35`).
    let newest_first = q.order.as_deref() != Some("ASC");
    let book = shared.sessions();
    let sessions = book
        .of_user(
            &user,
            newest_first,
            q.offset.unwrap_or(0),
            usize::from(q.limit.unwrap_or(10)),
        )
        .into_iter()
        .map(SessionRec::out)
        .collect();
    Reply::ok(&SessionsEnvelope { sessions })
}

pub(crate) fn close(shared: &Arc<Shared>, id: &str, blip: bool) -> Reply {
    if !is_hex_id(id, 64) {
        return Reply::bad_request("invalid session id");
    }
    if blip {
        return Reply::internal(texts::CLOSE_SESSION_NOT_FOUND);
    }
    if let Err(text) = close_now(shared, id) {
        return Reply::internal(text);
    }
    Reply::ok(&TxOut {
        tx: shared.fresh_hash(),
    })
}

/// Closes a session on the simulated chain.
pub(crate) fn close_now(shared: &Shared, id: &str) -> Result<(), &'static str> {
    let now = shared.now_unix();
    {
        let mut book = shared.sessions();
        let Some(rec) = book.get_mut(id) else {
            return Err(texts::CLOSE_SESSION_NOT_FOUND);
        };
        if rec.closed_at != 0 {
            return Err(texts::CLOSE_ALREADY_CLOSED);
        }
        // A session closed in the very second it opened must still read as closed.
        rec.closed_at = now.max(1);
    }
    bump(&shared.counters.sessions_closed);
    Ok(())
}
