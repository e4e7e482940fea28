//! The credit ledger and the balance rows it keeps in step.
//!
//! Concurrency: a hold is one conditional `UPDATE … WHERE posted - held >= amount` of the
//! user's balance row. PostgreSQL re-checks the condition on the row it locked (so two holds
//! can never both take the last credit); SQLite runs one writer at a time. Settling or voiding
//! first moves the hold out of `pending` with a conditional update, so a hold is resolved
//! once even when the reconciliation and its own request race.

use anyhow::{Context, anyhow};
use async_trait::async_trait;
use chrono::{DateTime, NaiveDate, NaiveDateTime, Utc};
use diesel::prelude::*;
use morpheus_domain::ports::{
    Charged, CreditsRepository, HoldOutcome, LeaseCharge, LeaseFlush, LeaseOutcome, LeaseTerms,
    LedgerFilter, NewHold, NewPosting, PostingOutcome, Settlement,
};
use morpheus_domain::{
    ApiKeyId, Balance, LedgerEntry, LedgerEntryId, LedgerEntryType, LedgerStatus, ModelPrice,
    MonthSpending, TokenUsage, Usd, UserId,
};

use crate::connection::{AnyConnection, on_each_backend};
use crate::database::Database;
use crate::schema::{credit_balances, credit_ledger, users};

#[derive(Queryable, Selectable, Insertable)]
#[diesel(table_name = credit_ledger, treat_none_as_default_value = false)]
struct LedgerRow {
    id: String,
    user_id: i64,
    entry_type: String,
    status: String,
    amount: i64,
    held_amount: i64,
    idempotency_key: Option<String>,
    api_key_id: Option<i64>,
    model: Option<String>,
    request_id: Option<String>,
    prompt_tokens: Option<i64>,
    completion_tokens: Option<i64>,
    input_price: Option<i64>,
    output_price: Option<i64>,
    estimated: bool,
    description: Option<String>,
    created_at: NaiveDateTime,
    updated_at: NaiveDateTime,
}

impl LedgerRow {
    fn posted(
        user: UserId,
        entry_type: LedgerEntryType,
        amount: Usd,
        description: Option<String>,
        idempotency_key: Option<String>,
        now: NaiveDateTime,
    ) -> Self {
        Self {
            id: LedgerEntryId::random().to_string(),
            user_id: user.0,
            entry_type: entry_type.as_str().to_owned(),
            status: LedgerStatus::Posted.as_str().to_owned(),
            amount: amount.units(),
            held_amount: 0,
            idempotency_key,
            api_key_id: None,
            model: None,
            request_id: None,
            prompt_tokens: None,
            completion_tokens: None,
            input_price: None,
            output_price: None,
            estimated: false,
            description,
            created_at: now,
            updated_at: now,
        }
    }
}

impl TryFrom<LedgerRow> for LedgerEntry {
    type Error = anyhow::Error;

    fn try_from(row: LedgerRow) -> anyhow::Result<Self> {
        let count = |v: i64| u32::try_from(v).context("stored token count out of range");
        let usage = match (row.prompt_tokens, row.completion_tokens) {
            (Some(p), Some(c)) => Some(TokenUsage {
                prompt_tokens: count(p)?,
                completion_tokens: count(c)?,
            }),
            _ => None,
        };
        let prices = match (row.input_price, row.output_price) {
            (Some(i), Some(o)) => Some(ModelPrice {
                input_per_million: Usd::from_units(i),
                output_per_million: Usd::from_units(o),
            }),
            _ => None,
        };
        Ok(LedgerEntry {
            id: LedgerEntryId(row.id.parse().context("stored ledger id is not a UUID")?),
            user_id: UserId(row.user_id),
            entry_type: LedgerEntryType::parse(&row.entry_type)
                .with_context(|| format!("unknown stored entry type {:?}", row.entry_type))?,
            status: LedgerStatus::parse(&row.status)
                .with_context(|| format!("unknown stored entry status {:?}", row.status))?,
            amount: Usd::from_units(row.amount),
            idempotency_key: row.idempotency_key,
            api_key_id: row.api_key_id.map(ApiKeyId),
            model: row.model,
            request_id: row.request_id,
            usage,
            prices,
            estimated: row.estimated,
            description: row.description,
            created_at: row.created_at.and_utc(),
            updated_at: row.updated_at.and_utc(),
        })
    }
}

