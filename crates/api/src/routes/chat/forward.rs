//! From the client's request to what goes upstream, and from the upstream's answer back.

use actix_web::HttpRequest;
use actix_web::web::Bytes;
use morpheus_domain::TokenEstimate;
use morpheus_domain::services::{ChatLimits, ChatShape, LimitExceeded, UnmodelledValue};
use std::collections::BTreeMap;

use serde_json::value::RawValue;

use super::json_members;

use crate::dto::ChatCompletionRequest;
use crate::error::{ApiError, FieldError, LocItem};

/// The client's body without the gateway-only `session_id` and without `model` (the session
/// decides the model; providers substitute their own name). Every other member, known to the
/// gateway or not, goes through as the client wrote it: in its order, values not re-encoded.
pub fn upstream_body(raw: &[u8]) -> Result<Bytes, ApiError> {
    json_members::without(raw, &["session_id", "model"])
        .map(|body| body.map_or_else(|| Bytes::copy_from_slice(raw), Bytes::from))
        .ok_or_else(|| ApiError::Internal(anyhow::anyhow!("re-reading a validated body")))
}

/// A JSON object's members with their values left as raw text.
fn raw_object(json: &[u8]) -> Option<BTreeMap<String, &RawValue>> {
    serde_json::from_slice(json).ok()
}

/// The numbers the caps apply to.
pub fn shape(request: &ChatCompletionRequest) -> ChatShape {
    let positive = |v: Option<i64>| v.map(|n| u64::try_from(n).unwrap_or(0));
    ChatShape {
        max_tokens: positive(request.max_tokens).max(positive(request.max_completion_tokens)),
        choices: positive(request.n),
        messages: request.messages.len(),
        tools: request.tools.as_ref().map_or(0, Vec::len),
    }
}

/// An image part counts this many input tokens (OpenAI's figure for a high-detail image).
const IMAGE_TOKENS: u32 = 765;
/// Each message adds this many tokens of framing (role, separators).
const MESSAGE_TOKENS: u32 = 4;

/// What the request may use, for its credit hold: four characters a token over the messages'
/// text and tool calls and over the declared tools and response format, a fixed count per
/// image; the output cap is `max_tokens` (or `max_completion_tokens`) for each of `n`
/// choices, when the request sets one.
pub fn estimate(request: &ChatCompletionRequest, raw: &[u8]) -> TokenEstimate {
    use crate::dto::MessageContent;
    let mut chars = 0usize;
    let mut tokens = 0u32;
    for message in &request.messages {
        tokens = tokens.saturating_add(MESSAGE_TOKENS);
        match &message.content {
            Some(MessageContent::Text(text)) => chars += text.chars().count(),
            Some(MessageContent::Parts(parts)) => {
                for part in parts {
                    chars += part.text.as_ref().map_or(0, |t| t.chars().count());
                    if part.image_url.is_some() {
                        tokens = tokens.saturating_add(IMAGE_TOKENS);
                    }
                }
            }
            None => {}
        }
        for call in message.tool_calls.iter().flatten() {
            if let Some(function) = &call.function {
                chars += function.name.as_ref().map_or(0, String::len);
                chars += function.arguments.as_ref().map_or(0, |a| a.chars().count());
            }
        }
    }
    for (name, value) in json_members::all(raw).unwrap_or_default() {
        if matches!(name.as_ref(), "tools" | "response_format") {
            chars += value.get().len();
        }
    }
    let shape = shape(request);
    let max_output = shape.max_tokens.map(|max| {
        let total = max.saturating_mul(shape.choices.unwrap_or(1).max(1));
        u32::try_from(total).unwrap_or(u32::MAX)
    });
    TokenEstimate {
        input_tokens: tokens.saturating_add(TokenEstimate::tokens_in_chars(chars)),
        max_output_tokens: max_output,
    }
}

/// The members [`ChatCompletionRequest`] models; every other one is forwarded as it is.
const MODELLED: &[&str] = &[
    "model",
    "messages",
    "stream",
    "n",
    "max_tokens",
    "max_completion_tokens",
    "temperature",
    "top_p",
    "presence_penalty",
    "frequency_penalty",
    "stop",
    "tools",
    "tool_choice",
    "response_format",
    "seed",
    "stream_options",
    "metadata",
    "user",
    "session_id",
];

