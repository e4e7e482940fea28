//! Cleans upstream error texts before they travel further (logs, API answers): a provider's
//! error may quote internal URLs, addresses or the very credentials that were sent.

use std::net::{IpAddr, SocketAddr};

/// The longest message kept, in characters.
pub(crate) const MAX_MESSAGE_CHARS: usize = 300;

/// Strips what could identify or unlock something: URLs, IP addresses and CIDR ranges,
/// `host:port`, internal host names, file paths, `Basic …`/`Bearer …` tokens (with or without a
/// space after `Authorization:`), `user:pass@host`, the value of any `password=`/`token:`/
/// `key=`-like member, API keys (`sk-…` and kin), JWTs, base64 `user:pass` pairs, long random
/// tokens, 64-hex private keys and BIP-39 mnemonics; collapses whitespace and control
/// characters; truncates to [`MAX_MESSAGE_CHARS`].
pub(crate) fn sanitize(text: &str) -> String {
    // Split on whitespace and control characters alike, so neither survives.
    let words: Vec<&str> = text
        .split(|c: char| c.is_whitespace() || c.is_control())
        .filter(|w| !w.is_empty())
        .collect();
    let in_mnemonic = mnemonic_words(&words);
    let mut out: Vec<String> = Vec::new();
    let mut redact_next = false;
    for (i, word) in words.iter().enumerate() {
        if in_mnemonic[i] {
            if i == 0 || !in_mnemonic[i - 1] {
                out.push("[redacted]".to_owned());
            }
            continue;
        }
        if redact_next && is_scheme(core_of(word)) {
            // `Authorization: Basic …`: the secret is the word after the scheme.
            out.push((*word).to_owned());
            continue;
        }
        if redact_next {
            redact_next = false;
            out.push(keep_edges(word, "[redacted]"));
            continue;
        }
        let cleaned = clean_word(word);
        redact_next = cleaned.redact_next;
        out.push(cleaned.text);
        // Stop early: the rest would be cut anyway.
        if out.iter().map(|w| w.chars().count() + 1).sum::<usize>() > MAX_MESSAGE_CHARS + 1 {
            break;
        }
    }
    truncate_chars(&out.join(" "), MAX_MESSAGE_CHARS)
}

/// The fewest words of a BIP-39 mnemonic (12, 15, 18, 21 or 24 words).
const MNEMONIC_MIN_WORDS: usize = 12;

/// Marks runs of at least [`MNEMONIC_MIN_WORDS`] words that are all on the BIP-39 English list:
/// prose never strings twelve of them together, a leaked wallet phrase always does.
fn mnemonic_words(words: &[&str]) -> Vec<bool> {
    let listed: Vec<bool> = words
        .iter()
        .map(|w| {
            let core = core_of(w).to_ascii_lowercase();
            bip39::Language::English.find_word(&core).is_some()
        })
        .collect();
    let mut marks = vec![false; words.len()];
    let mut start = 0;
    while start < words.len() {
        let len = listed[start..].iter().take_while(|&&l| l).count();
        if len >= MNEMONIC_MIN_WORDS {
            marks[start..start + len].fill(true);
        }
        start += len.max(1);
    }
    marks
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

struct Cleaned {
    text: String,
    /// The word named an authentication scheme (`Basic`, `Bearer`) or a secret's name
    /// (`password:`): the next word is the secret.
    redact_next: bool,
}

fn clean_word(word: &str) -> Cleaned {
    let done = |text: String| Cleaned {
        text,
        redact_next: false,
    };
    // URLs anywhere in the word (`url=http://…`): cut from the scheme on.
    if let Some(pos) = word.find("://") {
        let scheme_start = word[..pos]
            .rfind(|c: char| !(c.is_ascii_alphanumeric() || matches!(c, '+' | '-' | '.')))
            .map_or(0, |i| i + 1);
        return done(format!("{}[url]", &word[..scheme_start]));
    }
    let core = core_of(word);
    if core.is_empty() {
        return done(word.to_owned());
    }
    if is_scheme(core) {
        return Cleaned {
            text: word.to_owned(),
            redact_next: true,
        };
    }
    // `password:` / `"token":` / `key=`, the value in the next word.
    let bare = word.trim_start_matches(is_wrapper);
    if let Some(name) = bare.strip_suffix([':', '='])
        && is_secret_name(name)
    {
        return Cleaned {
            text: word.to_owned(),
            redact_next: true,
        };
    }
    if let Some(text) = redact_value(core) {
        return done(keep_edges(word, text));
    }
    // `name=value`, `"name":"value"`, `Authorization:Basic`: judge the name and the value.
    if let Some(at) = core.find(['=', ':']) {
        let (name, value) = (&core[..at], core_of(&core[at + 1..]));
        let prefix = &word[..word.len() - word.trim_start_matches(is_wrapper).len()];
        let head = format!("{prefix}{}", &core[..=at]);
        if is_scheme(value) {
            return Cleaned {
                text: word.to_owned(),
                redact_next: true,
            };
        }
        if !value.is_empty() && is_secret_name(name) {
            return done(format!("{head}[redacted]"));
        }
        if let Some(text) = redact_value(value) {
            return done(format!("{head}{text}"));
        }
    }
    done(word.to_owned())
}

/// What a value alone gives away, if anything: the placeholder to put instead.
fn redact_value(core: &str) -> Option<&'static str> {
    if is_secret_key(core)
        || is_hex_key(core)
        || is_jwt(core)
        || is_basic_pair(core)
        || is_random_token(core)
    {
        return Some("[redacted]");
    }
    if core.contains('@') && core.contains(':') {
        // `user:password@host`
        return Some("[redacted]");
    }
    if is_address(core) || is_cidr(core) {
        return Some("[address]");
    }
    if is_internal_host(core) {
        return Some("[host]");
    }
    if is_file_path(core) {
        return Some("[path]");
    }
    None
}

