//! `POST /v1/chat/completions`, addressed to a session by the `session_id` header.
//!
//! The order is the node's (`proxyapi/controller_http.go:194-284`, `proxy_sender.go:647-705`):
//! headers and body are bound (400s), the session is read (`session not found`), checks that
//! need no provider fail at once, then the request queues for its session, and only then does
//! the provider see it. The queueing and the model's time run on a task of their own: the node's
//! handler is not cancelled when its caller leaves (gin's context never is, see
//! `routes/sessions.rs`; the queue's `Acquire(ctx)` never gives up), so an abandoned request keeps
//! its place in the queue and, for a JSON answer, holds the session for the whole generation. A
//! stream notices at its next failed write (here: at once, when hyper drops the body).

use std::sync::Arc;

use bytes::Bytes;
use hyper::StatusCode;
use hyper::http::request::Parts;
use serde::Deserialize as _;
use serde_json::{Value, json};

use crate::chat::{ChatPlan, ChatRequest};
use crate::counters::bump;
use crate::faults::{DeadReason, FaultKind};
use crate::gate::Turn;
use crate::gojson;
use crate::ids::is_hex_id;
use crate::reply::{CHAT_JSON, EVENT_STREAM, Reply, ReplyBody, error_json};
use crate::rewrite::{Forwarded, rewrite};
use crate::routes::sessions::{close_now, create, walk_bids};
use crate::sessions::ChatSession;
use crate::state::Shared;
use crate::stream::{ChatSource, StreamOptions};
use crate::texts;

pub(crate) async fn completions(
    shared: &Arc<Shared>,
    parts: &Parts,
    body: Bytes,
    fault: Option<FaultKind>,
) -> Reply {
    // Headers first (`PromptHead`, `proxyapi/requests.go:34-39`): a session id must be a hash.
    let header = parts
        .headers
        .get("session_id")
        .and_then(|v| v.to_str().ok())
        .map(str::trim)
        .filter(|s| !s.is_empty());
    if let Some(id) = header
        && !is_hex_id(id, 64)
    {
        return Reply::bad_request("invalid session id");
    }
    let (forwarded, req) = match read_request(shared, &body) {
        Ok(read) => read,
        Err(text) => return Reply::bad_request(&text),
    };
    let Some(session_id) = header else {
        return Reply::internal(texts::NO_SESSION_HEADER);
    };
    let session_id = session_id.to_owned();
    // From here the handler has set the answer's content type, which gin keeps for its 500s.
    let stream = req.stream == Some(true);
    let content_type = if stream { EVENT_STREAM } else { CHAT_JSON };
    let fail =
        |text: &str| Reply::error(StatusCode::INTERNAL_SERVER_ERROR, text).typed(content_type);

    let session = match fault {
        Some(FaultKind::ChainReadBlip) => None,
        _ => shared.sessions().chat_view(&session_id),
    };
    let Some(mut session) = session else {
        return fail(texts::SESSION_NOT_FOUND);
    };
    if let Some(FaultKind::DeadSession { reason }) = fault {
        if let Some(rec) = shared.sessions().get_mut(&session_id) {
            rec.dead = Some(reason);
        }
        session.dead = Some(reason);
    }
    if let Some(reason) = session.dead
        && reason.before_queue()
    {
        return fail(reason.text());
    }
    let task = Arc::clone(shared);
    super::detached(
        async move {
            let mut reply = serve(&task, &session_id, session, forwarded, req, fault).await;
            if reply.status != StatusCode::OK && reply.status != StatusCode::BAD_REQUEST {
                reply = reply.typed(content_type);
            }
            reply
        },
        || {},
    )
    .await
}