#[derive(Insertable)]
#[diesel(table_name = credit_balances)]
struct BalanceRow {
    user_id: i64,
    posted: i64,
    held: i64,
    created_at: NaiveDateTime,
    updated_at: NaiveDateTime,
}

fn now() -> NaiveDateTime {
    Utc::now().naive_utc()
}

/// Gives a user without a balance row one, with the sign-up credit and its ledger entry.
/// `false` when there is no such user.
fn ensure_account(c: &mut AnyConnection, user: UserId, signup_credit: Usd) -> anyhow::Result<bool> {
    let has_row = credit_balances::table
        .find(user.0)
        .count()
        .get_result::<i64>(c)
        .context("looking for a balance row")?
        > 0;
    if has_row {
        return Ok(true);
    }
    let user_exists = users::table
        .find(user.0)
        .count()
        .get_result::<i64>(c)
        .context("looking for the balance's user")?
        > 0;
    if !user_exists {
        return Ok(false);
    }
    let at = now();
    let row = BalanceRow {
        user_id: user.0,
        posted: signup_credit.units(),
        held: 0,
        created_at: at,
        updated_at: at,
    };
    let inserted = on_each_backend!(c, c => diesel::insert_into(credit_balances::table)
        .values(&row)
        .on_conflict_do_nothing()
        .execute(c))
    .context("creating a balance row")?;
    if inserted == 1 && signup_credit != Usd::ZERO {
        let entry = LedgerRow::posted(
            user,
            LedgerEntryType::Adjustment,
            signup_credit,
            Some("Sign-up credit".to_owned()),
            Some(format!("signup_credit:{}", user.0)),
            at,
        );
        diesel::insert_into(credit_ledger::table)
            .values(&entry)
            .execute(c)
            .context("recording the sign-up credit")?;
    }
    Ok(true)
}

/// Holds `amount` of the user's credit if that much is available (`posted - held`), in one
/// conditional update: `false` when it is not (or there is no balance row).
fn set_aside(
    c: &mut AnyConnection,
    user: UserId,
    amount: i64,
    at: NaiveDateTime,
) -> anyhow::Result<bool> {
    let updated = diesel::update(
        credit_balances::table
            .find(user.0)
            .filter((credit_balances::posted - credit_balances::held).ge(amount)),
    )
    .set((
        credit_balances::held.eq(credit_balances::held + amount),
        credit_balances::updated_at.eq(at),
    ))
    .execute(c)
    .context("setting credit aside")?;
    Ok(updated == 1)
}

fn place_hold(c: &mut AnyConnection, hold: &NewHold) -> anyhow::Result<HoldOutcome> {
    let amount = hold.amount.units();
    let at = now();
    let take = |c: &mut AnyConnection| set_aside(c, hold.user, amount, at);
    let mut taken = take(c)?;
    if !taken {
        // No balance row yet (a first request), or not enough credit.
        if !ensure_account(c, hold.user, hold.signup_credit)? {
            return Ok(HoldOutcome::Insufficient {
                available: Usd::ZERO,
            });
        }
        taken = take(c)?;
    }
    if !taken {
        let (posted, held) = credit_balances::table
            .find(hold.user.0)
            .select((credit_balances::posted, credit_balances::held))
            .first::<(i64, i64)>(c)
            .context("reading the balance")?;
        let available = Balance {
            posted: Usd::from_units(posted),
            held: Usd::from_units(held),
        }
        .available();
        return Ok(HoldOutcome::Insufficient { available });
    }
    let row = LedgerRow {
        id: hold.id.to_string(),
        user_id: hold.user.0,
        entry_type: LedgerEntryType::UsageHold.as_str().to_owned(),
        status: LedgerStatus::Pending.as_str().to_owned(),
        amount: -amount,
        held_amount: amount,
        idempotency_key: Some(format!("hold:{}", hold.id)),
        api_key_id: Some(hold.api_key.0),
        model: Some(hold.model.clone()),
        request_id: hold.request_id.clone(),
        prompt_tokens: None,
        completion_tokens: None,
        input_price: None,
        output_price: None,
        estimated: false,
        description: None,
        created_at: at,
        updated_at: at,
    };
    diesel::insert_into(credit_ledger::table)
        .values(&row)
        .execute(c)
        .context("recording a hold")?;
    Ok(HoldOutcome::Held)
}