/// The members the gateway forwards without modelling them: numeric knobs within their
/// bounds (`max_new_tokens`, `best_of`, `top_k`, …), nothing nested too deep.
pub fn check_unmodelled(raw: &[u8], limits: &ChatLimits) -> Result<(), LimitExceeded> {
    // The body was parsed as an object already; a body that is not one has no members.
    for (name, value) in json_members::all(raw).unwrap_or_default() {
        if MODELLED.contains(&name.as_ref()) {
            continue;
        }
        let text = value.get();
        let read = match text {
            "null" => UnmodelledValue::Null,
            _ => text
                .parse::<i64>()
                .map_or(UnmodelledValue::Other, UnmodelledValue::Integer),
        };
        limits.check_unmodelled(&name, read, json_members::depth(text.as_bytes()))?;
    }
    Ok(())
}

/// Range checks serde does not do, as 422s located like every other validation error.
pub fn check_ranges(request: &ChatCompletionRequest) -> Result<(), ApiError> {
    let mut errors = Vec::new();
    let mut out_of = |field: &str, ok: bool, kind: &str, msg: &str| {
        if !ok {
            errors.push(FieldError::new(
                vec![LocItem::from("body"), LocItem::from(field)],
                kind,
                msg,
            ));
        }
    };
    out_of(
        "messages",
        !request.messages.is_empty(),
        "too_short",
        "List should have at least 1 item after validation, not 0",
    );
    let at_least_one = |v: Option<i64>| v.is_none_or(|n| n >= 1);
    for (field, value) in [
        ("n", request.n),
        ("max_tokens", request.max_tokens),
        ("max_completion_tokens", request.max_completion_tokens),
    ] {
        out_of(
            field,
            at_least_one(value),
            "greater_than_equal",
            "Input should be greater than or equal to 1",
        );
    }
    let within = |v: Option<f64>, lo: f64, hi: f64| v.is_none_or(|x| (lo..=hi).contains(&x));
    out_of(
        "temperature",
        within(request.temperature, 0.0, 2.0),
        "value_error",
        "Input should be between 0 and 2",
    );
    out_of(
        "top_p",
        within(request.top_p, 0.0, 1.0),
        "value_error",
        "Input should be between 0 and 1",
    );
    for (field, value) in [
        ("presence_penalty", request.presence_penalty),
        ("frequency_penalty", request.frequency_penalty),
    ] {
        out_of(
            field,
            within(value, -2.0, 2.0),
            "value_error",
            "Input should be between -2 and 2",
        );
    }
    // Typed in the contract (`ChatStreamOptions`) but kept as sent: the gateway adds
    // `include_usage` to it and passes the rest on.
    match &request.stream_options {
        None | Some(serde_json::Value::Null) => {}
        Some(serde_json::Value::Object(options)) => {
            let usage = options.get("include_usage");
            if usage.is_some_and(|v| !v.is_boolean() && !v.is_null()) {
                errors.push(FieldError::new(
                    vec![
                        LocItem::from("body"),
                        LocItem::from("stream_options"),
                        LocItem::from("include_usage"),
                    ],
                    "bool_type",
                    "Input should be a valid boolean",
                ));
            }
        }
        Some(_) => errors.push(FieldError::new(
            vec![LocItem::from("body"), LocItem::from("stream_options")],
            "model_type",
            "Input should be an object",
        )),
    }
    if let Some(tools) = &request.tools {
        for (i, tool) in tools.iter().enumerate() {
            let name = &tool.function.name;
            let valid = (1..=64).contains(&name.len())
                && name
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-');
            if !valid {
                errors.push(FieldError::new(
                    vec![
                        LocItem::from("body"),
                        LocItem::from("tools"),
                        LocItem::Index(i64::try_from(i).unwrap_or(i64::MAX)),
                        LocItem::from("function"),
                        LocItem::from("name"),
                    ],
                    "string_pattern_mismatch",
                    "Function names are 1 to 64 letters, digits, _ or -",
                ));
            }
        }
    }
    if errors.is_empty() {
        Ok(())
    } else {
        Err(ApiError::Validation(errors))
    }
}

