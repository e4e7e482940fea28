use actix_web::http::StatusCode;
use actix_web::http::header::{CACHE_CONTROL, CONTENT_TYPE};
use actix_web::{HttpRequest, HttpResponse, post, web};
use futures_util::StreamExt;
use morpheus_domain::UsageOutcome;
use morpheus_domain::ports::{ChatReply, Endpoint};
use morpheus_domain::services::{
    ApiKeyPrincipal, ChatAnswer, ChatRequest, ChatService, ResolvedModel, SessionOwner, UsageMeter,
};

use super::{continuation, forward, node_rewrites, sse};
use crate::dto::{ChatCompletionRequest, ChatCompletionStreamEvent};
use crate::error::{ApiError, ErrorResponse, HTTPValidationError, OpenAiError, OpenAiErrorBody};
use crate::extract::{JsonWithRaw, OpenAiKeyUser};
use crate::request_context::{TraceSpan, add_upstream_wait, record_chat, record_usage};
use crate::routes::inference;
use crate::routes::session::owner;
use crate::{AppState, rate_limit_headers};

/// An OpenAI chat completion, answered by a provider of the Morpheus marketplace. Runs on the
/// key's own session for the model, a session of the shared pool (automation on), or the
/// `session_id` given. With `stream: true` the answer is a server-sent event stream ending in
/// `data: [DONE]`; a stream that breaks ends with one `data: {"error":…}` event instead.
#[utoipa::path(
    operation_id = "create_chat_completion_api_v1_chat_completions_post",
    tag = "Chat",
    request_body = ChatCompletionRequest,
    responses(
        (status = 200, description = "The completion (JSON), or its chunks (text/event-stream)", content(
            (serde_json::Value = "application/json"),
            (ChatCompletionStreamEvent = "text/event-stream"),
        )),
        (status = 400, description = "Over a cap, no session and automation off, refused by the provider, or alone over a whole minute of a `tpm` limit (`request_too_large`) or over a whole budget (`request_over_budget`)", body = OpenAiErrorBody),
        (status = 401, description = "Missing, invalid, revoked or expired API key", body = OpenAiErrorBody),
        (status = 402, description = "The user's available credit does not cover what the request may cost (`insufficient_balance`, with `available` and `estimated_cost`)", body = OpenAiErrorBody),
        (status = 403, description = "The model is not on the key's allowed_models (`model_not_allowed`)", body = OpenAiErrorBody),
        (status = 404, description = "Unknown model, or a session that is not this key's", body = OpenAiErrorBody),
        (status = 408, description = "The request body did not arrive within the chat deadline (30 s by default); the connection is closed", body = ErrorResponse),
        (status = 413, description = "The request is larger than the chat body limit (4 MiB by default)", body = ErrorResponse),
        (status = 415, description = "The request declared a Content-Type other than JSON", body = ErrorResponse),
        (status = 422, description = "The request is invalid", body = HTTPValidationError),
        (status = 429, description = "A rate limit is reached (`rate_limit_exceeded`), a budget window is spent (`budget_exceeded`, with `resets_at`), the provider is rate limiting, or every pooled session of the model is busy (`pool_busy`)", body = OpenAiErrorBody),
        (status = 500, description = "Unexpected server error (details are logged, not returned)", body = OpenAiErrorBody),
        (status = 502, description = "The marketplace failed or cannot be reached", body = OpenAiErrorBody),
        (status = 503, description = "No proxy-router is configured, the model list is not loaded yet, the database is unavailable, the gateway is overloaded (`gateway_overloaded`), or the limits cannot be checked and fail closed (`limits_unavailable`); too many open connections (in the `detail` shape, before the request is read); or a session was needed and an operator's stake cap refused to open one, nothing staked: `stake_budget_exhausted` (Retry-After: until the UTC day's end), `bid_price_above_limit`, `mor_below_low_water_mark`, `stake_budget_unavailable`", body = OpenAiErrorBody),
        (status = 504, description = "The marketplace did not answer in time", body = OpenAiErrorBody),
    ),
    security(("APIKeyAuth" = []))
)]
#[post("/completions")]
pub async fn create_chat_completion(
    state: web::Data<AppState>,
    http: HttpRequest,
    key: OpenAiKeyUser,
    body: JsonWithRaw<ChatCompletionRequest>,
) -> Result<HttpResponse, actix_web::Error> {
    let request = &body.value;
    let stream = request.stream.unwrap_or(false);
    let owner = owner(&key.0);
    // From here on every outcome, refusals included, leaves one usage record.
    let mut meter = UsageMeter::start(state.usage.clone(), owner, stream);
    let chat = match prepare(&state, &http, &body, &key.0) {
        Ok(chat) => chat,
        Err(error) => return Err(inference::refused(meter, error)),
    };
    // Kept only when a broken stream may be continued elsewhere.
    let retained = (stream && state.stream_continuation && key.0.key.policy.stream_continuation)
        .then(|| chat.clone());
    let answer = match state.chat.complete(owner, chat, &mut meter).await {
        Ok(answer) => answer,
        Err(e) => return Err(inference::failed(meter, e)),
    };
    let continuation = retained.map(|request| {
        continuation::Leg::new(continue_with(
            state.chat.clone(),
            owner,
            answer.model.clone(),
            request,
            answer.upstream.clone(),
        ))
    });
    let limits = meter.limit_status();
    let span = TraceSpan::of(&http);
    let asked_for = request.model.clone().unwrap_or(answer.model.name.clone());
    record_chat(&span, &asked_for, &answer.model.name);
    match answer.reply {
        ChatReply::Complete { body, usage } => {
            match usage {
                Some(usage) => {
                    record_usage(&span, &usage.tokens);
                    meter.set_usage(usage);
                }
                // No count from the provider: charged on the answer's size, marked estimated.
                None => meter.add_generated(u64::try_from(body.len()).unwrap_or(u64::MAX)),
            }
            let body = forward::with_model(&body, &asked_for).unwrap_or(body);
            meter.finish(UsageOutcome::Completed, 200);
            let mut response = HttpResponse::Ok();
            rate_limit_headers::insert(&mut response, &limits);
            Ok(response
                .insert_header((CONTENT_TYPE, "application/json"))
                .body(body))
        }
        ChatReply::Media(_) => {
            meter.finish(UsageOutcome::Failed, 500);
            Err(ApiError::Internal(anyhow::anyhow!("a chat answer came as media")).into())
        }
        ChatReply::Stream(mut events) => {
            // Wait for the first event before answering: a failure now is still a normal
            // HTTP error, not a broken stream.
            let waiting = std::time::Instant::now();
            let first = events.next().await;
            add_upstream_wait(waiting.elapsed());
            let first = match first {
                Some(Ok(first)) => first,
                Some(Err(fault)) => return Err(early_failure(meter, &fault).into()),
                None => {
                    let fault = morpheus_domain::ports::StreamFault::Truncated;
                    return Err(early_failure(meter, &fault).into());
                }
            };
            meter.responded(200);
            let mut response = HttpResponse::Ok();
            rate_limit_headers::insert(&mut response, &limits);
            Ok(response
                .insert_header((CONTENT_TYPE, "text/event-stream"))
                .insert_header((CACHE_CONTROL, "no-cache"))
                // Tells nginx-style proxies not to buffer the stream.
                .insert_header(("x-accel-buffering", "no"))
                .streaming(sse::relay(
                    first,
                    events,
                    meter,
                    sse::RelayContext {
                        keep_alive: state.sse_keep_alive,
                        shutdown: Box::pin(state.lifecycle.streams_ending()),
                        active: state.metrics.stream_started(),
                        span,
                        usage_chunk: node_rewrites::client_wants_usage(request),
                        drains: state.stream_drains.clone(),
                        continuation,
                    },
                )))
        }
    }
}

