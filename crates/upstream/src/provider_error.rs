//! The node's 400 `{"providerModelError": <the backend's error body>}`
//! (`proxyapi/controller_http.go:243-248`, `aiengine/openai.go:113-137`): the backend's status
//! is lost on the way, so what happened is read from the body, which for OpenAI-compatible
//! backends is `{"error":{"message","type","code","param"}}` (a non-JSON body arrives wrapped as
//! `{"error":{"message":…,"type":"upstream_error"}}`).

use std::time::Duration;

use morpheus_domain::ports::{MarketplaceError, ProviderFault};
use serde_json::Value;

use crate::sanitize::sanitize;

/// The provider's error in a 400 body, if the body is one.
pub(crate) fn provider_model_error(body: &[u8]) -> Option<MarketplaceError> {
    let outer: Value = serde_json::from_slice(body).ok()?;
    let inner = outer.get("providerModelError")?;
    let error = inner.get("error").unwrap_or(inner);
    let text = |key: &str| error.get(key).and_then(Value::as_str).unwrap_or_default();
    let raw_message = match error {
        Value::String(s) => s.as_str(),
        _ => text("message"),
    };
    let code = match error.get("code") {
        Some(Value::String(s)) => s.to_ascii_lowercase(),
        Some(Value::Number(n)) => n.to_string(),
        _ => String::new(),
    };
    let kind = text("type").to_ascii_lowercase();
    let fault = classify(&kind, &code, &raw_message.to_ascii_lowercase());
    let retry_after = (fault == ProviderFault::RateLimited)
        .then(|| retry_delay(raw_message))
        .flatten();
    let message = sanitize(raw_message);
    Some(MarketplaceError::Provider {
        fault,
        message: if message.is_empty() {
            "the provider reported an error".to_owned()
        } else {
            message
        },
        retry_after,
    })
}

fn classify(kind: &str, code: &str, message: &str) -> ProviderFault {
    let rate_limited = code == "rate_limit_exceeded"
        || code == "429"
        || matches!(kind, "requests" | "tokens" | "rate_limit_error")
        || message.contains("rate limit");
    if rate_limited {
        return ProviderFault::RateLimited;
    }
    // The provider's own set-up: its key, its quota, its model, its service.
    let providers_fault = matches!(
        code,
        "invalid_api_key" | "model_not_found" | "insufficient_quota" | "401" | "403" | "404"
    ) || matches!(
        kind,
        "server_error"
            | "upstream_error"
            | "api_error"
            | "overloaded_error"
            | "authentication_error"
            | "permission_error"
            | "not_found_error"
    ) || code.starts_with('5');
    if !providers_fault && kind == "invalid_request_error" {
        return ProviderFault::InvalidRequest;
    }
    ProviderFault::Unavailable
}

/// OpenAI states the delay only in the message: "Please try again in 20s" (or `1.5s`, `350ms`,
/// `6m0s`).
fn retry_delay(message: &str) -> Option<Duration> {
    let lower = message.to_ascii_lowercase();
    let at = lower.find("try again in ")? + "try again in ".len();
    let spec: String = lower[at..]
        .chars()
        .take_while(|c| c.is_ascii_alphanumeric() || *c == '.')
        .collect();
    // The sentence's full stop is not part of the number.
    let spec = spec.trim_end_matches('.');
    let mut total = 0.0_f64;
    let mut number = String::new();
    let mut chars = spec.chars().peekable();
    while let Some(c) = chars.next() {
        if c.is_ascii_digit() || c == '.' {
            number.push(c);
            continue;
        }
        let value: f64 = number.parse().ok()?;
        number.clear();
        total += match c {
            'h' => value * 3600.0,
            'm' if chars.peek() == Some(&'s') => {
                chars.next();
                value / 1000.0
            }
            'm' => value * 60.0,
            's' => value,
            _ => return None,
        };
    }
    (number.is_empty() && total > 0.0).then(|| Duration::from_secs_f64(total.min(3600.0)))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn body(error: Value) -> Vec<u8> {
        serde_json::to_vec(&serde_json::json!({ "providerModelError": error })).unwrap()
    }

    fn openai(message: &str, kind: &str, code: Option<&str>) -> Vec<u8> {
        body(serde_json::json!({"error": {"message": message, "type": kind, "code": code}}))
    }

    fn fault(bytes: &[u8]) -> (ProviderFault, Option<Duration>, String) {
        match provider_model_error(bytes) {
            Some(MarketplaceError::Provider {
                fault,
                retry_after,
                message,
            }) => (fault, retry_after, message),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn openai_bodies_are_told_apart_without_their_status() {
        use ProviderFault::*;
        let cases = [
            (
                openai(
                    "Rate limit reached. Please try again in 20s.",
                    "requests",
                    Some("rate_limit_exceeded"),
                ),
                RateLimited,
                Some(Duration::from_secs(20)),
            ),
            (
                openai("The server had an error", "server_error", None),
                Unavailable,
                None,
            ),
            (
                openai(
                    "Incorrect API key provided: sk-proj-abcd",
                    "invalid_request_error",
                    Some("invalid_api_key"),
                ),
                Unavailable,
                None,
            ),
            (
                openai(
                    "The model `gpt-4o` does not exist",
                    "invalid_request_error",
                    Some("model_not_found"),
                ),
                Unavailable,
                None,
            ),
            (
                openai(
                    "maximum context length is 128000 tokens",
                    "invalid_request_error",
                    Some("context_length_exceeded"),
                ),
                InvalidRequest,
                None,
            ),
            (
                openai("upstream connect error", "upstream_error", None),
                Unavailable,
                None,
            ),
            (body(serde_json::json!("boom")), Unavailable, None),
        ];
        for (bytes, want, delay) in cases {
            let (got, retry_after, _) = fault(&bytes);
            assert_eq!(
                (got, retry_after),
                (want, delay),
                "{}",
                String::from_utf8_lossy(&bytes)
            );
        }
    }

    #[test]
    fn the_message_is_sanitised_and_other_bodies_are_not_provider_errors() {
        let (_, _, message) = fault(&openai(
            "Incorrect API key provided: sk-proj-abcdef123456",
            "invalid_request_error",
            Some("invalid_api_key"),
        ));
        assert!(!message.contains("abcdef123456"), "{message}");
        assert!(provider_model_error(br#"{"error":"bad"}"#).is_none());
        assert!(provider_model_error(b"not json").is_none());
    }

    #[test]
    fn retry_delays_in_go_and_openai_notation() {
        for (text, secs) in [
            ("try again in 20s", 20.0),
            ("Please try again in 1.5s.", 1.5),
            ("try again in 350ms", 0.35),
            ("try again in 6m0s", 360.0),
            ("try again in 1h", 3600.0),
        ] {
            assert_eq!(
                retry_delay(text),
                Some(Duration::from_secs_f64(secs)),
                "{text}"
            );
        }
        assert_eq!(retry_delay("try again later"), None);
    }
}