/// The idempotency key of a lease's entry starts with this (and only a lease's does).
const LEASE_KEY_PREFIX: &str = "lease:";
const LEASE_KEY_PATTERN: &str = "lease:%";

/// A lease if the available credit is at least the terms' minimum (its chunk taken with the
/// same conditional update as a hold, so it never exceeds the credit), else the exact hold.
fn lease_or_hold(
    c: &mut AnyConnection,
    hold: &NewHold,
    terms: LeaseTerms,
) -> anyhow::Result<LeaseOutcome> {
    if !ensure_account(c, hold.user, hold.signup_credit)? {
        return Ok(LeaseOutcome::Insufficient {
            available: Usd::ZERO,
        });
    }
    let (posted, held) = credit_balances::table
        .find(hold.user.0)
        .select((credit_balances::posted, credit_balances::held))
        .first::<(i64, i64)>(c)
        .context("reading the balance to lease")?;
    let available = posted.saturating_sub(held);
    if available >= terms.min_available.units() {
        let chunk = (available / 4).min(terms.max_chunk.units());
        let at = now();
        // Re-checked by the database: a concurrent hold may have taken credit since the read.
        let taken = set_aside(c, hold.user, chunk, at)?;
        if taken && chunk >= hold.amount.units() {
            let row = LedgerRow {
                id: hold.id.to_string(),
                user_id: hold.user.0,
                entry_type: LedgerEntryType::UsageHold.as_str().to_owned(),
                status: LedgerStatus::Pending.as_str().to_owned(),
                amount: -chunk,
                held_amount: chunk,
                idempotency_key: Some(format!("{LEASE_KEY_PREFIX}{}", hold.id)),
                api_key_id: Some(hold.api_key.0),
                model: Some(hold.model.clone()),
                request_id: None,
                prompt_tokens: None,
                completion_tokens: None,
                input_price: None,
                output_price: None,
                estimated: false,
                description: Some("credit lease".to_owned()),
                created_at: at,
                updated_at: at,
            };
            diesel::insert_into(credit_ledger::table)
                .values(&row)
                .execute(c)
                .context("recording a lease")?;
            return Ok(LeaseOutcome::Leased {
                amount: Usd::from_units(chunk),
            });
        }
        if taken {
            // Cannot happen with sane terms (a chunk smaller than the request): undone.
            diesel::update(credit_balances::table.find(hold.user.0))
                .set(credit_balances::held.eq(credit_balances::held - chunk))
                .execute(c)
                .context("undoing a lease")?;
        }
    }
    Ok(match place_hold(c, hold)? {
        HoldOutcome::Held => LeaseOutcome::Held,
        HoldOutcome::Insufficient { available } => LeaseOutcome::Insufficient { available },
    })
}

fn charge_row(user: UserId, charge: &LeaseCharge, at: NaiveDateTime) -> LedgerRow {
    let s = &charge.settlement;
    let capped = charge.charged < s.cost;
    LedgerRow {
        id: charge.id.to_string(),
        user_id: user.0,
        entry_type: LedgerEntryType::UsageCharge.as_str().to_owned(),
        status: LedgerStatus::Posted.as_str().to_owned(),
        amount: -charge.charged.units(),
        held_amount: 0,
        idempotency_key: Some(format!("hold:{}", charge.id)),
        api_key_id: Some(charge.api_key.0),
        model: Some(charge.model.clone()),
        request_id: charge.request_id.clone(),
        prompt_tokens: Some(i64::from(s.usage.prompt_tokens)),
        completion_tokens: Some(i64::from(s.usage.completion_tokens)),
        input_price: Some(s.prices.input_per_million.units()),
        output_price: Some(s.prices.output_per_million.units()),
        estimated: s.estimated,
        description: capped.then(|| format!("cost {} USD, capped at the credit left", s.cost)),
        created_at: at,
        updated_at: at,
    }
}

