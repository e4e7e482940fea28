//! Lossless big integers. The proxy-router writes wei amounts either as decimal strings (bids)
//! or as bare JSON numbers that exceed 2^64 (sessions). serde_json without
//! `arbitrary_precision` would turn such a number into an `f64` through `deserialize_any`, so
//! the field is read as raw JSON text and parsed here instead.

use serde::Deserialize;
use serde::de::{Deserializer, Error as _};
use serde_json::value::RawValue;

/// Deserializes a non-negative integer given as a JSON number or a decimal string.
pub(crate) fn big_uint<'de, D: Deserializer<'de>>(d: D) -> Result<u128, D::Error> {
    let raw = Box::<RawValue>::deserialize(d)?;
    parse_big_uint(raw.get()).map_err(D::Error::custom)
}

/// Like [`big_uint`] but must fit in a `u64` (timestamps).
pub(crate) fn big_u64<'de, D: Deserializer<'de>>(d: D) -> Result<u64, D::Error> {
    let n = big_uint(d)?;
    u64::try_from(n).map_err(|_| D::Error::custom("integer out of range"))
}

/// `raw` is one JSON value as text.
pub(crate) fn parse_big_uint(raw: &str) -> Result<u128, String> {
    let raw = raw.trim();
    let digits: std::borrow::Cow<'_, str> = if raw.starts_with('"') {
        let s: String = serde_json::from_str(raw).map_err(|_| "invalid string".to_owned())?;
        s.trim().to_owned().into()
    } else {
        raw.into()
    };
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return Err(format!(
            "expected a non-negative integer, got {}",
            crate::sanitize::truncate_chars(raw, 40)
        ));
    }
    digits
        .parse::<u128>()
        .map_err(|_| "integer out of range".to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Deserialize)]
    struct Holder {
        #[serde(deserialize_with = "big_uint")]
        n: u128,
    }

    fn read(json: &str) -> Result<u128, String> {
        serde_json::from_str::<Holder>(json)
            .map(|h| h.n)
            .map_err(|e| e.to_string())
    }

    #[test]
    fn numbers_beyond_u64_are_exact() {
        assert_eq!(
            read(r#"{"n": 123456789012345678901234567890}"#).unwrap(),
            123_456_789_012_345_678_901_234_567_890
        );
        assert_eq!(
            read(r#"{"n":"340282366920938463463374607431768211455"}"#).unwrap(),
            u128::MAX
        );
        assert_eq!(
            read(r#"{"n":"18446744073709551617"}"#).unwrap(),
            (1u128 << 64) + 1
        );
        assert_eq!(read(r#"{"n":0}"#).unwrap(), 0);
        assert_eq!(read(r#"{"n":" 42 "}"#).unwrap(), 42);
    }

    #[test]
    fn anything_but_a_non_negative_integer_is_refused() {
        for bad in [
            r#"{"n":-1}"#,
            r#"{"n":1.5}"#,
            r#"{"n":1e30}"#,
            r#"{"n":"-1"}"#,
            r#"{"n":"0x10"}"#,
            r#"{"n":""}"#,
            r#"{"n":null}"#,
            r#"{"n":true}"#,
            r#"{"n":"340282366920938463463374607431768211456"}"#,
        ] {
            assert!(read(bad).is_err(), "{bad}");
        }
    }
}
