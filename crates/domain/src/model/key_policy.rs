//! What an API key may do: until when it works, which models it may use, its rates and its
//! spending budgets. Every part is optional; a key without any is unlimited, as keys made
//! before policies existed are.
//!
//! This module stores and checks the values; the expiry and the allow-list are enforced where
//! keys are authenticated and chats admitted, rates and budgets by the governance counters.

use std::num::{NonZeroU32, NonZeroU64};
use std::time::Duration;

use chrono::{DateTime, Utc};

use super::Usd;
use crate::validation::{Invalid, check_char_len, check_no_nul};

/// A key's limits. `Default` is a key without any.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct KeyPolicy {
    /// From this instant on the key is refused, exactly like a revoked one.
    pub expires_at: Option<DateTime<Utc>>,
    /// The only models the key may use; `None`: every model.
    pub allowed_models: Option<AllowedModels>,
    /// Requests per minute.
    pub rpm: Option<NonZeroU32>,
    /// Tokens (prompt and completion) per minute.
    pub tpm: Option<NonZeroU64>,
    /// Spending caps, each over its own window; empty: no cap. At most [`MAX_BUDGETS`],
    /// windows distinct.
    pub budgets: Vec<KeyBudget>,
    /// A stream that breaks mid-answer is continued by another upstream (when the operator
    /// allows it too).
    pub stream_continuation: bool,
}

impl KeyPolicy {
    /// Whether the key has expired at `now`.
    pub fn is_expired_at(&self, now: DateTime<Utc>) -> bool {
        self.expires_at.is_some_and(|at| at <= now)
    }

    /// Whether the key may use the model with this name and id.
    pub fn allows_model(&self, name: &str, id: &str) -> bool {
        self.allowed_models
            .as_ref()
            .is_none_or(|allowed| allowed.allows(name, id))
    }
}

/// Most models one key's allow-list may name.
pub const MAX_ALLOWED_MODELS: usize = 64;
/// Longest model name or id an allow-list takes (as `model_id` elsewhere).
pub const MAX_MODEL_REF_CHARS: usize = 256;
/// Highest `rpm` a key may be given.
pub const MAX_RPM: u32 = 1_000_000;
/// Highest `tpm` a key may be given.
pub const MAX_TPM: u64 = 10_000_000_000;
/// Most budgets one key may have.
pub const MAX_BUDGETS: usize = 4;
/// The shortest budget window.
pub const MIN_BUDGET_WINDOW: Duration = Duration::from_secs(60);
/// The longest budget window: 366 days.
pub const MAX_BUDGET_WINDOW: Duration = Duration::from_secs(366 * 86_400);
/// The largest budget limit, in dollars: far above any real key, far below overflow.
pub const MAX_BUDGET_USD: i64 = 1_000_000_000;

/// A problem with one member of a list field: which one (when one is at fault), and which of
/// its parts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ListInvalid {
    pub index: Option<usize>,
    pub member: Option<&'static str>,
    pub invalid: Invalid,
}

impl ListInvalid {
    fn whole(invalid: Invalid) -> Self {
        Self {
            index: None,
            member: None,
            invalid,
        }
    }

    fn at(index: usize, member: Option<&'static str>, invalid: Invalid) -> Self {
        Self {
            index: Some(index),
            member,
            invalid,
        }
    }
}

/// The models a key may use, by name or id: 1 to [`MAX_ALLOWED_MODELS`] entries of 1 to
/// [`MAX_MODEL_REF_CHARS`] characters, without duplicates (compared ignoring case). A chat's model matches an entry when its
/// resolved name or id equals it, ignoring case; aliases are not expanded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AllowedModels(Vec<String>);

impl AllowedModels {
    /// Checks a list as a client sent it. Duplicates are dropped (the first spelling stays).
    pub fn parse(entries: Vec<String>) -> Result<Self, ListInvalid> {
        if entries.is_empty() {
            return Err(ListInvalid::whole(Invalid::new(
                "too_short",
                "List should have at least 1 item (null allows every model)",
            )));
        }
        if entries.len() > MAX_ALLOWED_MODELS {
            return Err(ListInvalid::whole(Invalid::new(
                "too_long",
                format!("List should have at most {MAX_ALLOWED_MODELS} items"),
            )));
        }
        let mut kept: Vec<String> = Vec::with_capacity(entries.len());
        for (index, entry) in entries.into_iter().enumerate() {
            check_char_len(&entry, 1, MAX_MODEL_REF_CHARS)
                .and_then(|()| check_no_nul(&entry))
                .map_err(|invalid| ListInvalid::at(index, None, invalid))?;
            let lower = entry.to_lowercase();
            if !kept.iter().any(|k| k.to_lowercase() == lower) {
                kept.push(entry);
            }
        }
        Ok(Self(kept))
    }

