//! Opening, reading and closing sessions.

use std::sync::Arc;

use serde::{Deserialize, Serialize};

use crate::counters::bump;
use crate::ids::is_hex_id;
use crate::reply::Reply;
use crate::routes::catalog::TxOut;
use crate::sessions::{SessionOut, SessionRec};
use crate::state::Shared;

#[derive(Deserialize)]
struct OpenBody {
    #[serde(rename = "sessionDuration", default)]
    session_duration: Option<serde_json::Value>,
}

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

const NO_PROVIDER: &str = "no provider accepting session";

/// `sessionDuration` in seconds, at least 1 (a number, or a decimal string as big ints may be).
fn duration(body: &[u8]) -> Result<u64, Reply> {
    let parsed: OpenBody = serde_json::from_slice(body)
        .map_err(|e| Reply::bad_request(&format!("invalid request body: {e}")))?;
    let seconds = match parsed.session_duration {
        Some(serde_json::Value::Number(n)) => n.as_u64(),
        Some(serde_json::Value::String(s)) => s.parse().ok(),
        _ => None,
    };
    seconds.filter(|s| *s >= 1).ok_or_else(|| {
        Reply::bad_request("sessionDuration is required and must be a positive number of seconds")
    })
}

pub(crate) fn open_by_model(shared: &Arc<Shared>, model_id: &str, body: &[u8]) -> Reply {
    if !is_hex_id(model_id, 64) {
        return Reply::bad_request("invalid model id");
    }
    let seconds = match duration(body) {
        Ok(s) => s,
        Err(reply) => return reply,
    };
    let catalog = &shared.catalog;
    let Some(model) = catalog
        .model_index(model_id)
        .filter(|&m| !catalog.models[m].is_deleted)
    else {
        return Reply::internal(NO_PROVIDER);
    };
    let Some(bid) = catalog.best_bid(model) else {
        return Reply::internal(NO_PROVIDER);
    };
    open(shared, (model, bid), seconds)
}

pub(crate) fn open_by_bid(shared: &Arc<Shared>, bid_id: &str, body: &[u8]) -> Reply {
    if !is_hex_id(bid_id, 64) {
        return Reply::bad_request("invalid bid id");
    }
    let seconds = match duration(body) {
        Ok(s) => s,
        Err(reply) => return reply,
    };
    match shared.catalog.bid_index(bid_id) {
        Some(at) => open(shared, at, seconds),
        None => Reply::internal("bid not found"),
    }
}

fn open(shared: &Arc<Shared>, (model, bid): (usize, usize), seconds: u64) -> Reply {
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
    };
    shared.sessions().insert(rec);
    bump(&shared.counters.sessions_opened);
    Reply::ok(&OpenedOut { session_id: id })
}

pub(crate) fn get(shared: &Arc<Shared>, id: &str) -> Reply {
    if !is_hex_id(id, 64) {
        return Reply::bad_request("invalid session id");
    }
    let book = shared.sessions();
    match book.get(id) {
        Some(rec) => Reply::ok(&SessionEnvelope { session: rec.out() }),
        None => Reply::internal("session not found"),
    }
}

#[derive(Deserialize)]
struct UserQuery {
    user: Option<String>,
    offset: Option<usize>,
    limit: Option<usize>,
    order: Option<String>,
}

pub(crate) fn of_user(shared: &Arc<Shared>, query: &str) -> Reply {
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
    let newest_first = match q.order.as_deref() {
        None | Some("desc") => true,
        Some("asc") => false,
        Some(_) => return Reply::bad_request("order must be asc or desc"),
    };
    let book = shared.sessions();
    let sessions = book
        .of_user(
            &user,
            newest_first,
            q.offset.unwrap_or(0),
            q.limit.unwrap_or(10),
        )
        .into_iter()
        .map(SessionRec::out)
        .collect();
    Reply::ok(&SessionsEnvelope { sessions })
}

pub(crate) fn close(shared: &Arc<Shared>, id: &str) -> Reply {
    if !is_hex_id(id, 64) {
        return Reply::bad_request("invalid session id");
    }
    let now = shared.now_unix();
    {
        let mut book = shared.sessions();
        let Some(rec) = book.get_mut(id) else {
            return Reply::internal("session not found");
        };
        if rec.closed_at != 0 {
            return Reply::internal("session already closed");
        }
        // A session closed in the very second it opened must still read as closed.
        rec.closed_at = now.max(1);
    }
    bump(&shared.counters.sessions_closed);
    Reply::ok(&TxOut {
        tx: shared.fresh_hash(),
    })
}
