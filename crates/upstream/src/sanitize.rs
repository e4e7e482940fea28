//! Cleans upstream error texts before they travel further (logs, API answers): a provider's
//! error may quote internal URLs, addresses or the very credentials that were sent.

use std::net::{IpAddr, SocketAddr};

/// The longest message kept, in characters.
pub(crate) const MAX_MESSAGE_CHARS: usize = 300;

/// Strips URLs, IP addresses, `host:port`, `Basic …`/`Bearer …` tokens, `user:pass@host` and
/// `sk-…` keys; collapses whitespace and control characters; truncates to
/// [`MAX_MESSAGE_CHARS`].
pub(crate) fn sanitize(text: &str) -> String {
    let mut out: Vec<String> = Vec::new();
    let mut redact_next = false;
    // Split on whitespace and control characters alike, so neither survives.
    for word in text.split(|c: char| c.is_whitespace() || c.is_control()) {
        if word.is_empty() {
            continue;
        }
        if redact_next {
            redact_next = false;
            out.push(keep_edges(word, "[redacted]"));
            continue;
        }
        let core = core_of(word);
        let lower = core.to_ascii_lowercase();
        if lower == "basic" || lower == "bearer" {
            redact_next = true;
            out.push(word.to_owned());
            continue;
        }
        out.push(clean_word(word));
        // Stop early: the rest would be cut anyway.
        if out.iter().map(|w| w.chars().count() + 1).sum::<usize>() > MAX_MESSAGE_CHARS + 1 {
            break;
        }
    }
    truncate_chars(&out.join(" "), MAX_MESSAGE_CHARS)
}

/// Cuts to at most `max` characters, marking the cut with `…`.
pub(crate) fn truncate_chars(text: &str, max: usize) -> String {
    if text.chars().count() <= max {
        return text.to_owned();
    }
    let mut cut: String = text.chars().take(max.saturating_sub(1)).collect();
    cut.push('…');
    cut
}

/// Leading and trailing punctuation that commonly wraps a value in prose or JSON.
fn is_wrapper(c: char) -> bool {
    matches!(
        c,
        '"' | '\'' | '`' | '(' | ')' | '<' | '>' | '{' | '}' | ',' | ';' | '.' | '!' | '?'
    )
}

/// Also trailing: the colon of `host:port:` in prose (`dial tcp 10.0.0.7:8545: …`).
fn is_trailer(c: char) -> bool {
    is_wrapper(c) || c == ':'
}

fn core_of(word: &str) -> &str {
    word.trim_start_matches(is_wrapper)
        .trim_end_matches(is_trailer)
}

/// Replaces the core of `word` by `with`, keeping wrapping punctuation.
fn keep_edges(word: &str, with: &str) -> String {
    let start = word.len() - word.trim_start_matches(is_wrapper).len();
    let end = word.trim_end_matches(is_trailer).len();
    if start >= end {
        return with.to_owned();
    }
    format!("{}{}{}", &word[..start], with, &word[end..])
}

fn clean_word(word: &str) -> String {
    // URLs anywhere in the word (`url=http://…`): cut from the scheme on.
    if let Some(pos) = word.find("://") {
        let scheme_start = word[..pos]
            .rfind(|c: char| !(c.is_ascii_alphanumeric() || matches!(c, '+' | '-' | '.')))
            .map_or(0, |i| i + 1);
        return format!("{}[url]", &word[..scheme_start]);
    }
    let core = core_of(word);
    if core.is_empty() {
        return word.to_owned();
    }
    if is_secret_key(core) {
        return keep_edges(word, "[redacted]");
    }
    if core.contains('@') && core.contains(':') {
        // `user:password@host`
        return keep_edges(word, "[redacted]");
    }
    if is_address(core) {
        return keep_edges(word, "[address]");
    }
    word.to_owned()
}

fn is_secret_key(core: &str) -> bool {
    let lower = core.to_ascii_lowercase();
    ["sk-", "sk_", "rk_"]
        .iter()
        .any(|p| lower.starts_with(p) && core.len() > p.len() + 3)
}

fn is_address(core: &str) -> bool {
    let bare = core.trim_start_matches('[').trim_end_matches(']');
    if core.parse::<SocketAddr>().is_ok() || bare.parse::<IpAddr>().is_ok() {
        return true;
    }
    // `[v6]:port` parses as a SocketAddr above; `host:port` remains.
    if let Some((host, port)) = core.rsplit_once(':') {
        let port_ok =
            !port.is_empty() && port.len() <= 5 && port.bytes().all(|b| b.is_ascii_digit());
        let host_ok = !host.is_empty()
            && host.bytes().any(|b| b.is_ascii_alphabetic())
            && host
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'-' | b'_'));
        return port_ok && host_ok;
    }
    false
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn strips_urls_addresses_and_tokens() {
        let cases = [
            (
                "dial tcp 10.0.0.7:8545: connect: connection refused",
                "dial tcp [address]: connect: connection refused",
            ),
            (
                "Post \"http://user:pw@internal.host:3333/x?y=1\": EOF",
                "Post \"[url] EOF",
            ),
            ("see https://example.com/a.", "see [url]"),
            (
                "header Authorization: Basic dXNlcjpwYXNz rejected",
                "header Authorization: Basic [redacted] rejected",
            ),
            (
                "bad token (Bearer abc.def.ghi)",
                "bad token (Bearer [redacted])",
            ),
            (
                "key sk-proj-abcdef123 is invalid",
                "key [redacted] is invalid",
            ),
            (
                "upstream node-3.internal:8082 timed out",
                "upstream [address] timed out",
            ),
            (
                "ipv6 [::1]:8080 and fe80::1 gone",
                "ipv6 [address] and [address] gone",
            ),
            ("login admin:pw@host failed", "login [redacted] failed"),
            ("lookup localhost:9 refused", "lookup [address] refused"),
        ];
        for (raw, want) in cases {
            assert_eq!(sanitize(raw), want, "{raw}");
        }
    }

    #[test]
    fn keeps_ordinary_error_texts() {
        for text in [
            "session expired",
            "session not found",
            "no provider accepting session",
            "at 12:30:45 the bid 0xabc was gone: error 500",
            "invalid username or password",
        ] {
            assert_eq!(sanitize(text), text);
        }
    }

    #[test]
    fn collapses_whitespace_and_truncates() {
        assert_eq!(sanitize("a\n\tb\r\n\u{0}c   d"), "a b c d");
        let long = "word ".repeat(200);
        let out = sanitize(&long);
        assert_eq!(out.chars().count(), MAX_MESSAGE_CHARS);
        assert!(out.ends_with('…'));
        let wide = "é".repeat(400);
        assert_eq!(sanitize(&wide).chars().count(), MAX_MESSAGE_CHARS);
    }
}
