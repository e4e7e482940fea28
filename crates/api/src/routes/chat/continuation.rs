//! Mid-stream continuation (`MORPHEUS_STREAM_CONTINUATION`): when a stream breaks after some
//! text, another upstream is asked to go on from that text, and its events are relayed as if
//! they were the rest of the first answer — the first leg's completion id, no second role
//! delta — so the client sees one uninterrupted answer. Never once tool-call deltas have
//! started: half a tool call cannot be continued by another model.

use std::future::Future;
use std::pin::Pin;

use actix_web::web::Bytes;
use morpheus_domain::ports::ChatEventStream;
use morpheus_domain::services::UsageMeter;
use serde_json::Value;

/// Asks another upstream to continue from the delivered text; gives the meter back, with the
/// continuation's events when one could.
pub type ContinueWith = Box<
    dyn FnOnce(
            String,
            UsageMeter,
        )
            -> Pin<Box<dyn Future<Output = (UsageMeter, Option<ChatEventStream>)> + Send>>
        + Send,
>;

/// What a relay learns of the answer so far, to continue it.
pub struct Leg {
    next: Option<ContinueWith>,
    /// The first leg's completion id, kept by every later event.
    id: Option<String>,
    /// Text delivered to the client so far.
    delivered: String,
    tool_calls: bool,
    /// The events being relayed come from a continuation.
    continuing: bool,
}

impl Leg {
    pub fn new(next: ContinueWith) -> Self {
        Self {
            next: Some(next),
            id: None,
            delivered: String::new(),
            tool_calls: false,
            continuing: false,
        }
    }

    /// Reads an event on its way to the client; returns its data as the client gets it (a
    /// continuation's, rewritten), `None` for a continuation's role-only event.
    pub fn pass(&mut self, data: &str) -> Option<String> {
        let Ok(mut chunk) = serde_json::from_str::<Value>(data) else {
            return Some(data.to_owned());
        };
        if self.continuing {
            if let (Some(id), Some(object)) = (&self.id, chunk.as_object_mut()) {
                object.insert("id".to_owned(), Value::String(id.clone()));
            }
            let mut empty = true;
            for choice in chunk["choices"].as_array_mut().into_iter().flatten() {
                if let Some(delta) = choice.get_mut("delta").and_then(Value::as_object_mut) {
                    delta.remove("role");
                    // An empty `content` beside the role is the role event's filler.
                    if delta.get("content").is_some_and(|c| c == "") {
                        delta.remove("content");
                    }
                    empty &= delta.is_empty();
                }
                empty &= choice.get("finish_reason").is_none_or(Value::is_null);
            }
            let usage = chunk.get("usage").is_some_and(|u| !u.is_null());
            if empty && !usage {
                return None;
            }
        } else if self.id.is_none() {
            self.id = chunk.get("id").and_then(Value::as_str).map(str::to_owned);
        }
        for choice in chunk["choices"].as_array().into_iter().flatten() {
            let delta = &choice["delta"];
            if let Some(text) = delta["content"].as_str() {
                self.delivered.push_str(text);
            }
            if delta.get("tool_calls").is_some_and(|t| !t.is_null()) {
                self.tool_calls = true;
            }
        }
        if self.continuing {
            return serde_json::to_string(&chunk).ok();
        }
        Some(data.to_owned())
    }

    /// The continuation to ask, once: `None` when it was used, nothing was delivered yet (a
    /// plain retry elsewhere would be the answer, not a continuation) or tool calls started.
    pub fn take_next(&mut self) -> Option<(ContinueWith, String)> {
        if self.tool_calls || self.delivered.is_empty() {
            return None;
        }
        let next = self.next.take()?;
        self.continuing = true;
        Some((next, self.delivered.clone()))
    }
}

/// The upstream body with the delivered text as a final assistant message, for another
/// upstream to continue; `None` when the body is not a chat request.
pub fn with_prefill(body: &Bytes, delivered: &str) -> Option<Bytes> {
    let mut request: serde_json::Map<String, Value> = serde_json::from_slice(body).ok()?;
    let messages = request.get_mut("messages")?.as_array_mut()?;
    messages.push(serde_json::json!({"role": "assistant", "content": delivered}));
    serde_json::to_vec(&request).ok().map(Bytes::from)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn leg() -> Leg {
        Leg::new(Box::new(|_, meter| Box::pin(async move { (meter, None) })))
    }

    #[test]
    fn a_continuation_keeps_the_first_id_and_sends_no_second_role() {
        let mut leg = leg();
        let first =
            r#"{"id":"one","choices":[{"index":0,"delta":{"role":"assistant","content":""}}]}"#;
        assert_eq!(leg.pass(first).as_deref(), Some(first));
        leg.pass(r#"{"id":"one","choices":[{"index":0,"delta":{"content":"Hello wor"}}]}"#);
        let (_, delivered) = leg.take_next().unwrap();
        assert_eq!(delivered, "Hello wor");
        assert!(leg.take_next().is_none(), "once");
        let role =
            r#"{"id":"two","choices":[{"index":0,"delta":{"role":"assistant","content":""}}]}"#;
        assert_eq!(leg.pass(role), None);
        let text = leg
            .pass(r#"{"id":"two","choices":[{"index":0,"delta":{"role":"assistant","content":"ld"}}]}"#)
            .unwrap();
        let text: Value = serde_json::from_str(&text).unwrap();
        assert_eq!(text["id"], "one");
        assert_eq!(
            text["choices"][0]["delta"],
            serde_json::json!({"content": "ld"})
        );
        let end = leg
            .pass(r#"{"id":"two","choices":[{"index":0,"delta":{},"finish_reason":"stop"}]}"#)
            .unwrap();
        assert!(end.contains("\"finish_reason\":\"stop\"") && end.contains("\"one\""));
    }

    #[test]
    fn tool_calls_or_nothing_delivered_are_not_continued() {
        let mut nothing = leg();
        nothing.pass(r#"{"id":"a","choices":[{"delta":{"role":"assistant","content":""}}]}"#);
        assert!(nothing.take_next().is_none());
        let mut tools = leg();
        tools.pass(r#"{"id":"a","choices":[{"delta":{"content":"Let me"}}]}"#);
        tools.pass(r#"{"id":"a","choices":[{"delta":{"tool_calls":[{"index":0,"id":"c"}]}}]}"#);
        assert!(tools.take_next().is_none());
    }

    #[test]
    fn the_prefill_is_the_last_message() {
        let body =
            Bytes::from_static(br#"{"messages":[{"role":"user","content":"hi"}],"stream":true}"#);
        let next: Value = serde_json::from_slice(&with_prefill(&body, "Hel").unwrap()).unwrap();
        assert_eq!(
            next["messages"][1],
            serde_json::json!({"role": "assistant", "content": "Hel"})
        );
        assert_eq!(next["stream"], true);
        assert!(with_prefill(&Bytes::from_static(b"{}"), "x").is_none());
    }
}
