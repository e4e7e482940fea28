//! Turning what went wrong on the wire into [`MarketplaceError`], plus the two facts the retry
//! and open-recovery rules need: whether the request surely never left, and whether its outcome
//! is unknown.

use std::time::Duration;

use morpheus_domain::ports::{MarketplaceError, SessionGone, TimeoutPhase};
use reqwest::StatusCode;
use reqwest::header::{HeaderMap, RETRY_AFTER};
use serde_json::Value;

use crate::sanitize::{sanitize, truncate_chars};

/// A failed exchange.
#[derive(Debug, Clone)]
pub(crate) struct Failure {
    pub error: MarketplaceError,
    /// The connection was never made, so the upstream surely did nothing.
    pub not_sent: bool,
    /// The upstream may have carried the request out (no answer, a reset after sending, an
    /// unreadable success, a 5xx without a recognisable error).
    pub ambiguous: bool,
}

impl Failure {
    /// A failure whose meaning is clear: the upstream answered and said no, or the answer was
    /// read and refused for a reason that does not hide a success.
    pub fn definite(error: MarketplaceError) -> Self {
        Self {
            error,
            not_sent: false,
            ambiguous: false,
        }
    }

    pub fn ambiguous(error: MarketplaceError) -> Self {
        Self {
            error,
            not_sent: false,
            ambiguous: true,
        }
    }

    pub fn invalid(why: impl Into<String>) -> Self {
        Self::definite(MarketplaceError::InvalidResponse(why.into()))
    }
}

/// A transport error before the response head (`send()` failed).
pub(crate) fn before_head(err: &reqwest::Error) -> Failure {
    if err.is_connect() {
        let error = if err.is_timeout() {
            MarketplaceError::Timeout(TimeoutPhase::Connect)
        } else {
            MarketplaceError::Unreachable(describe(err))
        };
        return Failure {
            error,
            not_sent: true,
            ambiguous: false,
        };
    }
    // The connection was up: the request may have been written, and maybe processed.
    let error = if err.is_timeout() {
        MarketplaceError::Timeout(TimeoutPhase::FirstByte)
    } else {
        MarketplaceError::Unreachable(describe(err))
    };
    Failure::ambiguous(error)
}

