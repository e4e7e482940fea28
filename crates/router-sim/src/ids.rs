//! Deterministic hex identifiers. The simulator needs ids that look like chain hashes and
//! addresses, are stable across runs (default catalogue) or unique per simulator (sessions,
//! transactions), without pulling in a hashing or RNG crate.

/// FNV-1a, 64 bit: tiny, stable across Rust versions (unlike `DefaultHasher`).
pub(crate) fn fnv1a(data: &[u8]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in data {
        h ^= u64::from(*b);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    h
}

/// splitmix64 step: spreads a seed into well-mixed words.
fn splitmix(state: &mut u64) -> u64 {
    *state = state.wrapping_add(0x9E37_79B9_7F4A_7C15);
    let mut z = *state;
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// `"0x"` followed by `hex_len` lowercase hex digits derived from `seed`.
pub(crate) fn hex_from_seed(seed: u64, hex_len: usize) -> String {
    use std::fmt::Write as _;
    let mut out = String::with_capacity(2 + hex_len + 16);
    out.push_str("0x");
    let mut state = seed;
    while out.len() < 2 + hex_len {
        let _ = write!(out, "{:016x}", splitmix(&mut state));
    }
    out.truncate(2 + hex_len);
    out
}

/// A stable id for a label, e.g. `derived_hex("provider:a", 40)` for an address.
pub(crate) fn derived_hex(label: &str, hex_len: usize) -> String {
    hex_from_seed(fnv1a(label.as_bytes()), hex_len)
}

/// `0x` + exactly `hex_len` hex digits (either case).
pub(crate) fn is_hex_id(s: &str, hex_len: usize) -> bool {
    s.len() == 2 + hex_len
        && (s.starts_with("0x") || s.starts_with("0X"))
        && s.as_bytes()[2..].iter().all(u8::is_ascii_hexdigit)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shapes() {
        let a = derived_hex("x", 64);
        assert!(is_hex_id(&a, 64));
        assert_eq!(a, derived_hex("x", 64));
        assert_ne!(a, derived_hex("y", 64));
        assert!(is_hex_id(&derived_hex("x", 40), 40));
        assert!(!is_hex_id("0xzz", 2));
    }
}