fn is_scheme(core: &str) -> bool {
    let lower = core.trim_matches(is_wrapper).to_ascii_lowercase();
    lower == "basic" || lower == "bearer"
}

/// Member names whose value is a secret: `password`, `api_key`, `X-Auth-Token`, `seed`, …
fn is_secret_name(name: &str) -> bool {
    let lower = name
        .trim_matches(|c: char| is_wrapper(c) || c == '-' || c == '_')
        .to_ascii_lowercase();
    if lower.is_empty() {
        return false;
    }
    const NAMES: [&str; 16] = [
        "password",
        "passwd",
        "pwd",
        "pass",
        "secret",
        "token",
        "key",
        "apikey",
        "auth",
        "authorization",
        "credential",
        "credentials",
        "mnemonic",
        "seed",
        "phrase",
        "cookie",
    ];
    let last = lower
        .rsplit(['_', '-', '.'])
        .next()
        .unwrap_or(lower.as_str());
    NAMES.contains(&lower.as_str()) || NAMES.contains(&last)
}

fn is_secret_key(core: &str) -> bool {
    let lower = core.to_ascii_lowercase();
    [
        "sk-",
        "sk_",
        "rk_",
        "pk_",
        "ghp_",
        "gho_",
        "github_pat_",
        "xoxb-",
        "xoxp-",
        "akia",
    ]
    .iter()
    .any(|p| lower.starts_with(p) && core.len() > p.len() + 3)
}

/// A 32-byte key in hex (an Ethereum private key), with or without `0x`.
fn is_hex_key(core: &str) -> bool {
    let hex = core.strip_prefix("0x").unwrap_or(core);
    hex.len() == 64 && hex.bytes().all(|b| b.is_ascii_hexdigit())
}

fn is_jwt(core: &str) -> bool {
    let parts: Vec<&str> = core.split('.').collect();
    parts.len() == 3
        && core.starts_with("eyJ")
        && parts.iter().all(|p| {
            !p.is_empty()
                && p.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        })
}

/// Base64 that decodes to `user:password`, as a Basic credential is written.
fn is_basic_pair(core: &str) -> bool {
    use base64::Engine as _;
    if core.len() < 8
        || !core
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"+/=".contains(&b))
    {
        return false;
    }
    base64::engine::general_purpose::STANDARD
        .decode(core)
        .ok()
        .and_then(|raw| String::from_utf8(raw).ok())
        .is_some_and(|s| s.contains(':') && s.chars().all(|c| c.is_ascii_graphic() || c == ' '))
}

