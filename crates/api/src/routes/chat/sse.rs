//! The streamed answer: upstream events relayed as they arrive, `data: [DONE]` at a clean end,
//! and one terminal error event (no `[DONE]`) when the upstream breaks mid-stream, so a client
//! can tell a cut from an end.

use std::convert::Infallible;
use std::pin::Pin;
use std::time::Duration;

use actix_web::web::{Bytes, BytesMut};
use futures_util::{Stream, StreamExt};
use morpheus_domain::UsageOutcome;
use morpheus_domain::ports::{ChatEvent, ChatEventStream, StreamFault};
use morpheus_domain::services::UsageMeter;

use super::continuation::Leg;
use crate::error::OpenAiErrorDetail;
use crate::metrics::ActiveStream;
use crate::stream_drains::StreamDrains;

/// What a relay needs from the application besides the stream itself.
pub struct RelayContext {
    /// A comment line goes out when the upstream is quiet this long.
    pub keep_alive: Duration,
    /// Resolves when the process's grace period is nearly over.
    pub shutdown: Pin<Box<dyn Future<Output = ()> + Send>>,
    /// Counts the stream in `morpheus_active_streams` while it lives.
    pub active: ActiveStream,
    /// The request's trace span: open while the stream lasts, and told the tokens used.
    pub span: tracing::Span,
    /// The client asked for the closing usage chunk (`stream_options.include_usage`); the
    /// gateway always asks for it upstream, for its own accounting.
    pub usage_chunk: bool,
    /// Reads a stream the client left to its end, for the provider's final count.
    pub drains: StreamDrains,
    /// Continues a stream that breaks mid-answer on another upstream (when enabled).
    pub continuation: Option<Leg>,
}

struct Relay {
    /// A comment line goes out when the upstream is quiet this long, so proxies and clients do
    /// not give up on a slow provider.
    keep_alive: Duration,
    first: Option<ChatEvent>,
    events: ChatEventStream,
    meter: Option<UsageMeter>,
    finished: bool,
    shutdown: Pin<Box<dyn Future<Output = ()> + Send>>,
    _active: ActiveStream,
    span: tracing::Span,
    usage_chunk: bool,
    drains: StreamDrains,
    leg: Option<Leg>,
}

/// The response body. `first` is the event already read (the response head is only sent once
/// the upstream has produced something, so an early failure is still a normal HTTP error).
/// Dropping the body (the client went away) drops the upstream stream, which closes the
/// upstream connection, and the meter records the request as cut short by the client.
pub fn relay(
    first: ChatEvent,
    events: ChatEventStream,
    meter: UsageMeter,
    context: RelayContext,
) -> impl Stream<Item = Result<Bytes, Infallible>> {
    let state = Relay {
        keep_alive: context.keep_alive,
        first: Some(first),
        events,
        meter: Some(meter),
        finished: false,
        shutdown: context.shutdown,
        _active: context.active,
        span: context.span,
        usage_chunk: context.usage_chunk,
        drains: context.drains,
        leg: context.continuation,
    };
    futures_util::stream::unfold(state, |mut state| async move {
        if state.finished {
            return None;
        }
        if let Some(event) = state.first.take()
            && let Some(frame) = state.frame(event)
        {
            return Some((Ok(frame), state));
        }
        loop {
            let next = tokio::select! {
                next = tokio::time::timeout(state.keep_alive, state.events.next()) => match next {
                    Ok(next) => next,
                    Err(_) => return Some((Ok(Bytes::from_static(b": keep-alive\n\n")), state)),
                },
                () = &mut state.shutdown => {
                    let frame = state.end_for_shutdown();
                    return Some((Ok(frame), state));
                }
            };
            let frame = match next {
                Some(Ok(event)) => match state.frame(event) {
                    Some(frame) => frame,
                    None => continue,
                },
                Some(Err(fault)) => {
                    if state.continue_elsewhere(&fault).await {
                        continue;
                    }
                    state.end(Err(fault))
                }
                None => state.end(Ok(())),
            };
            return Some((Ok(frame), state));
        }
    })
}

impl Relay {
    /// The event as the client gets it; `None` for the usage chunk it did not ask for.
    fn frame(&mut self, event: ChatEvent) -> Option<Bytes> {
        if let Some(meter) = self.meter.as_mut() {
            if let Some(usage) = event.usage {
                crate::request_context::record_usage(&self.span, &usage.tokens);
                meter.set_usage(usage);
            }
            meter.add_generated(u64::from(event.generated_bytes));
        }
        if event.usage_only && !self.usage_chunk {
            return None;
        }
        let rewritten = match self.leg.as_mut() {
            Some(leg) => Some(leg.pass(&event.data)?),
            None => None,
        };
        let data = rewritten.as_deref().unwrap_or(&event.data);
        let mut frame = BytesMut::with_capacity(data.len() + 8);
        frame.extend_from_slice(b"data: ");
        frame.extend_from_slice(data.as_bytes());
        frame.extend_from_slice(b"\n\n");
        Some(frame.freeze())
    }