/// The body as the provider will receive it, and what the simulator reads of it.
fn read_request(shared: &Shared, body: &[u8]) -> Result<(Forwarded, ChatRequest), String> {
    let forwarded = if shared.rewrite_requests {
        rewrite(body)?
    } else {
        let body =
            serde_json::from_slice(body).map_err(|e| format!("invalid chat request: {e}"))?;
        Forwarded {
            body,
            dropped: Vec::new(),
        }
    };
    let req = ChatRequest::deserialize(&forwarded.body)
        .map_err(|e| format!("invalid chat request: {e}"))?;
    Ok((forwarded, req))
}

/// From the queue on: the session's turn, the provider's checks, the answer.
async fn serve(
    shared: &Arc<Shared>,
    session_id: &str,
    session: ChatSession,
    forwarded: Forwarded,
    req: ChatRequest,
    fault: Option<FaultKind>,
) -> Reply {
    let turn = Arc::clone(&session.gate).take_turn(&shared.counters).await;
    // A provider that is down refuses the connection (`proxy_sender.go:733-737`).
    let dead = session.dead.or_else(|| {
        shared
            .provider_down(&session.provider)
            .then_some(DeadReason::ProviderUnreachable)
    });
    if let Some(reason) = dead {
        if shared.honour_failover && session.failover {
            record_forwarded(shared, session_id, &session, forwarded.clone());
            return failover(shared, session_id, &session, forwarded, req, fault).await;
        }
        record_forwarded(shared, session_id, &session, forwarded);
        return Reply::internal(reason.text());
    }
    record_forwarded(shared, session_id, &session, forwarded);
    let now = shared.now_unix();
    if session.closed_at != 0 || now >= session.ends_at {
        return Reply::internal(texts::SESSION_EXPIRED);
    }
    answer(shared, &session, req, fault, turn, Vec::new()).await
}

/// Keeps the body the provider received, for `SimHandle::last_forwarded`.
fn record_forwarded(shared: &Shared, session_id: &str, session: &ChatSession, mut fwd: Forwarded) {
    if let Value::Object(map) = &mut fwd.body {
        map.insert(
            "model".to_owned(),
            Value::String(session.model_name.to_string()),
        );
    }
    shared.counters.forwarded_fields_dropped.fetch_add(
        fwd.dropped.len() as u64,
        std::sync::atomic::Ordering::Relaxed,
    );
    if let Some(rec) = shared.sessions().get_mut(session_id) {
        rec.forwarded = Some(Arc::new(fwd));
    }
}

/// The provider's answer: an error its backend gave, or the completion, after the model's time.
async fn answer(
    shared: &Arc<Shared>,
    session: &ChatSession,
    req: ChatRequest,
    fault: Option<FaultKind>,
    turn: Turn,
    prelude: Vec<String>,
) -> Reply {
    let latency = shared.provider_latency;
    if let Some(FaultKind::BackendError { body, .. }) = &fault {
        crate::state::pause(latency.first_token).await;
        return provider_model_error(body);
    }
    let plan = ChatPlan::new(
        &req,
        Arc::clone(&session.model_name),
        shared.now_unix(),
        matches!(fault, Some(FaultKind::BadUsage)),
    );
    let error_after = match fault {
        Some(FaultKind::ErrorAfterChunks { chunks, error }) => Some((
            chunks,
            error.unwrap_or_else(|| texts::MID_STREAM_ERROR.to_owned()),
        )),
        _ => None,
    };
    if req.stream == Some(true) {
        // Nothing, not even the head, is written before the first token.
        crate::state::pause(latency.first_token).await;
        let prelude = prelude
            .iter()
            .map(|m| Bytes::from(format!("data: {m}\n\n")))
            .collect();
        let source = ChatSource::new(
            plan,
            Arc::clone(shared),
            StreamOptions {
                prelude,
                error_after,
                turn: Some(turn),
            },
        );
        return Reply {
            status: StatusCode::OK,
            content_type: EVENT_STREAM,
            body: ReplyBody::Chat(Box::new(source)),
        };
    }
    // The backend's answer is read whole before anything is written.
    let tokens = u32::try_from(plan.completion_tokens).unwrap_or(u32::MAX);
    crate::state::pause(latency.first_token + latency.per_token.saturating_mul(tokens)).await;
    let mut out = Vec::new();
    // Control chunks of a JSON answer are JSON strings, written one after the other
    // (`controller_http.go:260-268`).
    for message in &prelude {
        gojson::write(&mut out, message);
    }
    out.extend_from_slice(&plan.completion_json(shared.node_usage_fields));
    if let Some((_, text)) = error_after {
        out.extend_from_slice(&error_json(&text));
    }
    drop(turn);
    Reply {
        status: StatusCode::OK,
        content_type: CHAT_JSON,
        body: ReplyBody::Bytes(Bytes::from(out)),
    }
}

