//! Reads a few top-level members of a JSON object as raw text, skipping the rest without
//! building a tree: the completion and every stream event are inspected for `error`, `usage`
//! and `choices` only, and a `serde_json::Value` of each (with its content strings) was the
//! bulk of the gateway's work per streamed chunk.

use std::borrow::Cow;
use std::fmt;

use serde::de::{DeserializeSeed, Deserializer, IgnoredAny, MapAccess, Visitor};
use serde_json::value::RawValue;

/// The values of the members named `names`, in that order (`None` when absent; the last one
/// when a name repeats, as a parsed object would keep). Fails when `json` is not an object.
pub(crate) fn pick<'a, const N: usize>(
    json: &'a [u8],
    names: [&str; N],
) -> serde_json::Result<[Option<&'a RawValue>; N]> {
    let mut deserializer = serde_json::Deserializer::from_slice(json);
    let picked = Picker { names }.deserialize(&mut deserializer)?;
    deserializer.end()?;
    Ok(picked)
}

/// Whether a member is there with a value other than `null`.
pub(crate) fn present(value: Option<&RawValue>) -> bool {
    value.is_some_and(|v| v.get() != "null")
}

/// A non-negative integer as `Value::as_u64` reads one: no sign, fraction or exponent.
pub(crate) fn as_u64(value: &RawValue) -> Option<u64> {
    value.get().parse().ok()
}

struct Picker<'n, const N: usize> {
    names: [&'n str; N],
}

impl<'de, const N: usize> DeserializeSeed<'de> for Picker<'_, N> {
    type Value = [Option<&'de RawValue>; N];

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<Self::Value, D::Error> {
        deserializer.deserialize_map(self)
    }
}

impl<'de, const N: usize> Visitor<'de> for Picker<'_, N> {
    type Value = [Option<&'de RawValue>; N];

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a JSON object")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        let mut found = [None; N];
        while let Some(key) = map.next_key::<Cow<'de, str>>()? {
            match self.names.iter().position(|name| *name == key) {
                Some(i) => found[i] = Some(map.next_value::<&'de RawValue>()?),
                None => {
                    map.next_value::<IgnoredAny>()?;
                }
            }
        }
        Ok(found)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn picks_members_by_name_and_skips_the_rest() {
        let json =
            br#"{"id":"c","choices":[{"delta":{"content":"hi"}}],"usage":null,"x":{"error":1}}"#;
        let [error, usage, choices] = pick(json, ["error", "usage", "choices"]).unwrap();
        assert!(error.is_none(), "nested members are not top-level ones");
        assert_eq!(usage.unwrap().get(), "null");
        assert!(!present(usage));
        assert_eq!(choices.unwrap().get(), r#"[{"delta":{"content":"hi"}}]"#);
    }

    #[test]
    fn the_last_of_a_repeated_member_wins_and_escaped_names_match() {
        let [usage] = pick(br#"{"usage":1,"us\u0061ge":2}"#, ["usage"]).unwrap();
        assert_eq!(usage.unwrap().get(), "2");
    }

    #[test]
    fn anything_but_one_object_is_refused() {
        for json in [
            &b"[1,2]"[..],
            b"\"s\"",
            b"null",
            b"{\"a\":1} {}",
            b"{\"a\":",
            b"nope",
        ] {
            assert!(
                pick(json, ["a"]).is_err(),
                "{}",
                String::from_utf8_lossy(json)
            );
        }
    }

    #[test]
    fn integers_read_like_value_as_u64() {
        let raw = |s: &str| RawValue::from_string(s.to_owned()).unwrap();
        assert_eq!(as_u64(&raw("7")), Some(7));
        for not in ["-1", "1.0", "1e2", "\"5\"", "18446744073709551616", "null"] {
            assert_eq!(as_u64(&raw(not)), None, "{not}");
        }
    }
}
