//! `POST /v1/chat/completions`, addressed to a session by the `session_id` header.

use std::sync::Arc;

use hyper::StatusCode;
use hyper::http::request::Parts;

use crate::chat::{ChatPlan, ChatRequest};
use crate::faults::FaultKind;
use crate::reply::{Reply, ReplyBody};
use crate::state::Shared;
use crate::stream::ChatSource;

pub(crate) fn completions(
    shared: &Arc<Shared>,
    parts: &Parts,
    body: &[u8],
    fault: Option<&FaultKind>,
) -> Reply {
    let Some(session_id) = parts
        .headers
        .get("session_id")
        .and_then(|v| v.to_str().ok())
        .map(str::trim)
        .filter(|s| !s.is_empty())
    else {
        return Reply::bad_request("session id is required");
    };
    let Some(session) = shared.sessions().chat_view(session_id) else {
        return Reply::internal("session not found");
    };
    let now = shared.now_unix();
    if session.closed_at != 0 || now >= session.ends_at {
        return Reply::internal("session expired");
    }
    let req: ChatRequest = match serde_json::from_slice(body) {
        Ok(r) => r,
        Err(e) => return Reply::bad_request(&format!("invalid chat request: {e}")),
    };
    let plan = ChatPlan::new(
        &req,
        session.model_name,
        now,
        matches!(fault, Some(FaultKind::BadUsage)),
    );
    if req.stream == Some(true) {
        Reply {
            status: StatusCode::OK,
            content_type: "text/event-stream",
            body: ReplyBody::Chat(Box::new(ChatSource::new(plan, Arc::clone(shared)))),
        }
    } else {
        Reply {
            status: StatusCode::OK,
            content_type: "application/json",
            body: ReplyBody::Bytes(plan.completion_json()),
        }
    }
}