/// The session the client asked for: the body's `session_id`, else a `session_id` or
/// `X-Session-Id` header.
pub fn requested_session(in_body: Option<&String>, http: &HttpRequest) -> Option<String> {
    in_body.cloned().or_else(|| {
        ["session_id", "x-session-id"].iter().find_map(|name| {
            http.headers()
                .get(*name)
                .and_then(|v| v.to_str().ok())
                .map(str::to_owned)
        })
    })
}

/// The request's id (the caller's `X-Request-Id` or one the gateway made), to pass upstream.
pub fn request_id(http: &HttpRequest) -> Option<String> {
    crate::request_context::RequestId::of(http)
}

/// The upstream's completion with `model` set to what the client asked for. The value is
/// replaced in place: every other byte of the provider's answer (key order, spacing, numbers)
/// passes through as it came.
pub fn with_model(body: &[u8], model: &str) -> Option<Bytes> {
    let name = serde_json::to_vec(model).ok()?;
    if let Some(replaced) = json_members::replace_values(body, "model", &name) {
        return replaced.map(Bytes::from);
    }
    // No `model` member at all: add one.
    let mut object = raw_object(body)?;
    let name = RawValue::from_string(String::from_utf8(name).ok()?).ok()?;
    object.insert("model".to_owned(), &name);
    serde_json::to_vec(&object).ok().map(Bytes::from)
}

#[cfg(test)]
mod tests {
    use serde_json::Value;

    use super::*;

    #[test]
    fn the_upstream_body_drops_only_the_gateway_fields() {
        let raw = br#"{"model":"m","session_id":"0x1","messages":[{"role":"user","content":[{"type":"text","text":"hi"}]}],"logprobs":true,"x_vendor":{"deep":[1,2.5,null]}}"#;
        let forwarded: Value = serde_json::from_slice(&upstream_body(raw).unwrap()).unwrap();
        let expected: Value = serde_json::json!({
            "messages": [{"role": "user", "content": [{"type": "text", "text": "hi"}]}],
            "logprobs": true,
            "x_vendor": {"deep": [1, 2.5, null]}
        });
        assert_eq!(forwarded, expected);
    }

    #[test]
    fn the_upstream_body_keeps_the_clients_bytes_and_order() {
        let raw = br#"{ "z":1, "model" : "m","messages":[{"role":"user","content":"a \"q\" \\"}],
            "session_id":"0x1", "x\"y":2.50 ,"a":{"model":1}}"#;
        let forwarded = upstream_body(raw).unwrap();
        assert_eq!(
            std::str::from_utf8(&forwarded).unwrap(),
            r#"{"z":1,"messages":[{"role":"user","content":"a \"q\" \\"}],"x\"y":2.50,"a":{"model":1}}"#
        );
        let untouched = br#"{"messages":[], "n":1}"#;
        assert_eq!(&upstream_body(untouched).unwrap()[..], &untouched[..]);
        assert_eq!(
            &upstream_body(br#"{"model":"m","session_id":"s"}"#).unwrap()[..],
            b"{}"
        );
    }

    #[test]
    fn the_answer_carries_the_model_the_client_asked_for() {
        let body = br#"{"id":"c1","model":"provider-internal-name","choices":[]}"#;
        let rewritten: Value = serde_json::from_slice(&with_model(body, "llama").unwrap()).unwrap();
        assert_eq!(rewritten["model"], "llama");
        assert_eq!(rewritten["id"], "c1");
        assert!(with_model(b"not json", "llama").is_none());
    }

    #[test]
    fn only_the_top_level_model_value_changes_byte_for_byte() {
        let body = br#"{ "id":"c1" , "model" : "provider/internal","choices":[{"model":"inner"}],"n":1.50}"#;
        let rewritten = with_model(body, "llama \"3\"").unwrap();
        assert_eq!(
            std::str::from_utf8(&rewritten).unwrap(),
            r#"{ "id":"c1" , "model" : "llama \"3\"","choices":[{"model":"inner"}],"n":1.50}"#
        );
        let escaped_key = br#"{"mod\u0065l":"x","id":"c"}"#;
        let rewritten: Value =
            serde_json::from_slice(&with_model(escaped_key, "llama").unwrap()).unwrap();
        assert_eq!(rewritten["model"], "llama");
        let without: Value =
            serde_json::from_slice(&with_model(br#"{"id":"c"}"#, "llama").unwrap()).unwrap();
        assert_eq!(without, serde_json::json!({"id": "c", "model": "llama"}));
    }
}
