//! Token counts reported by a provider. They feed billing and quotas, so anything odd (negative,
//! fractional, a string, absurdly large) is dropped rather than clamped or trusted.

use morpheus_domain::TokenUsage;
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
}