fn flush_lease(c: &mut AnyConnection, f: &mut LeaseFlush) -> anyhow::Result<bool> {
    let at = now();
    let id = f.lease.to_string();
    let sum: i64 = f.charges.iter().map(|ch| ch.charged.units()).sum();
    let taken = sum + f.release.units();
    let still_pending = diesel::update(
        credit_ledger::table
            .find(&id)
            .filter(credit_ledger::status.eq(LedgerStatus::Pending.as_str()))
            .filter(credit_ledger::held_amount.ge(taken)),
    )
    .set((
        credit_ledger::held_amount.eq(credit_ledger::held_amount - taken),
        credit_ledger::amount.eq(credit_ledger::amount + taken),
        credit_ledger::updated_at.eq(at),
    ))
    .execute(c)
    .context("taking charges off a lease")?
        == 1;
    if still_pending {
        diesel::update(credit_balances::table.find(f.user.0))
            .set((
                credit_balances::posted.eq(credit_balances::posted - sum),
                credit_balances::held.eq(credit_balances::held - taken),
                credit_balances::updated_at.eq(at),
            ))
            .execute(c)
            .context("charging a lease's requests")?;
        if f.close {
            // What is left held by the lease (zero when the books in memory were right).
            if let Some((_, left)) = claim_pending(c, f.lease, LedgerStatus::Voided, at)? {
                if left != 0 {
                    tracing::warn!(lease = %f.lease, left, "a returned lease still held credit");
                }
                diesel::update(credit_ledger::table.find(&id))
                    .set(credit_ledger::description.eq(Some("credit lease returned")))
                    .execute(c)
                    .context("noting a returned lease")?;
            }
        }
    } else {
        // The lease was voided (reconciled): its hold is gone, so each charge takes what the
        // balance has free, never below zero.
        let (posted, held) = credit_balances::table
            .find(f.user.0)
            .select((credit_balances::posted, credit_balances::held))
            .first::<(i64, i64)>(c)
            .context("reading the balance to charge")?;
        let mut payable = posted.saturating_sub(held).max(0);
        for charge in &mut f.charges {
            let paid = charge.charged.units().min(payable);
            payable -= paid;
            charge.charged = Usd::from_units(paid);
        }
    }
    let charged: i64 = f.charges.iter().map(|ch| ch.charged.units()).sum();
    if !still_pending {
        diesel::update(credit_balances::table.find(f.user.0))
            .set(credit_balances::posted.eq(credit_balances::posted - charged))
            .execute(c)
            .context("charging a voided lease's requests")?;
    }
    for charge in &f.charges {
        diesel::insert_into(credit_ledger::table)
            .values(&charge_row(f.user, charge, at))
            .execute(c)
            .context("recording a lease's charge")?;
    }
    Ok(still_pending)
}

/// Moves a pending hold to `status`; the hold's user and amount set aside when it was pending.
fn claim_pending(
    c: &mut AnyConnection,
    id: LedgerEntryId,
    status: LedgerStatus,
    at: NaiveDateTime,
) -> anyhow::Result<Option<(i64, i64)>> {
    let id = id.to_string();
    let claimed = diesel::update(
        credit_ledger::table
            .find(&id)
            .filter(credit_ledger::status.eq(LedgerStatus::Pending.as_str())),
    )
    .set((
        credit_ledger::status.eq(status.as_str()),
        credit_ledger::updated_at.eq(at),
    ))
    .execute(c)
    .context("resolving a hold")?;
    if claimed == 0 {
        return Ok(None);
    }
    let (user, held) = credit_ledger::table
        .find(&id)
        .select((credit_ledger::user_id, credit_ledger::held_amount))
        .first::<(i64, i64)>(c)
        .context("reading a resolved hold")?;
    // Locks the balance row (PostgreSQL) until the transaction ends: the reads below see the
    // row as this transaction leaves it.
    diesel::update(credit_balances::table.find(user))
        .set((
            credit_balances::held.eq(credit_balances::held - held),
            credit_balances::updated_at.eq(at),
        ))
        .execute(c)
        .context("releasing a hold's credit")?;
    Ok(Some((user, held)))
}

