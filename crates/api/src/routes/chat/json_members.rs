//! A JSON object's top-level members located in its text, so the chat route can take members
//! out of a request or give one a new value while every other byte passes through as written
//! (no tree of the values is built, nothing is re-encoded).

use std::borrow::Cow;
use std::ops::Range;

use serde::de::{Deserialize, Deserializer, MapAccess, Visitor};
use serde_json::value::RawValue;

/// One member: its name, where `"name": value` is, and where the value alone is.
struct Member<'a> {
    key: Cow<'a, str>,
    whole: Range<usize>,
    value: Range<usize>,
}

/// `json` without the members named in `names`: `Some(None)` when it has none of them (use it
/// as it is), `None` when it is not a JSON object.
pub fn without(json: &[u8], names: &[&str]) -> Option<Option<Vec<u8>>> {
    let members = members(json)?;
    let dropped = |m: &Member<'_>| names.iter().any(|name| m.key == *name);
    if !members.iter().any(dropped) {
        return Some(None);
    }
    let mut out = Vec::with_capacity(json.len());
    out.push(b'{');
    for (i, member) in members.iter().filter(|m| !dropped(m)).enumerate() {
        if i > 0 {
            out.push(b',');
        }
        out.extend_from_slice(&json[member.whole.clone()]);
    }
    out.push(b'}');
    Some(Some(out))
}

/// `json` with the value of every member named `name` replaced by `value` (raw JSON): `None`
/// when there is no such member, `Some(None)` when `json` is not a JSON object.
pub fn replace_values(json: &[u8], name: &str, value: &[u8]) -> Option<Option<Vec<u8>>> {
    let Some(members) = members(json) else {
        return Some(None);
    };
    let mut spans = members.iter().filter(|m| m.key == name).peekable();
    spans.peek()?;
    let mut out = Vec::with_capacity(json.len() + value.len());
    let mut copied = 0;
    for member in spans {
        out.extend_from_slice(&json[copied..member.value.start]);
        out.extend_from_slice(value);
        copied = member.value.end;
    }
    out.extend_from_slice(&json[copied..]);
    Some(Some(out))
}

/// Every member of a JSON object as (name, raw value), in order; `None` when it is not one.
pub fn all(json: &[u8]) -> Option<Vec<(Cow<'_, str>, &RawValue)>> {
    serde_json::from_slice::<AllMembers<'_>>(json)
        .ok()
        .map(|members| members.0)
}

/// How deep a JSON value nests: 0 for a scalar, 1 for `{}` or `[1]`, 2 for `[[1]]`, …
pub fn depth(value: &[u8]) -> usize {
    let (mut depth, mut deepest, mut in_string, mut escaped) = (0usize, 0, false, false);
    for &b in value {
        if in_string {
            match b {
                _ if escaped => escaped = false,
                b'\\' => escaped = true,
                b'"' => in_string = false,
                _ => {}
            }
            continue;
        }
        match b {
            b'"' => in_string = true,
            b'{' | b'[' => {
                depth += 1;
                deepest = deepest.max(depth);
            }
            b'}' | b']' => depth = depth.saturating_sub(1),
            _ => {}
        }
    }
    deepest
}

/// `json` (an object) with one more member, `"name": value` (raw JSON), at its end; `None` when
/// `json` is not a JSON object.
pub fn with_member(json: &[u8], name: &str, value: &[u8]) -> Option<Vec<u8>> {
    let members = members(json)?;
    let close = json.iter().rposition(|&b| b == b'}')?;
    let key = serde_json::to_vec(name).ok()?;
    let mut out = Vec::with_capacity(json.len() + key.len() + value.len() + 2);
    out.extend_from_slice(&json[..close]);
    if !members.is_empty() {
        out.push(b',');
    }
    out.extend_from_slice(&key);
    out.push(b':');
    out.extend_from_slice(value);
    out.extend_from_slice(&json[close..]);
    Some(out)
}

/// The members of a JSON object, in order, located in its text; `None` when it is not one.
fn members(json: &[u8]) -> Option<Vec<Member<'_>>> {
    let values: AllMembers<'_> = serde_json::from_slice(json).ok()?;
    values
        .0
        .into_iter()
        .map(|(key, value)| {
            let start = (value.get().as_ptr() as usize).checked_sub(json.as_ptr() as usize)?;
            let end = start + value.get().len();
            (end <= json.len()).then_some(())?;
            Some(Member {
                key,
                whole: key_start(json, start)?..end,
                value: start..end,
            })
        })
        .collect()
}

/// The opening quote of the name of the member whose value starts at `value_start`: back over
/// `"name" :`, to the nearest earlier quote that is not escaped (a name cannot hold a bare one).
fn key_start(json: &[u8], value_start: usize) -> Option<usize> {
    let skip_space = |mut i: usize| {
        while i > 0 && matches!(json[i - 1], b' ' | b'\t' | b'\n' | b'\r') {
            i -= 1;
        }
        i
    };
    let colon = skip_space(value_start).checked_sub(1)?;
    let closing = skip_space(colon).checked_sub(1)?;
    if json[colon] != b':' || json[closing] != b'"' {
        return None;
    }
    let mut before = closing;
    loop {
        let quote = json[..before].iter().rposition(|&b| b == b'"')?;
        let backslashes = json[..quote]
            .iter()
            .rev()
            .take_while(|&&b| b == b'\\')
            .count();
        if backslashes % 2 == 0 {
            return Some(quote);
        }
        before = quote;
    }
}

/// Every member of a JSON object as (name, raw value), in order, borrowed from the input.
struct AllMembers<'a>(Vec<(Cow<'a, str>, &'a RawValue)>);

impl<'de> Deserialize<'de> for AllMembers<'de> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct Members;
        impl<'de> Visitor<'de> for Members {
            type Value = AllMembers<'de>;

            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("a JSON object")
            }

            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
                let mut members = Vec::new();
                while let Some(key) = map.next_key::<Cow<'de, str>>()? {
                    members.push((key, map.next_value::<&'de RawValue>()?));
                }
                Ok(AllMembers(members))
            }
        }
        deserializer.deserialize_map(Members)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn depth_counts_nesting_outside_strings() {
        for (json, expected) in [
            ("1", 0),
            (r#""[{[{""#, 0),
            ("{}", 1),
            ("[1,[2,[3]],4]", 3),
            (r#"{"a":{"b":"}}}\"{{"},"c":[[]]}"#, 3),
        ] {
            assert_eq!(depth(json.as_bytes()), expected, "{json}");
        }
    }
}