/// Checks what the gateway enforces and builds the request for upstream.
fn prepare(
    state: &AppState,
    http: &HttpRequest,
    body: &JsonWithRaw<ChatCompletionRequest>,
    caller: &ApiKeyPrincipal,
) -> Result<ChatRequest, actix_web::Error> {
    let request = &body.value;
    forward::check_ranges(request)?;
    node_rewrites::refuse_lossy(request)?;
    state
        .chat_limits
        .check(&forward::shape(request))
        .map_err(OpenAiError::from)?;
    forward::check_unmodelled(&body.raw, &state.chat_limits).map_err(OpenAiError::from)?;
    let session_id = inference::pinned_session(state, http, request.session_id.as_ref())?;
    Ok(ChatRequest {
        endpoint: Endpoint::ChatCompletions,
        model: request.model.clone(),
        session_id,
        stream: request.stream.unwrap_or(false),
        body: forward::upstream_body(&body.raw).and_then(|upstream| {
            node_rewrites::for_the_node(upstream.to_vec(), request)
                .map(Into::into)
                .ok_or_else(|| ApiError::Internal(anyhow::anyhow!("rewriting a validated body")))
        })?,
        upload: None,
        request_id: forward::request_id(http),
        estimate: forward::estimate(request, &body.raw),
        policy: caller.key.policy.clone(),
        limit_multiplier: caller.limit_multiplier,
    })
}

/// The continuation of a stream that broke: the same request with the delivered text as a
/// final assistant message, to the model's other upstreams, on the same admission and hold.
fn continue_with(
    chat: ChatService,
    owner: SessionOwner,
    model: ResolvedModel,
    request: ChatRequest,
    broken: String,
) -> continuation::ContinueWith {
    Box::new(move |delivered: String, mut meter: UsageMeter| {
        Box::pin(async move {
            let Some(body) = continuation::with_prefill(&request.body, &delivered) else {
                return (meter, None);
            };
            let next = ChatRequest {
                body,
                // The pinned session is the one that broke.
                session_id: None,
                ..request
            };
            meter.start_next_leg();
            match chat
                .continue_elsewhere(owner, &model, &next, &broken, &mut meter)
                .await
            {
                Ok(ChatAnswer {
                    reply: ChatReply::Stream(events),
                    ..
                }) => (meter, Some(events)),
                Ok(_) => (meter, None),
                Err(error) => {
                    tracing::warn!(%error, "no upstream could continue the broken stream");
                    (meter, None)
                }
            }
        })
    })
}

fn early_failure(meter: UsageMeter, fault: &morpheus_domain::ports::StreamFault) -> OpenAiError {
    let (kind, code, message) = sse::describe(fault);
    let status = if matches!(fault, morpheus_domain::ports::StreamFault::Idle) {
        StatusCode::GATEWAY_TIMEOUT
    } else {
        StatusCode::BAD_GATEWAY
    };
    tracing::warn!(error = %fault, "upstream stream failed before its first event");
    meter.finish(UsageOutcome::Failed, status.as_u16());
    OpenAiError::new(status, kind, code, None, message)
}