/// 400 `{"providerModelError": <the backend's error body>}`: the body re-marshalled through a Go
/// `interface{}` (sorted keys), or, when it is not JSON, wrapped as an `upstream_error`
/// (`aiengine/openai.go:113-137`, `proxy_sender.go:857-864`, `controller_http.go:244-247`).
pub(crate) fn provider_model_error(body: &str) -> Reply {
    let parsed = serde_json::from_str::<Value>(body).map_or_else(
        |_| json!({"error": {"message": body.trim(), "type": "upstream_error"}}),
        gojson::through_interface,
    );
    Reply {
        status: StatusCode::BAD_REQUEST,
        content_type: CHAT_JSON,
        body: ReplyBody::Bytes(Bytes::from(gojson::to_vec(
            &json!({ "providerModelError": parsed }),
        ))),
    }
}

/// What the node does with a provider failure on a failover session (`proxy_sender.go:591-626,
/// 684-697`): close the session, say so, open a new one by model without that provider, say so,
/// and send the request again there. Control chunks are written with the answer.
async fn failover(
    shared: &Arc<Shared>,
    session_id: &str,
    session: &ChatSession,
    forwarded: Forwarded,
    req: ChatRequest,
    fault: Option<FaultKind>,
) -> Reply {
    let stream = req.stream == Some(true);
    let _ = close_now(shared, session_id);
    bump(&shared.counters.failovers);
    let bid = match shared.catalog.model_index(&session.model_id) {
        Some(m) => walk_bids(shared, m, Some(&session.provider)).map(|b| (m, b)),
        None => Err(texts::NO_BIDS.to_owned()),
    };
    let remaining = session.ends_at.saturating_sub(shared.now_unix());
    let opened = match bid {
        Err(text) => Err(text),
        Ok(at) => {
            crate::state::pause(shared.open_latency).await;
            if remaining < shared.min_session_seconds.max(1) {
                Err(texts::SESSION_TOO_SHORT.to_owned())
            } else {
                Ok(create(shared, at, remaining, true, None))
            }
        }
    };
    let new_id = match opened {
        Ok(id) => id,
        // The first control chunk is out, so the error follows it raw, under the 200.
        Err(text) => {
            let mut out = Vec::new();
            if stream {
                out.extend_from_slice(format!("data: {}\n\n", texts::FAILOVER_STARTED).as_bytes());
            } else {
                gojson::write(&mut out, texts::FAILOVER_STARTED);
            }
            out.extend_from_slice(&error_json(&text));
            return Reply {
                status: StatusCode::OK,
                content_type: if stream { EVENT_STREAM } else { CHAT_JSON },
                body: ReplyBody::Bytes(Bytes::from(out)),
            };
        }
    };
    let Some(new_session) = shared.sessions().chat_view(&new_id) else {
        return Reply::internal(texts::SESSION_NOT_FOUND);
    };
    let turn = Arc::clone(&new_session.gate)
        .take_turn(&shared.counters)
        .await;
    record_forwarded(shared, &new_id, &new_session, forwarded);
    let prelude = vec![
        texts::FAILOVER_STARTED.to_owned(),
        format!("{}{new_id}", texts::FAILOVER_OPENED),
    ];
    answer(shared, &new_session, req, fault, turn, prelude).await
}