    /// A list that was checked when it was stored.
    pub fn from_trusted(entries: Vec<String>) -> Self {
        Self(entries)
    }

    pub fn as_slice(&self) -> &[String] {
        &self.0
    }

    pub fn allows(&self, name: &str, id: &str) -> bool {
        let (name, id) = (name.to_lowercase(), id.to_lowercase());
        self.0.iter().any(|entry| {
            let entry = entry.to_lowercase();
            entry == id || (!name.is_empty() && entry == name)
        })
    }
}

/// A spending cap: at most `limit` over any `window`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct KeyBudget {
    pub window: Duration,
    pub limit: Usd,
}

impl KeyBudget {
    /// The window as the API writes it: the largest of `d`, `h`, `m`, `s` that divides it.
    pub fn window_text(&self) -> String {
        let secs = self.window.as_secs();
        for (unit, size) in [('d', 86_400), ('h', 3_600), ('m', 60)] {
            if secs.is_multiple_of(size) {
                return format!("{}{unit}", secs / size);
            }
        }
        format!("{secs}s")
    }
}

/// A budget window as written on the wire: a whole number and a unit, `s`, `m`, `h` or `d`
/// (`90s`, `15m`, `1h`, `30d`), from 60 s to 366 days.
pub fn parse_budget_window(raw: &str) -> Result<Duration, Invalid> {
    let invalid = || {
        Invalid::new(
            "value_error",
            format!(
                "{raw:?} is not a window: write a whole number and a unit, s, m, h or d \
                 (15m, 1h, 30d)"
            ),
        )
    };
    let unit = raw.chars().last().ok_or_else(invalid)?;
    let digits = &raw[..raw.len() - unit.len_utf8()];
    if digits.is_empty() || digits.len() > 9 || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return Err(invalid());
    }
    let count: u64 = digits.parse().map_err(|_| invalid())?;
    let size = match unit {
        's' => 1,
        'm' => 60,
        'h' => 3_600,
        'd' => 86_400,
        _ => return Err(invalid()),
    };
    let window = Duration::from_secs(count * size);
    if !(MIN_BUDGET_WINDOW..=MAX_BUDGET_WINDOW).contains(&window) {
        return Err(Invalid::new(
            "value_error",
            "A budget window must be from 60s to 366d",
        ));
    }
    Ok(window)
}

/// A budget limit: a decimal amount of USD above zero, at most [`MAX_BUDGET_USD`].
pub fn parse_budget_limit(raw: &str) -> Result<Usd, Invalid> {
    let limit: Usd = raw.parse()?;
    if limit <= Usd::ZERO {
        return Err(Invalid::new(
            "greater_than",
            "A budget limit must be more than 0",
        ));
    }
    if limit > Usd::from_units(MAX_BUDGET_USD * Usd::UNITS_PER_DOLLAR) {
        return Err(Invalid::new(
            "less_than_equal",
            format!("A budget limit may be at most {MAX_BUDGET_USD} USD"),
        ));
    }
    Ok(limit)
}

/// A list of budgets as written on the wire (`window`, `limit_usd` each): at most
/// [`MAX_BUDGETS`], each window distinct (`60m` and `1h` are the same window).
pub fn parse_budgets(raw: &[(String, String)]) -> Result<Vec<KeyBudget>, ListInvalid> {
    if raw.len() > MAX_BUDGETS {
        return Err(ListInvalid::whole(Invalid::new(
            "too_long",
            format!("List should have at most {MAX_BUDGETS} items"),
        )));
    }
    let mut budgets: Vec<KeyBudget> = Vec::with_capacity(raw.len());
    for (index, (window, limit)) in raw.iter().enumerate() {
        let window = parse_budget_window(window)
            .map_err(|invalid| ListInvalid::at(index, Some("window"), invalid))?;
        let limit = parse_budget_limit(limit)
            .map_err(|invalid| ListInvalid::at(index, Some("limit_usd"), invalid))?;
        if budgets.iter().any(|b| b.window == window) {
            return Err(ListInvalid::at(
                index,
                Some("window"),
                Invalid::new(
                    "value_error",
                    "Another budget has the same window; give each window one limit",
                ),
            ));
        }
        budgets.push(KeyBudget { window, limit });
    }
    Ok(budgets)
}