/// A long mix of upper case, lower case and digits: a token, not a word or a model name.
fn is_random_token(core: &str) -> bool {
    core.len() >= 24
        && core
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-_+/=".contains(&b))
        && core.bytes().any(|b| b.is_ascii_uppercase())
        && core.bytes().any(|b| b.is_ascii_lowercase())
        && core.bytes().any(|b| b.is_ascii_digit())
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

/// `10.0.0.0/8`, `fd00::/8`.
fn is_cidr(core: &str) -> bool {
    core.split_once('/').is_some_and(|(ip, prefix)| {
        ip.parse::<IpAddr>().is_ok()
            && (1..=3).contains(&prefix.len())
            && prefix.bytes().all(|b| b.is_ascii_digit())
    })
}

/// A host name that says where things run: `localhost`, `*.internal`, `*.svc.cluster.local`,
/// or any name of three labels or more (`db-2.prod.example`).
fn is_internal_host(core: &str) -> bool {
    let lower = core.to_ascii_lowercase();
    if lower == "localhost" {
        return true;
    }
    let labels: Vec<&str> = lower.split('.').collect();
    let host_like = labels.len() >= 2
        && labels
            .iter()
            .all(|l| !l.is_empty() && l.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-'))
        && labels
            .last()
            .is_some_and(|tld| tld.len() >= 2 && tld.bytes().all(|b| b.is_ascii_alphabetic()));
    if !host_like {
        return false;
    }
    const INTERNAL: [&str; 9] = [
        "internal",
        "local",
        "localdomain",
        "lan",
        "corp",
        "intranet",
        "svc",
        "cluster",
        "home",
    ];
    labels.len() >= 3 || labels[..].iter().skip(1).any(|l| INTERNAL.contains(l))
}

/// Route prefixes that appear in the proxy-router's own texts and say nothing about the host.
const ROUTE_ROOTS: [&str; 5] = ["v1", "blockchain", "proxy", "api", "healthcheck"];

/// `/etc/node/config.env`, `~/.ssh/id_rsa`, `./data/x`, `C:\keys\wallet.json`.
fn is_file_path(core: &str) -> bool {
    let windows =
        core.len() > 3 && core.as_bytes()[0].is_ascii_alphabetic() && &core[1..3] == ":\\";
    if windows || core.starts_with("\\\\") || core.starts_with("~/") {
        return true;
    }
    let rest = core
        .strip_prefix("../")
        .or_else(|| core.strip_prefix("./"))
        .or_else(|| core.strip_prefix('/'));
    let Some(rest) = rest else {
        return false;
    };
    let mut segments = rest.split('/');
    let first = segments.next().unwrap_or_default();
    !first.is_empty() && segments.next().is_some() && !ROUTE_ROOTS.contains(&first)
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

    /// Texts that came back verbatim in 400/502 bodies, each with the part that must go.
    fn leaks() -> impl Iterator<Item = (&'static str, &'static str)> {
        include_str!("../../../tests/fixtures/upstream_leaks.tsv")
            .lines()
            .filter(|l| !l.starts_with('#') && !l.is_empty())
            .map(|l| l.split_once('\t').expect("secret, tab, text"))
    }

    #[test]
    fn a_corpus_of_leaks_is_redacted() {
        for (secret, raw) in leaks() {
            let clean = sanitize(raw);
            assert!(!clean.contains(secret), "{raw:?} → {clean:?}");
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
            "This model's maximum context length is 128000 tokens. However, your messages \
             resulted in 131072 tokens. Please reduce the length of the messages.",
            "The model `gpt-4o` does not exist or you do not have access to it.",
            "Meta-Llama-3.1-70B-Instruct is overloaded, try again later",
            "POST /v1/chat/completions answered 503",
            "failed to initiate session: provider request failed",
            "we are unable to process this request right now",
        ] {
            assert_eq!(sanitize(text), text);
        }
    }

    #[test]
    fn collapses_whitespace_and_truncates() {
        assert_eq!(sanitize("a\n\tb\r\n\u{0}c   d"), "a b c d");
        let long = "lorem ".repeat(200);
        let out = sanitize(&long);
        assert_eq!(out.chars().count(), MAX_MESSAGE_CHARS);
        assert!(out.ends_with('…'));
        let wide = "é".repeat(400);
        assert_eq!(sanitize(&wide).chars().count(), MAX_MESSAGE_CHARS);
    }
}
