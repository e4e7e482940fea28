pub mod adjust_credits;
pub mod get_balance;
pub mod get_spending;
pub mod get_usage;
pub mod list_transactions;

use chrono::{DateTime, Utc};

use crate::error::{ApiError, FieldError, LocItem};

/// `limit` (1–100, default 50) and `offset` (0–1,000,000) of the ledger listings.
fn paging(limit: Option<i64>, offset: Option<i64>) -> Result<(u32, u64), ApiError> {
    let out_of = |name: &str, min: i64, max: i64| {
        ApiError::validation(FieldError::new(
            vec![LocItem::from("query"), LocItem::from(name)],
            "value_error",
            format!("Input should be from {min} to {max}"),
        ))
    };
    let limit = limit.unwrap_or(50);
    let offset = offset.unwrap_or(0);
    let limit = u32::try_from(limit)
        .ok()
        .filter(|l| (1..=100).contains(l))
        .ok_or_else(|| out_of("limit", 1, 100))?;
    let offset = u64::try_from(offset)
        .ok()
        .filter(|o| *o <= 1_000_000)
        .ok_or_else(|| out_of("offset", 0, 1_000_000))?;
    Ok((limit, offset))
}

/// A listing's time bounds: from (inclusive), to (exclusive).
type Period = (Option<DateTime<Utc>>, Option<DateTime<Utc>>);

/// `from` must come before `to`.
fn period(from: Option<DateTime<Utc>>, to: Option<DateTime<Utc>>) -> Result<Period, ApiError> {
    if let (Some(from), Some(to)) = (from, to)
        && from >= to
    {
        return Err(ApiError::validation(FieldError::new(
            vec![LocItem::from("query"), LocItem::from("to")],
            "value_error",
            "to must be later than from",
        )));
    }
    Ok((from, to))
}

fn page_of(
    entries: Vec<morpheus_domain::LedgerEntry>,
    total: u64,
    limit: u32,
    offset: u64,
) -> crate::dto::LedgerPageResponse {
    let shown = u64::try_from(entries.len()).unwrap_or(u64::MAX);
    crate::dto::LedgerPageResponse {
        items: entries.into_iter().map(Into::into).collect(),
        total,
        limit,
        offset,
        has_more: offset.saturating_add(shown) < total,
    }
}