/// A short description of a transport error: no URL (reqwest's own `Display` has it), no
/// address, no credentials.
pub(crate) fn describe(err: &reqwest::Error) -> String {
    let mut source: Option<&(dyn std::error::Error + 'static)> = std::error::Error::source(err);
    let mut io_kind = None;
    let mut deepest = None;
    while let Some(s) = source {
        if let Some(io) = s.downcast_ref::<std::io::Error>() {
            io_kind = Some(io.kind());
        }
        deepest = Some(s);
        source = s.source();
    }
    use std::io::ErrorKind as K;
    let text = match io_kind {
        Some(K::ConnectionRefused) => "connection refused".to_owned(),
        Some(K::ConnectionReset) => "connection reset".to_owned(),
        Some(K::ConnectionAborted) => "connection aborted".to_owned(),
        Some(K::TimedOut) => "timed out".to_owned(),
        Some(K::UnexpectedEof) => "connection closed early".to_owned(),
        _ => match deepest {
            Some(s) => sanitize(&s.to_string()),
            None if err.is_connect() => "connect failed".to_owned(),
            None if err.is_body() || err.is_decode() => "body read failed".to_owned(),
            None => "request failed".to_owned(),
        },
    };
    truncate_chars(&text, 120)
}

/// The upstream's error text, and whether it came in the proxy-router's own error shape.
pub(crate) fn error_text(status: StatusCode, body: &[u8]) -> (String, bool) {
    if let Ok(Value::Object(map)) = serde_json::from_slice::<Value>(body) {
        let found = match map.get("error") {
            Some(Value::String(s)) => Some(s.clone()),
            Some(Value::Object(inner)) => inner
                .get("message")
                .and_then(Value::as_str)
                .map(str::to_owned),
            _ => map
                .get("message")
                .or_else(|| map.get("detail"))
                .and_then(Value::as_str)
                .map(str::to_owned),
        };
        if let Some(text) = found {
            return (sanitize(&text), true);
        }
    }
    let prefix = &body[..body.len().min(8 * 1024)];
    let text = strip_tags(&String::from_utf8_lossy(prefix));
    let text = sanitize(&text);
    if text.is_empty() {
        (
            status.canonical_reason().unwrap_or("error").to_owned(),
            false,
        )
    } else {
        (text, false)
    }
}

/// Crude: enough to turn a proxy's HTML error page into its visible words.
fn strip_tags(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut in_tag = false;
    for c in text.chars() {
        match c {
            '<' => in_tag = true,
            '>' if in_tag => {
                in_tag = false;
                out.push(' ');
            }
            _ if !in_tag => out.push(c),
            _ => {}
        }
    }
    out
}

/// Texts that say the node itself gave up waiting: the open may still go through.
fn hints_at_timeout(text: &str) -> bool {
    let lower = text.to_ascii_lowercase();
    ["deadline exceeded", "timeout", "timed out"]
        .iter()
        .any(|h| lower.contains(h))
}

/// What the node says when a session (or, on an open, a provider) will not work again
/// (proxy-router-behaviour.md §2.6): the consumer lost the provider's record
/// (`proxy_sender.go:551-552`), the provider lost ours (`controller_morrpc.go:153-158`), its
/// TEE attestation fails (`proxy_sender.go:657-660`), or it cannot be reached.
const DEAD_SESSION_TEXTS: &[&str] = &[
    "provider not found",
    "user not found",
    "tee attestation failed",
    "failed to connect to provider",
];

/// Maps a non-2xx answer (3xx included) to a failure.
pub(crate) fn from_status(status: StatusCode, headers: &HeaderMap, body: &[u8]) -> Failure {
    if status.is_redirection() {
        return Failure::invalid(format!("a redirect ({}) was not followed", status.as_u16()));
    }
    if matches!(status.as_u16(), 401 | 403) {
        return Failure::definite(MarketplaceError::Unauthorized);
    }
    if status == StatusCode::BAD_REQUEST
        && let Some(error) = crate::provider_error::provider_model_error(body)
    {
        return Failure::definite(error);
    }
    let (message, recognised) = error_text(status, body);
    let lower = message.to_ascii_lowercase();
    if lower.contains("session expired") {
        return Failure::definite(MarketplaceError::SessionGone(SessionGone::Expired));
    }
    if lower.contains("session not found") {
        return Failure::definite(MarketplaceError::SessionGone(SessionGone::NotFound));
    }
    if DEAD_SESSION_TEXTS.iter().any(|text| lower.contains(text)) {
        return Failure::definite(MarketplaceError::SessionGone(SessionGone::Unusable));
    }
    let retry_after = if matches!(status.as_u16(), 429 | 503) {
        retry_after(headers)
    } else {
        None
    };
    let error = MarketplaceError::Rejected {
        status: status.as_u16(),
        message,
        retry_after,
    };
    let ambiguous = status.is_server_error() && (!recognised || hints_at_timeout(&lower));
    Failure {
        error,
        not_sent: false,
        ambiguous,
    }
}

/// `Retry-After` as delay-seconds or an HTTP date, capped at an hour.
pub(crate) fn retry_after(headers: &HeaderMap) -> Option<Duration> {
    let raw = headers.get(RETRY_AFTER)?.to_str().ok()?.trim();
    let delay = if let Ok(secs) = raw.parse::<u64>() {
        Duration::from_secs(secs)
    } else {
        let at = httpdate::parse_http_date(raw).ok()?;
        at.duration_since(std::time::SystemTime::now())
            .unwrap_or(Duration::ZERO)
    };
    Some(delay.min(Duration::from_secs(3600)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use reqwest::header::HeaderValue;

    fn map(status: u16, body: &str) -> Failure {
        from_status(
            StatusCode::from_u16(status).unwrap(),
            &HeaderMap::new(),
            body.as_bytes(),
        )
    }

    #[test]
    fn credentials_problems_are_unauthorized() {
        for status in [401, 403] {
            let f = map(status, r#"{"error":"invalid username or password"}"#);
            assert_eq!(f.error, MarketplaceError::Unauthorized);
        }
    }

    #[test]
    fn session_texts_become_session_gone() {
        let f = map(500, r#"{"error":"Session Expired at block 7"}"#);
        assert_eq!(f.error, MarketplaceError::SessionGone(SessionGone::Expired));
        let f = map(500, r#"{"error":{"message":"session not found: 0xab"}}"#);
        assert_eq!(
            f.error,
            MarketplaceError::SessionGone(SessionGone::NotFound)
        );
        let f = map(400, "session not found");
        assert_eq!(
            f.error,
            MarketplaceError::SessionGone(SessionGone::NotFound)
        );
    }

    #[test]
    fn other_errors_are_rejections_with_clean_text() {
        let f = map(500, r#"{"error":"no provider accepting session"}"#);
        assert_eq!(
            f.error,
            MarketplaceError::Rejected {
                status: 500,
                message: "no provider accepting session".into(),
                retry_after: None
            }
        );
        assert!(!f.ambiguous);
        let f = map(
            502,
            "<html><body><h1>502 Bad Gateway</h1> upstream http://10.0.0.1:81/x</body></html>",
        );
        let MarketplaceError::Rejected { message, .. } = &f.error else {
            panic!("{f:?}")
        };
        assert_eq!(message, "502 Bad Gateway upstream [url]");
        assert!(
            f.ambiguous,
            "a 5xx without an error text may hide a success"
        );
        let f = map(500, r#"{"error":"context deadline exceeded"}"#);
        assert!(f.ambiguous);
        let f = map(503, "");
        let MarketplaceError::Rejected { message, .. } = &f.error else {
            panic!()
        };
        assert_eq!(message, "Service Unavailable");
    }

    #[test]
    fn redirects_are_invalid_responses() {
        let f = map(302, "");
        assert!(matches!(f.error, MarketplaceError::InvalidResponse(_)));
    }

    #[test]
    fn retry_after_is_read_on_429_and_503_only() {
        let mut h = HeaderMap::new();
        h.insert(RETRY_AFTER, HeaderValue::from_static("7"));
        for (status, want) in [(429, Some(7)), (503, Some(7)), (500, None)] {
            let f = from_status(StatusCode::from_u16(status).unwrap(), &h, b"{}");
            let MarketplaceError::Rejected { retry_after, .. } = f.error else {
                panic!()
            };
            assert_eq!(retry_after, want.map(Duration::from_secs), "{status}");
        }
        h.insert(RETRY_AFTER, HeaderValue::from_static("soon"));
        assert_eq!(retry_after(&h), None);
    }
}
