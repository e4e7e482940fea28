//! Models, bids and MOR approval.

use std::sync::Arc;

use hyper::StatusCode;
use serde::{Deserialize, Serialize};

use crate::counters::bump;
use crate::ids::is_hex_id;
use crate::reply::Reply;
use crate::state::Shared;

pub(crate) fn rated_bids(shared: &Arc<Shared>, model_id: &str) -> Reply {
    if !is_hex_id(model_id, 64) {
        return Reply::bad_request("invalid model id");
    }
    match shared.catalog.model_index(model_id) {
        Some(m) => Reply::json(StatusCode::OK, shared.catalog.rated_json(m)),
        // The chain simply has no bids for an unknown model.
        None => Reply::json(StatusCode::OK, bytes::Bytes::from_static(b"{\"bids\":[]}")),
    }
}

pub(crate) fn bid(shared: &Arc<Shared>, bid_id: &str) -> Reply {
    if !is_hex_id(bid_id, 64) {
        return Reply::bad_request("invalid bid id");
    }
    match shared.catalog.bid_index(bid_id) {
        Some(at) => Reply::json(StatusCode::OK, shared.catalog.bid_json(at)),
        // The chain returns the zero bid for an id it does not know
        // (`repositories/registries/marketplace.go:112-118`, `blockchainapi/mappers.go:24-34`).
        None => Reply::json(
            StatusCode::OK,
            bytes::Bytes::from(format!(
                r#"{{"bid":{{"Id":"{}","Provider":"0x0000000000000000000000000000000000000000","ModelAgentId":"0x0000000000000000000000000000000000000000000000000000000000000000","PricePerSecond":"0","Nonce":"0","CreatedAt":"0","DeletedAt":"0"}}}}"#,
                bid_id.to_ascii_lowercase()
            )),
        ),
    }
}

#[derive(Deserialize)]
struct ApproveQuery {
    spender: Option<String>,
    amount: Option<String>,
}

#[derive(Serialize)]
pub(crate) struct TxOut {
    pub tx: String,
}

/// Longest decimal a uint256 can need.
const MAX_UINT256_DIGITS: usize = 78;

pub(crate) fn approve(shared: &Arc<Shared>, query: &str) -> Reply {
    let Ok(q) = serde_urlencoded::from_str::<ApproveQuery>(query) else {
        return Reply::bad_request("invalid query");
    };
    let Some(spender) = q.spender.filter(|s| !s.is_empty()) else {
        return Reply::bad_request("spender is required");
    };
    if !is_hex_id(&spender, 40) {
        return Reply::bad_request("invalid spender address");
    }
    let Some(amount) = q.amount.filter(|a| !a.is_empty()) else {
        return Reply::bad_request("amount is required");
    };
    if amount.len() > MAX_UINT256_DIGITS || !amount.bytes().all(|b| b.is_ascii_digit()) {
        return Reply::bad_request("invalid amount");
    }
    bump(&shared.counters.approvals);
    Reply::ok(&TxOut {
        tx: shared.fresh_hash(),
    })
}