/// An expiry must be strictly after `now`.
pub fn check_expires_at(at: DateTime<Utc>, now: DateTime<Utc>) -> Result<DateTime<Utc>, Invalid> {
    if at <= now {
        return Err(Invalid::new(
            "value_error",
            "expires_at must be in the future (null: the key does not expire)",
        ));
    }
    Ok(at)
}

/// Requests per minute: 1 to [`MAX_RPM`].
pub fn parse_rpm(raw: i64) -> Result<NonZeroU32, Invalid> {
    u32::try_from(raw)
        .ok()
        .filter(|n| *n <= MAX_RPM)
        .and_then(NonZeroU32::new)
        .ok_or_else(|| out_of_range(MAX_RPM.into()))
}

/// Tokens per minute: 1 to [`MAX_TPM`].
pub fn parse_tpm(raw: i64) -> Result<NonZeroU64, Invalid> {
    u64::try_from(raw)
        .ok()
        .filter(|n| *n <= MAX_TPM)
        .and_then(NonZeroU64::new)
        .ok_or_else(|| out_of_range(MAX_TPM))
}

fn out_of_range(max: u64) -> Invalid {
    Invalid::new(
        "value_error",
        format!("Input should be from 1 to {max} (null: no limit)"),
    )
}

/// One field of a partial update: left as it is, or set (`Set(None)` clears a nullable one).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub enum Change<T> {
    #[default]
    Keep,
    Set(T),
}

impl<T> Change<T> {
    pub fn is_keep(&self) -> bool {
        matches!(self, Change::Keep)
    }
}

/// A partial update of a key: its name and policy.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ApiKeyChange {
    pub name: Change<Option<String>>,
    pub expires_at: Change<Option<DateTime<Utc>>>,
    pub allowed_models: Change<Option<AllowedModels>>,
    pub rpm: Change<Option<NonZeroU32>>,
    pub tpm: Change<Option<NonZeroU64>>,
    pub budgets: Change<Vec<KeyBudget>>,
    pub stream_continuation: Change<bool>,
}

