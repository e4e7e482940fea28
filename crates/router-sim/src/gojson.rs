//! JSON as Go's `encoding/json` writes it, which is what every body of the proxy-router is.
//!
//! Two differences from serde_json matter on the wire: Go escapes `<`, `>` and `&` (and U+2028,
//! U+2029) inside strings as `\u003c`… (`encoding/json/encode.go`, `HTMLEscape`, on by default in
//! `json.Marshal` and gin's `c.JSON`), and values decoded into `interface{}` come back out with
//! their object keys sorted and their numbers as float64. Keys sorted at the top level of chat
//! answers are the caller's business: the simulator declares their fields in alphabetical order.

use std::io;

use serde::Serialize;
use serde_json::Value;
use serde_json::ser::Formatter;

/// serde_json's compact output (every other method is the trait's default) plus Go's HTML
/// escaping.
struct GoFormatter;

impl Formatter for GoFormatter {
    fn write_string_fragment<W: ?Sized + io::Write>(
        &mut self,
        writer: &mut W,
        fragment: &str,
    ) -> io::Result<()> {
        let mut start = 0;
        for (i, c) in fragment.char_indices() {
            let escaped: &[u8] = match c {
                '<' => b"\\u003c",
                '>' => b"\\u003e",
                '&' => b"\\u0026",
                '\u{2028}' => b"\\u2028",
                '\u{2029}' => b"\\u2029",
                _ => continue,
            };
            writer.write_all(&fragment.as_bytes()[start..i])?;
            writer.write_all(escaped)?;
            start = i + c.len_utf8();
        }
        writer.write_all(&fragment.as_bytes()[start..])
    }
}

/// Appends `value` to `out` as Go would marshal it.
pub(crate) fn write<T: Serialize + ?Sized>(out: &mut Vec<u8>, value: &T) {
    let mut ser = serde_json::Serializer::with_formatter(out, GoFormatter);
    // Serialising plain structs and `Value`s into a Vec cannot fail.
    let _ = value.serialize(&mut ser);
}

/// `value` as Go would marshal it.
pub(crate) fn to_vec<T: Serialize + ?Sized>(value: &T) -> Vec<u8> {
    let mut out = Vec::with_capacity(128);
    write(&mut out, value);
    out
}

/// What a JSON value looks like after a round trip through Go's `interface{}`: numbers become
/// float64 (integers beyond 2^53 lose precision, `1.0` and `1e2` print as `1` and `100`), and
/// object keys come out sorted (serde_json's map already sorts them).
pub(crate) fn through_interface(v: Value) -> Value {
    match v {
        Value::Number(n) => go_float(&n),
        Value::Array(items) => Value::Array(items.into_iter().map(through_interface).collect()),
        Value::Object(map) => Value::Object(
            map.into_iter()
                .map(|(k, v)| (k, through_interface(v)))
                .collect(),
        ),
        other => other,
    }
}

/// Go prints an integral float64 below 1e21 without a fraction; anything else as a float.
fn go_float(n: &serde_json::Number) -> Value {
    let Some(f) = n.as_f64() else {
        return Value::Number(n.clone());
    };
    if f.fract() == 0.0 && f.abs() < 1e21 {
        // Exact: an integral f64 below 1e21 fits an i128.
        #[allow(clippy::cast_possible_truncation)]
        let i = f as i128;
        if let Ok(i) = i64::try_from(i) {
            return Value::from(i);
        }
        if let Ok(u) = u64::try_from(i) {
            return Value::from(u);
        }
    }
    serde_json::Number::from_f64(f).map_or(Value::Null, Value::Number)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn escapes_like_go() {
        let out = to_vec(&json!({"b": "<a href=\"x\">&</a>\u{2028}", "a": 1}));
        assert_eq!(
            String::from_utf8(out).unwrap(),
            r#"{"a":1,"b":"\u003ca href=\"x\"\u003e\u0026\u003c/a\u003e\u2028"}"#
        );
        assert_eq!(to_vec("line\nbreak"), br#""line\nbreak""#);
    }

    #[test]
    fn numbers_through_interface() {
        let v: Value =
            serde_json::from_str(r#"{"z":[1.0,1e2,2.5,9007199254740993],"a":-3}"#).unwrap();
        assert_eq!(
            serde_json::to_string(&through_interface(v)).unwrap(),
            r#"{"a":-3,"z":[1,100,2.5,9007199254740992]}"#
        );
    }
}
