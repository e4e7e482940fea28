//! Token counts reported by a provider. They feed billing and quotas, so anything odd (negative,
//! fractional, a string, absurdly large) is dropped rather than clamped or trusted.

use morpheus_domain::{ReportedUsage, TokenUsage, UsageSource};
use serde_json::value::RawValue;
use serde_json::{Map, Value};

/// The largest count believed for one completion.
pub(crate) const MAX_TOKENS: u64 = 10_000_000;

/// Reads `prompt_tokens` and `completion_tokens` from a completion's or chunk's `usage` member
/// (see `members::pick`).
pub(crate) fn usage_in(usage: Option<&RawValue>) -> Option<TokenUsage> {
    let usage: Map<String, Value> = serde_json::from_str(usage?.get()).ok()?;
    Some(TokenUsage {
        prompt_tokens: count(usage.get("prompt_tokens")?)?,
        completion_tokens: count(usage.get("completion_tokens")?)?,
    })
}

/// Reads an embeddings answer's `usage`: `prompt_tokens` (else `total_tokens`), the only
/// tokens an embedding costs; a `completion_tokens` is ignored.
pub(crate) fn embedding_usage_in(usage: Option<&RawValue>) -> Option<TokenUsage> {
    let usage: Map<String, Value> = serde_json::from_str(usage?.get()).ok()?;
    let prompt = usage
        .get("prompt_tokens")
        .or_else(|| usage.get("total_tokens"))?;
    Some(TokenUsage {
        prompt_tokens: count(prompt)?,
        completion_tokens: 0,
    })
}

/// The members an answer's usage can be read from, best first: the provider's `usage` (sent
/// only when `include_usage` was asked for), then the node's `usage_from_provider` (the
/// provider's figures as the node received them), then `usage_from_consumer` (the node's own
/// count), `proxy_receiver.go:245-258`, `proxy_sender.go:1050-1066`.
pub(crate) const USAGE_MEMBERS: [&str; 3] = ["usage", "usage_from_provider", "usage_from_consumer"];

/// The first usable count among [`USAGE_MEMBERS`]' values, with where it was read.
pub(crate) fn reported(members: [Option<&RawValue>; 3]) -> Option<ReportedUsage> {
    let sources = [
        UsageSource::Usage,
        UsageSource::UsageFromProvider,
        UsageSource::UsageFromConsumer,
    ];
    members
        .into_iter()
        .zip(sources)
        .find_map(|(member, source)| {
            usage_in(member).map(|tokens| ReportedUsage { tokens, source })
        })
}

/// `json` without the node's own `usage_from_*` members, which are not OpenAI's and not the
/// client's business; `None` when it has none (or is not an object).
pub(crate) fn without_node_counts(json: &[u8]) -> Option<Vec<u8>> {
    let mut object: Map<String, Value> = serde_json::from_slice(json).ok()?;
    let had = object.remove(USAGE_MEMBERS[1]).is_some() | object.remove(USAGE_MEMBERS[2]).is_some();
    had.then(|| serde_json::to_vec(&object).ok()).flatten()
}

fn count(v: &Value) -> Option<u32> {
    // `as_u64` is None for negatives and for fractions (`1.0` included).
    let n = v.as_u64().filter(|n| *n <= MAX_TOKENS)?;
    u32::try_from(n).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn of(json: &str) -> Option<TokenUsage> {
        let [usage] = crate::members::pick(json.as_bytes(), ["usage"]).unwrap();
        usage_in(usage)
    }

    #[test]
    fn sane_usage_is_read() {
        assert_eq!(
            of(r#"{"usage":{"prompt_tokens":12,"completion_tokens":0,"total_tokens":12}}"#),
            Some(TokenUsage {
                prompt_tokens: 12,
                completion_tokens: 0
            })
        );
        assert_eq!(
            of(r#"{"usage":{"prompt_tokens":10000000,"completion_tokens":1}}"#)
                .unwrap()
                .prompt_tokens,
            10_000_000
        );
    }

    #[test]
    fn usage_falls_back_to_the_nodes_counts_and_says_which() {
        let read = |json: &str| {
            let members = crate::members::pick(json.as_bytes(), USAGE_MEMBERS).unwrap();
            reported(members).map(|r| (r.tokens.prompt_tokens, r.source))
        };
        let provider = r#""usage_from_provider":{"prompt_tokens":7,"completion_tokens":2}"#;
        let consumer = r#""usage_from_consumer":{"prompt_tokens":9,"completion_tokens":3}"#;
        let usage = r#""usage":{"prompt_tokens":5,"completion_tokens":1}"#;
        assert_eq!(
            read(&format!("{{{usage},{provider},{consumer}}}")),
            Some((5, UsageSource::Usage))
        );
        assert_eq!(
            read(&format!("{{{consumer},{provider}}}")),
            Some((7, UsageSource::UsageFromProvider))
        );
        assert_eq!(
            read(&format!(r#"{{"usage":null,{consumer}}}"#)),
            Some((9, UsageSource::UsageFromConsumer))
        );
        assert_eq!(read("{}"), None);

        let stripped =
            without_node_counts(format!("{{\"id\":1,{provider},{consumer}}}").as_bytes());
        assert_eq!(stripped.as_deref(), Some(&br#"{"id":1}"#[..]));
        assert_eq!(without_node_counts(br#"{"id":1}"#), None);
    }

    #[test]
    fn odd_usage_is_dropped() {
        for bad in [
            r#"{}"#,
            r#"{"usage":null}"#,
            r#"{"usage":{"prompt_tokens":-1,"completion_tokens":3}}"#,
            r#"{"usage":{"prompt_tokens":"5","completion_tokens":3}}"#,
            r#"{"usage":{"prompt_tokens":1.5,"completion_tokens":3}}"#,
            r#"{"usage":{"prompt_tokens":10000001,"completion_tokens":3}}"#,
            r#"{"usage":{"prompt_tokens":1e40,"completion_tokens":3}}"#,
            r#"{"usage":{"prompt_tokens":4}}"#,
            r#"{"usage":[1,2]}"#,
        ] {
            assert_eq!(of(bad), None, "{bad}");
        }
    }

    #[test]
    fn an_embedding_costs_its_prompt_tokens_only() {
        let read = |json: &str| {
            let [usage] = crate::members::pick(json.as_bytes(), ["usage"]).unwrap();
            embedding_usage_in(usage)
        };
        let tokens = |prompt_tokens| {
            Some(TokenUsage {
                prompt_tokens,
                completion_tokens: 0,
            })
        };
        assert_eq!(
            read(r#"{"usage":{"prompt_tokens":8,"total_tokens":8}}"#),
            tokens(8)
        );
        assert_eq!(read(r#"{"usage":{"total_tokens":5}}"#), tokens(5));
        assert_eq!(
            read(r#"{"usage":{"prompt_tokens":3,"completion_tokens":9}}"#),
            tokens(3)
        );
        for bad in [
            r#"{}"#,
            r#"{"usage":{}}"#,
            r#"{"usage":{"prompt_tokens":-2}}"#,
        ] {
            assert_eq!(read(bad), None, "{bad}");
        }
    }
}