fn settle_hold(
    c: &mut AnyConnection,
    id: LedgerEntryId,
    s: &Settlement,
) -> anyhow::Result<Option<Charged>> {
    let at = now();
    let Some((user, _held)) = claim_pending(c, id, LedgerStatus::Posted, at)? else {
        return Ok(None);
    };
    let (posted, held) = credit_balances::table
        .find(user)
        .select((credit_balances::posted, credit_balances::held))
        .first::<(i64, i64)>(c)
        .context("reading the balance to charge")?;
    // What the balance can pay without going below zero available: the hold itself (released
    // above) and whatever else is free.
    let payable = posted.saturating_sub(held).max(0);
    let charged = s.cost.units().min(payable.max(0));
    let capped = charged < s.cost.units();
    diesel::update(credit_balances::table.find(user))
        .set(credit_balances::posted.eq(credit_balances::posted - charged))
        .execute(c)
        .context("charging the balance")?;
    let description = capped.then(|| {
        format!(
            "cost {} USD, capped at the credit left",
            Usd::from_units(s.cost.units())
        )
    });
    diesel::update(credit_ledger::table.find(id.to_string()))
        .set((
            credit_ledger::entry_type.eq(LedgerEntryType::UsageCharge.as_str()),
            credit_ledger::amount.eq(-charged),
            credit_ledger::prompt_tokens.eq(Some(i64::from(s.usage.prompt_tokens))),
            credit_ledger::completion_tokens.eq(Some(i64::from(s.usage.completion_tokens))),
            credit_ledger::input_price.eq(Some(s.prices.input_per_million.units())),
            credit_ledger::output_price.eq(Some(s.prices.output_per_million.units())),
            credit_ledger::estimated.eq(s.estimated),
            credit_ledger::description.eq(description),
        ))
        .execute(c)
        .context("recording a charge")?;
    Ok(Some(Charged {
        charged: Usd::from_units(charged),
        capped,
    }))
}

fn post(c: &mut AnyConnection, p: &NewPosting) -> anyhow::Result<PostingOutcome> {
    if let Some(key) = &p.idempotency_key
        && let Some(existing) = credit_ledger::table
            .filter(credit_ledger::idempotency_key.eq(key))
            .select(LedgerRow::as_select())
            .first(c)
            .optional()
            .context("looking for an entry with the same idempotency key")?
    {
        return Ok(PostingOutcome::Duplicate(existing.try_into()?));
    }
    if !ensure_account(c, p.user, p.signup_credit)? {
        return Ok(PostingOutcome::NoUser);
    }
    let at = now();
    let row = LedgerRow::posted(
        p.user,
        p.entry_type,
        p.amount,
        p.description.clone(),
        p.idempotency_key.clone(),
        at,
    );
    diesel::insert_into(credit_ledger::table)
        .values(&row)
        .execute(c)
        .context("recording a posting")?;
    diesel::update(credit_balances::table.find(p.user.0))
        .set((
            credit_balances::posted.eq(credit_balances::posted + p.amount.units()),
            credit_balances::updated_at.eq(at),
        ))
        .execute(c)
        .context("adding a posting to the balance")?;
    Ok(PostingOutcome::Posted(row.try_into()?))
}

fn month_start(year: i32, month: u32) -> Option<NaiveDateTime> {
    NaiveDate::from_ymd_opt(year, month, 1)?.and_hms_opt(0, 0, 0)
}

