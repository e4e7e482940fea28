use anyhow::{Context, anyhow};
use async_trait::async_trait;
use chrono::NaiveDateTime;
use diesel::prelude::*;
use morpheus_domain::ports::UsageRepository;
use morpheus_domain::{
    ApiKeyId, ModelId, SessionId, TokenUsage, UsageOutcome, UsageRecord, UsageSource, UserId,
};

use crate::connection::{AnyConnection, on_each_backend};
use crate::database::Database;
use crate::schema::{usage_records, users};

#[derive(Queryable, Selectable)]
#[diesel(table_name = usage_records)]
struct UsageRow {
    user_id: i64,
    api_key_id: i64,
    model_id: Option<String>,
    session_id: Option<String>,
    prompt_tokens: Option<i32>,
    completion_tokens: Option<i32>,
    outcome: String,
    status: i32,
    stream: bool,
    latency_ms: i32,
    created_at: NaiveDateTime,
    usage_source: Option<String>,
    upstream: Option<String>,
}

/// `None` binds NULL rather than `DEFAULT`: SQLite has no `DEFAULT` keyword, so with it diesel
/// would insert a batch one statement per row.
#[derive(Insertable)]
#[diesel(table_name = usage_records, treat_none_as_default_value = false)]
struct NewUsageRow {
    user_id: i64,
    api_key_id: i64,
    model_id: Option<String>,
    session_id: Option<String>,
    prompt_tokens: Option<i32>,
    completion_tokens: Option<i32>,
    outcome: String,
    status: i32,
    stream: bool,
    latency_ms: i32,
    created_at: NaiveDateTime,
    usage_source: Option<String>,
    upstream: Option<String>,
}

/// How many values one row of `NewUsageRow` binds.
const COLUMNS: usize = 13;

/// Rows per `INSERT`: SQLite (3.32 and later; ours is bundled) takes at most 32,766 bound
/// values in one statement, PostgreSQL 65,535.
const ROWS_PER_INSERT: usize = 32_766 / COLUMNS;

/// Counts beyond `i32::MAX` cannot be stored; clamping keeps the record rather than failing a
/// whole batch over one absurd value.
fn saturating_i32(value: u32) -> i32 {
    i32::try_from(value).unwrap_or(i32::MAX)
}

impl From<UsageRecord> for NewUsageRow {
    fn from(record: UsageRecord) -> Self {
        NewUsageRow {
            user_id: record.user_id.0,
            api_key_id: record.api_key_id.0,
            model_id: record.model_id.map(|model| model.as_str().to_owned()),
            session_id: record.session_id.map(|session| session.as_str().to_owned()),
            prompt_tokens: record
                .usage
                .map(|usage| saturating_i32(usage.prompt_tokens)),
            completion_tokens: record
                .usage
                .map(|usage| saturating_i32(usage.completion_tokens)),
            outcome: record.outcome.as_str().to_owned(),
            status: i32::from(record.status),
            stream: record.stream,
            latency_ms: saturating_i32(record.latency_ms),
            created_at: record.created_at.naive_utc(),
            usage_source: record.usage_source.map(|s| s.as_str().to_owned()),
            upstream: record.upstream,
        }
    }
}

impl TryFrom<UsageRow> for UsageRecord {
    type Error = anyhow::Error;

    fn try_from(row: UsageRow) -> anyhow::Result<Self> {
        // Everything here was written from valid values; a failure means a hand-edited table.
        let count = |value: i32| u32::try_from(value).context("stored count is negative");
        let usage = match (row.prompt_tokens, row.completion_tokens) {
            (Some(prompt), Some(completion)) => Some(TokenUsage {
                prompt_tokens: count(prompt)?,
                completion_tokens: count(completion)?,
            }),
            (None, None) => None,
            _ => return Err(anyhow!("stored usage has only one of its token counts")),
        };
        Ok(UsageRecord {
            user_id: UserId(row.user_id),
            api_key_id: ApiKeyId(row.api_key_id),
            model_id: row
                .model_id
                .map(|model| ModelId::parse(&model))
                .transpose()
                .map_err(|_| anyhow!("stored model id of a usage record is malformed"))?,
            session_id: row
                .session_id
                .map(|session| SessionId::parse(&session))
                .transpose()
                .map_err(|_| anyhow!("stored session id of a usage record is malformed"))?,
            upstream: row.upstream,
            usage,
            usage_source: row
                .usage_source
                .map(|raw| {
                    UsageSource::parse(&raw)
                        .with_context(|| format!("unknown stored usage source {raw:?}"))
                })
                .transpose()?,
            outcome: UsageOutcome::parse(&row.outcome)
                .with_context(|| format!("unknown stored usage outcome {:?}", row.outcome))?,
            status: u16::try_from(row.status).context("stored HTTP status is out of range")?,
            stream: row.stream,
            latency_ms: count(row.latency_ms)?,
            created_at: row.created_at.and_utc(),
        })
    }
}

