//! Token counts reported by a provider. They feed billing and quotas, so anything odd (negative,
//! fractional, a string, absurdly large) is dropped rather than clamped or trusted.

use morpheus_domain::TokenUsage;
use serde_json::Value;

/// The largest count believed for one completion.
pub(crate) const MAX_TOKENS: u64 = 10_000_000;

/// Reads `usage.prompt_tokens` and `usage.completion_tokens` from a completion or chunk object.
pub(crate) fn usage_of(object: &serde_json::Map<String, Value>) -> Option<TokenUsage> {
    let usage = object.get("usage")?.as_object()?;
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
        let v: Value = serde_json::from_str(json).unwrap();
        usage_of(v.as_object().unwrap())
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