#[async_trait]
impl CreditsRepository for Database {
    #[tracing::instrument(skip_all, fields(user = hold.user.0))]
    async fn place_hold(&self, hold: NewHold) -> anyhow::Result<HoldOutcome> {
        self.run(move |conn| conn.write_transaction(|c| place_hold(c, &hold)))
            .await
    }

    #[tracing::instrument(skip_all, fields(hold = %id))]
    async fn settle_hold(
        &self,
        id: LedgerEntryId,
        settlement: Settlement,
    ) -> anyhow::Result<Option<Charged>> {
        self.run(move |conn| conn.write_transaction(|c| settle_hold(c, id, &settlement)))
            .await
    }

    #[tracing::instrument(skip_all, fields(user = hold.user.0))]
    async fn lease_or_hold(
        &self,
        hold: NewHold,
        terms: LeaseTerms,
    ) -> anyhow::Result<LeaseOutcome> {
        self.run(move |conn| conn.write_transaction(|c| lease_or_hold(c, &hold, terms)))
            .await
    }

    #[tracing::instrument(skip_all, fields(lease = %flush.lease, charges = flush.charges.len()))]
    async fn flush_lease(&self, flush: LeaseFlush) -> anyhow::Result<bool> {
        self.run(move |conn| {
            let mut flush = flush;
            conn.write_transaction(|c| flush_lease(c, &mut flush))
        })
        .await
    }

    #[tracing::instrument(skip_all, fields(hold = %id))]
    async fn void_hold(&self, id: LedgerEntryId, reason: &str) -> anyhow::Result<bool> {
        let reason = reason.to_owned();
        self.run(move |conn| {
            conn.write_transaction(|c| -> anyhow::Result<bool> {
                let at = now();
                if claim_pending(c, id, LedgerStatus::Voided, at)?.is_none() {
                    return Ok(false);
                }
                diesel::update(credit_ledger::table.find(id.to_string()))
                    .set(credit_ledger::description.eq(Some(reason)))
                    .execute(c)
                    .context("noting why a hold was voided")?;
                Ok(true)
            })
        })
        .await
    }

    #[tracing::instrument(skip_all, fields(user = posting.user.0))]
    async fn post(&self, posting: NewPosting) -> anyhow::Result<PostingOutcome> {
        self.run(move |conn| conn.write_transaction(|c| post(c, &posting)))
            .await
    }

    #[tracing::instrument(skip_all, fields(user = user.0))]
    async fn balance(&self, user: UserId, signup_credit: Usd) -> anyhow::Result<Option<Balance>> {
        self.run(move |conn| {
            let read = |c: &mut AnyConnection| {
                credit_balances::table
                    .find(user.0)
                    .select((credit_balances::posted, credit_balances::held))
                    .first::<(i64, i64)>(c)
                    .optional()
                    .context("reading a balance")
            };
            let row = match read(conn)? {
                Some(row) => Some(row),
                None => conn.write_transaction(|c| -> anyhow::Result<_> {
                    if ensure_account(c, user, signup_credit)? {
                        read(c)
                    } else {
                        Ok(None)
                    }
                })?,
            };
            Ok(row.map(|(posted, held)| Balance {
                posted: Usd::from_units(posted),
                held: Usd::from_units(held),
            }))
        })
        .await
    }