    /// After a break mid-answer: another upstream's continuation takes the stream's place,
    /// once, when continuation is on and the answer can be continued.
    async fn continue_elsewhere(&mut self, fault: &StreamFault) -> bool {
        let Some((next, delivered)) = self.leg.as_mut().and_then(Leg::take_next) else {
            return false;
        };
        let Some(meter) = self.meter.take() else {
            return false;
        };
        tracing::warn!(error = %fault, "upstream stream broke mid-answer; asking another upstream to continue");
        let (meter, events) = next(delivered, meter).await;
        self.meter = Some(meter);
        match events {
            Some(events) => {
                self.events = events;
                true
            }
            None => false,
        }
    }

    fn end(&mut self, outcome: Result<(), StreamFault>) -> Bytes {
        self.finished = true;
        let meter = self.meter.take();
        match outcome {
            Ok(()) => {
                if let Some(meter) = meter {
                    meter.finish(UsageOutcome::Completed, 200);
                }
                Bytes::from_static(b"data: [DONE]\n\n")
            }
            Err(fault) => {
                tracing::warn!(error = %fault, "upstream stream broke after it started");
                if let Some(meter) = meter {
                    meter.finish(UsageOutcome::Incomplete, 200);
                }
                error_event(&fault)
            }
        }
    }

    /// The gateway is going away before the provider finished: say so, so the client knows
    /// the answer is incomplete and can retry elsewhere.
    fn end_for_shutdown(&mut self) -> Bytes {
        self.finished = true;
        if let Some(meter) = self.meter.take() {
            meter.finish(UsageOutcome::Incomplete, 200);
        }
        error_frame(
            "server_error",
            "gateway_shutting_down",
            "The gateway is shutting down; the answer is incomplete. Retry the request.",
        )
    }
}

impl Drop for Relay {
    /// The client left before the end: the provider is still writing the answer, and its
    /// final chunk carries the count the request is charged on. Read on to it in the
    /// background when a drain is free; otherwise the meter charges the text delivered.
    fn drop(&mut self) {
        if self.finished {
            return;
        }
        // Nothing is charged without a hold: the upstream is closed at once.
        let Some(meter) = self.meter.take_if(|meter| meter.holds_credit()) else {
            return;
        };
        let Some(permit) = self.drains.try_take() else {
            return;
        };
        let events = std::mem::replace(&mut self.events, Box::pin(futures_util::stream::empty()));
        let limit = self.drains.limit();
        tokio::spawn(drain(events, meter, limit, permit));
    }
}

async fn drain(
    mut events: ChatEventStream,
    mut meter: UsageMeter,
    limit: Duration,
    _permit: tokio::sync::OwnedSemaphorePermit,
) {
    let read = async {
        // What the provider generates now is not delivered: only its count matters.
        while let Some(Ok(event)) = events.next().await {
            if let Some(usage) = event.usage {
                meter.set_usage(usage);
            }
        }
    };
    if tokio::time::timeout(limit, read).await.is_err() {
        tracing::info!("a stream the client left did not end within the drain limit");
    }
    meter.finish(UsageOutcome::ClientClosed, 200);
}

/// `data: {"error":{…}}` in OpenAI's shape.
pub fn error_event(fault: &StreamFault) -> Bytes {
    let (kind, code, message) = describe(fault);
    error_frame(kind, code, message)
}

fn error_frame(kind: &str, code: &str, message: &str) -> Bytes {
    let body = serde_json::json!({
        "error": OpenAiErrorDetail::new(kind, code, None, message)
    });
    Bytes::from(format!("data: {body}\n\n"))
}

/// A stable description of a stream fault (the upstream's own text stays in our logs).
pub fn describe(fault: &StreamFault) -> (&'static str, &'static str, &'static str) {
    match fault {
        StreamFault::Idle => (
            "server_error",
            "upstream_timeout",
            "The provider stopped sending; the answer is incomplete",
        ),
        StreamFault::Truncated => (
            "server_error",
            "upstream_stream_cut",
            "The provider's stream ended before the answer was complete",
        ),
        StreamFault::Transport(_) => (
            "server_error",
            "upstream_connection_lost",
            "The connection to the provider was lost; the answer is incomplete",
        ),
        StreamFault::Malformed(_) => (
            "server_error",
            "upstream_invalid_event",
            "The provider sent an unreadable event; the answer is incomplete",
        ),
        StreamFault::Upstream(_) => (
            "server_error",
            "upstream_error",
            "The provider reported an error; the answer is incomplete",
        ),
    }
}