/// A record written after its account was deleted (a request that was still running) goes
/// under a pseudonym, as the account's other records did. The users still there are locked
/// (PostgreSQL) until the batch commits: a deletion waits, and then pseudonymises these rows
/// with the rest.
fn pseudonymise_deleted_users(
    conn: &mut AnyConnection,
    rows: &mut [NewUsageRow],
) -> QueryResult<()> {
    let mut ids: Vec<i64> = rows
        .iter()
        .map(|r| r.user_id)
        .filter(|id| *id > 0)
        .collect();
    ids.sort_unstable();
    ids.dedup();
    let existing: Vec<i64> = match conn {
        AnyConnection::Postgresql(pg) => users::table
            .filter(users::id.eq_any(&ids))
            .select(users::id)
            .for_share()
            .load(pg)?,
        AnyConnection::Sqlite(sqlite) => users::table
            .filter(users::id.eq_any(&ids))
            .select(users::id)
            .load(sqlite)?,
    };
    for gone in ids.into_iter().filter(|id| !existing.contains(id)) {
        let pseudonym = UserId::pseudonym().0;
        for row in rows.iter_mut().filter(|r| r.user_id == gone) {
            row.user_id = pseudonym;
        }
    }
    Ok(())
}

#[async_trait]
impl UsageRepository for Database {
    #[tracing::instrument(skip_all, fields(records = records.len()))]
    async fn insert_usage(&self, records: Vec<UsageRecord>) -> anyhow::Result<()> {
        if records.is_empty() {
            return Ok(());
        }
        let mut rows: Vec<NewUsageRow> = records.into_iter().map(NewUsageRow::from).collect();
        self.run(move |conn| {
            // One transaction: a batch is stored whole or not at all, so a failed one can be
            // retried as it is.
            conn.write_transaction(|c| {
                pseudonymise_deleted_users(c, &mut rows)?;
                for chunk in rows.chunks(ROWS_PER_INSERT) {
                    // The multi-backend has no multi-row insert; both databases do.
                    on_each_backend!(c, c => diesel::insert_into(usage_records::table)
                        .values(chunk)
                        .execute(c))?;
                }
                Ok::<_, diesel::result::Error>(())
            })
            .context("storing usage records")
        })
        .await
    }

    #[tracing::instrument(skip_all, fields(user_id = %user))]
    async fn list_usage(&self, user: UserId, limit: u32) -> anyhow::Result<Vec<UsageRecord>> {
        self.run(move |conn| {
            usage_records::table
                .filter(usage_records::user_id.eq(user.0))
                // The id (rising with each insert) orders records of the same instant.
                .order((usage_records::created_at.desc(), usage_records::id.desc()))
                .limit(i64::from(limit))
                .select(UsageRow::as_select())
                .load(conn)
                .context("listing usage records")?
                .into_iter()
                .map(UsageRecord::try_from)
                .collect()
        })
        .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_beyond_the_column_are_clamped() {
        assert_eq!(saturating_i32(0), 0);
        assert_eq!(saturating_i32(i32::MAX as u32), i32::MAX);
        assert_eq!(saturating_i32(u32::MAX), i32::MAX);
    }

    #[test]
    fn a_batch_is_one_statement_on_sqlite() {
        let row = || NewUsageRow {
            user_id: 1,
            api_key_id: 2,
            model_id: None,
            session_id: None,
            prompt_tokens: None,
            completion_tokens: None,
            outcome: UsageOutcome::Failed.as_str().to_owned(),
            status: 500,
            stream: false,
            latency_ms: 3,
            created_at: chrono::Utc::now().naive_utc(),
            usage_source: None,
            upstream: None,
        };
        let rows = [row(), row(), row()];
        let query = diesel::insert_into(usage_records::table).values(&rows[..]);
        let sql = diesel::debug_query::<diesel::sqlite::Sqlite, _>(&query).to_string();
        // With a DEFAULT for `None`, diesel would run a transaction of one INSERT per row.
        assert_eq!(sql.matches("INSERT").count(), 1, "{sql}");
        assert_eq!(sql.matches("), (").count(), 2, "{sql}");
        assert_eq!(sql.matches('?').count(), 3 * COLUMNS, "{sql}");
    }
}