    #[tracing::instrument(skip_all, fields(user = user.0))]
    async fn ledger(
        &self,
        user: UserId,
        filter: LedgerFilter,
        limit: u32,
        offset: u64,
    ) -> anyhow::Result<(Vec<LedgerEntry>, u64)> {
        self.run(move |conn| {
            let query = || {
                // A credit lease is a replica's reservation, not a transaction of the user's:
                // its requests' charges are listed, and what it holds shows in the balance.
                let mut q = credit_ledger::table
                    .filter(credit_ledger::user_id.eq(user.0))
                    .filter(
                        credit_ledger::idempotency_key
                            .is_null()
                            .or(credit_ledger::idempotency_key.not_like(LEASE_KEY_PATTERN)),
                    )
                    .into_boxed();
                if let Some(t) = filter.entry_type {
                    q = q.filter(credit_ledger::entry_type.eq(t.as_str()));
                }
                if let Some(model) = &filter.model {
                    q = q.filter(credit_ledger::model.eq(model.clone()));
                }
                if let Some(from) = filter.from {
                    q = q.filter(credit_ledger::created_at.ge(from.naive_utc()));
                }
                if let Some(to) = filter.to {
                    q = q.filter(credit_ledger::created_at.lt(to.naive_utc()));
                }
                q
            };
            let total: i64 = query()
                .count()
                .get_result(conn)
                .context("counting ledger entries")?;
            let rows: Vec<LedgerRow> = query()
                .order((credit_ledger::created_at.desc(), credit_ledger::id.desc()))
                .limit(i64::from(limit))
                .offset(i64::try_from(offset).unwrap_or(i64::MAX))
                .select(LedgerRow::as_select())
                .load(conn)
                .context("listing ledger entries")?;
            let entries = rows
                .into_iter()
                .map(LedgerEntry::try_from)
                .collect::<anyhow::Result<Vec<_>>>()?;
            Ok((entries, u64::try_from(total).unwrap_or(0)))
        })
        .await
    }

    #[tracing::instrument(skip_all, fields(user = user.0, year))]
    async fn spending(
        &self,
        user: UserId,
        year: i32,
        net: bool,
    ) -> anyhow::Result<Vec<MonthSpending>> {
        let mut types = vec![LedgerEntryType::UsageCharge.as_str()];
        if net {
            types.push(LedgerEntryType::Refund.as_str());
        }
        self.run(move |conn| {
            let mut months = Vec::new();
            // One indexed range per month (user, created_at): the same query on both
            // databases, and a year's ledger is never read row by row.
            for month in 1..=12 {
                let (Some(start), Some(end)) = (
                    month_start(year, month),
                    if month == 12 {
                        month_start(year + 1, 1)
                    } else {
                        month_start(year, month + 1)
                    },
                ) else {
                    return Err(anyhow!("{year} is not a year the ledger can hold"));
                };
                let (sum, count): (Option<i64>, i64) = credit_ledger::table
                    .filter(credit_ledger::user_id.eq(user.0))
                    .filter(credit_ledger::status.eq(LedgerStatus::Posted.as_str()))
                    .filter(credit_ledger::entry_type.eq_any(&types))
                    .filter(credit_ledger::created_at.ge(start))
                    .filter(credit_ledger::created_at.lt(end))
                    .select((
                        // SUM of a BIGINT is NUMERIC on PostgreSQL: cast it back.
                        diesel::dsl::sql::<diesel::sql_types::Nullable<diesel::sql_types::BigInt>>(
                            "CAST(SUM(amount) AS BIGINT)",
                        ),
                        diesel::dsl::count_star(),
                    ))
                    .first(conn)
                    .context("summing a month's spending")?;
                if count > 0 {
                    months.push(MonthSpending {
                        year,
                        month,
                        // Charges are negative entries; spending is shown positive.
                        amount: Usd::from_units(sum.unwrap_or(0).saturating_neg()),
                        transaction_count: u64::try_from(count).unwrap_or(0),
                    });
                }
            }
            Ok(months)
        })
        .await
    }

    #[tracing::instrument(skip_all)]
    async fn stale_holds(
        &self,
        before: DateTime<Utc>,
        limit: u32,
    ) -> anyhow::Result<Vec<LedgerEntryId>> {
        self.run(move |conn| {
            let ids: Vec<String> = credit_ledger::table
                .filter(credit_ledger::status.eq(LedgerStatus::Pending.as_str()))
                .filter(credit_ledger::created_at.lt(before.naive_utc()))
                .order(credit_ledger::created_at.asc())
                .limit(i64::from(limit))
                .select(credit_ledger::id)
                .load(conn)
                .context("listing stale holds")?;
            ids.into_iter()
                .map(|id| {
                    id.parse()
                        .map(LedgerEntryId)
                        .context("stored ledger id is not a UUID")
                })
                .collect()
        })
        .await
    }
}