impl ApiKeyChange {
    /// Whether the update changes nothing.
    pub fn is_empty(&self) -> bool {
        self.name.is_keep()
            && self.expires_at.is_keep()
            && self.allowed_models.is_keep()
            && self.rpm.is_keep()
            && self.tpm.is_keep()
            && self.budgets.is_keep()
            && self.stream_continuation.is_keep()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn strings(items: &[&str]) -> Vec<String> {
        items.iter().map(|s| (*s).to_owned()).collect()
    }

    fn budgets(items: &[(&str, &str)]) -> Result<Vec<KeyBudget>, ListInvalid> {
        let raw: Vec<(String, String)> = items
            .iter()
            .map(|(w, l)| ((*w).to_owned(), (*l).to_owned()))
            .collect();
        parse_budgets(&raw)
    }

    #[test]
    fn allow_lists_are_deduplicated_and_bounded() {
        let list = AllowedModels::parse(strings(&["llama-3", "LLAMA-3", "0xAbC"])).unwrap();
        assert_eq!(list.as_slice(), ["llama-3", "0xAbC"]);
        assert_eq!(
            AllowedModels::parse(vec![]).unwrap_err().invalid.kind,
            "too_short"
        );
        let many = (0..=MAX_ALLOWED_MODELS).map(|i| format!("m{i}")).collect();
        assert_eq!(
            AllowedModels::parse(many).unwrap_err().invalid.kind,
            "too_long"
        );
        let blank = AllowedModels::parse(strings(&["ok", ""])).unwrap_err();
        assert_eq!(blank.index, Some(1));
        let long = AllowedModels::parse(vec!["x".repeat(MAX_MODEL_REF_CHARS + 1)]).unwrap_err();
        assert_eq!(long.index, Some(0));
        assert!(AllowedModels::parse(strings(&["a\0b"])).is_err());
    }

    #[test]
    fn a_model_matches_by_name_or_id_ignoring_case() {
        let list = AllowedModels::parse(strings(&["Llama-3", "0xabc"])).unwrap();
        assert!(list.allows("llama-3", "0x1"));
        assert!(list.allows("other", "0xABC"));
        assert!(!list.allows("mistral", "0x2"));
        // A model the catalogue no longer names is matched by id only.
        assert!(!list.allows("", "0x2"));
        let open = KeyPolicy::default();
        assert!(open.allows_model("anything", "0x9"));
        let closed = KeyPolicy {
            allowed_models: Some(list),
            ..KeyPolicy::default()
        };
        assert!(!closed.allows_model("anything", "0x9"));
    }

    #[test]
    fn windows_are_a_number_and_a_unit_from_a_minute_to_366_days() {
        assert_eq!(
            parse_budget_window("15m").unwrap(),
            Duration::from_secs(900)
        );
        assert_eq!(
            parse_budget_window("1h").unwrap(),
            Duration::from_secs(3_600)
        );
        assert_eq!(
            parse_budget_window("30d").unwrap(),
            Duration::from_secs(2_592_000)
        );
        assert_eq!(parse_budget_window("60s").unwrap(), MIN_BUDGET_WINDOW);
        assert_eq!(parse_budget_window("366d").unwrap(), MAX_BUDGET_WINDOW);
        for bad in [
            "", "h", "59s", "367d", "1w", "1.5h", "-1h", "1 h", "01", "3600", "1H",
        ] {
            assert!(parse_budget_window(bad).is_err(), "{bad:?} was accepted");
        }
        assert!(parse_budget_window("99999999999999999999d").is_err());
    }

    #[test]
    fn windows_are_written_in_their_largest_whole_unit() {
        let text = |secs| {
            KeyBudget {
                window: Duration::from_secs(secs),
                limit: Usd::ZERO,
            }
            .window_text()
        };
        assert_eq!(text(3_600), "1h");
        assert_eq!(text(90), "90s");
        assert_eq!(text(5_400), "90m");
        assert_eq!(text(30 * 86_400), "30d");
    }

    #[test]
    fn budgets_need_a_positive_limit_and_distinct_windows() {
        let ok = budgets(&[("1h", "1.5"), ("30d", "30.00")]).unwrap();
        assert_eq!(ok[0].limit, "1.5".parse().unwrap());
        assert_eq!(ok[1].window, Duration::from_secs(30 * 86_400));
        assert!(budgets(&[]).unwrap().is_empty());

        let zero = budgets(&[("1h", "0")]).unwrap_err();
        assert_eq!((zero.index, zero.member), (Some(0), Some("limit_usd")));
        assert!(budgets(&[("1h", "-1")]).is_err());
        assert!(budgets(&[("1h", "1000000000.01")]).is_err());
        assert!(budgets(&[("1h", "abc")]).is_err());

        let same = budgets(&[("1h", "1"), ("60m", "2")]).unwrap_err();
        assert_eq!((same.index, same.member), (Some(1), Some("window")));

        let bad_window = budgets(&[("1h", "1"), ("1y", "2")]).unwrap_err();
        assert_eq!(
            (bad_window.index, bad_window.member),
            (Some(1), Some("window"))
        );

        let five = budgets(&[
            ("1m", "1"),
            ("1h", "1"),
            ("1d", "1"),
            ("7d", "1"),
            ("30d", "1"),
        ]);
        assert_eq!(five.unwrap_err().index, None);
    }

    #[test]
    fn an_expiry_must_be_in_the_future() {
        let now = "2030-01-01T00:00:00Z".parse::<DateTime<Utc>>().unwrap();
        let second = chrono::Duration::seconds(1);
        assert!(check_expires_at(now, now).is_err());
        assert!(check_expires_at(now - second, now).is_err());
        assert_eq!(check_expires_at(now + second, now).unwrap(), now + second);

        let policy = KeyPolicy {
            expires_at: Some(now),
            ..KeyPolicy::default()
        };
        assert!(policy.is_expired_at(now));
        assert!(!policy.is_expired_at(now - second));
        assert!(!KeyPolicy::default().is_expired_at(now));
    }

    #[test]
    fn rates_are_bounded_and_never_zero() {
        assert_eq!(parse_rpm(1).unwrap().get(), 1);
        assert_eq!(parse_rpm(i64::from(MAX_RPM)).unwrap().get(), MAX_RPM);
        for bad in [0, -1, i64::from(MAX_RPM) + 1, i64::MAX] {
            assert!(parse_rpm(bad).is_err(), "rpm {bad}");
        }
        assert_eq!(parse_tpm(5).unwrap().get(), 5);
        for bad in [0, -5, MAX_TPM as i64 + 1] {
            assert!(parse_tpm(bad).is_err(), "tpm {bad}");
        }
    }
}
