use anyhow::Context;
use async_trait::async_trait;
use chrono::{DateTime, NaiveDateTime, Utc};
use diesel::prelude::*;
use morpheus_domain::ports::{ApiKeyLimits, ApiKeyRepository, InsertApiKeyError};
use morpheus_domain::{
    AllowedModels, ApiKey, ApiKeyChange, ApiKeyDigest, ApiKeyId, Change, KeyBudget, KeyPolicy,
    KeyPrefix, NewApiKey, Page, SessionState, StoredApiKey, Usd, UserId,
};

use super::is_unique_violation;
use crate::connection::AnyConnection;
use crate::database::Database;
use crate::schema::{api_keys, sessions, users};

#[derive(Queryable, Selectable)]
#[diesel(table_name = api_keys)]
struct ApiKeyRow {
    id: i64,
    user_id: i64,
    key_prefix: String,
    key_digest: Vec<u8>,
    name: Option<String>,
    is_active: bool,
    created_at: NaiveDateTime,
    last_used_at: Option<NaiveDateTime>,
    expires_at: Option<NaiveDateTime>,
    allowed_models: Option<String>,
    rpm: Option<i64>,
    tpm: Option<i64>,
    budgets: Option<String>,
    is_default: bool,
    stream_continuation: bool,
}

#[derive(Insertable)]
#[diesel(table_name = api_keys)]
struct NewApiKeyRow {
    id: i64,
    user_id: i64,
    key_prefix: String,
    key_digest: Vec<u8>,
    name: Option<String>,
    is_active: bool,
    created_at: NaiveDateTime,
    expires_at: Option<NaiveDateTime>,
    allowed_models: Option<String>,
    rpm: Option<i64>,
    tpm: Option<i64>,
    budgets: Option<String>,
    stream_continuation: bool,
}

/// What a PATCH changes; a `None` field is left as it is, `Some(None)` sets NULL.
#[derive(AsChangeset)]
#[diesel(table_name = api_keys)]
struct ApiKeyChangeset {
    name: Option<Option<String>>,
    expires_at: Option<Option<NaiveDateTime>>,
    allowed_models: Option<Option<String>>,
    rpm: Option<Option<i64>>,
    tpm: Option<Option<i64>>,
    budgets: Option<Option<String>>,
    stream_continuation: Option<bool>,
}

/// A budget as the `budgets` column holds it: the window in seconds, the limit in Usd units.
#[derive(serde::Serialize, serde::Deserialize)]
struct BudgetColumn {
    window_seconds: u64,
    limit_units: i64,
}

fn allowed_models_column(allowed: &AllowedModels) -> String {
    serde_json::to_string(allowed.as_slice()).unwrap_or_else(|_| "[]".to_owned())
}

/// NULL for no budget.
fn budgets_column(budgets: &[KeyBudget]) -> Option<String> {
    if budgets.is_empty() {
        return None;
    }
    let columns: Vec<BudgetColumn> = budgets
        .iter()
        .map(|b| BudgetColumn {
            window_seconds: b.window.as_secs(),
            limit_units: b.limit.units(),
        })
        .collect();
    serde_json::to_string(&columns).ok()
}

fn change<T, C>(change: Change<T>, column: impl FnOnce(T) -> C) -> Option<C> {
    match change {
        Change::Keep => None,
        Change::Set(value) => Some(column(value)),
    }
}

impl From<ApiKeyChange> for ApiKeyChangeset {
    fn from(c: ApiKeyChange) -> Self {
        Self {
            name: change(c.name, |v| v),
            expires_at: change(c.expires_at, |v| v.map(|at| at.naive_utc())),
            allowed_models: change(c.allowed_models, |v| v.as_ref().map(allowed_models_column)),
            rpm: change(c.rpm, |v| v.map(|n| i64::from(n.get()))),
            tpm: change(c.tpm, |v| {
                v.map(|n| i64::try_from(n.get()).unwrap_or(i64::MAX))
            }),
            budgets: change(c.budgets, |v| budgets_column(&v)),
            stream_continuation: change(c.stream_continuation, |v| v),
        }
    }
}

impl ApiKeyRow {
    /// The key with what authentication needs besides: its digest and its owner's state.
    fn into_stored(
        mut self,
        owner_active: bool,
        owner_limit_multiplier: i64,
    ) -> anyhow::Result<StoredApiKey> {
        let digest = ApiKeyDigest(std::mem::take(&mut self.key_digest));
        Ok(StoredApiKey {
            key: self.try_into()?,
            digest,
            owner_active,
            owner_limit_multiplier: super::users::multiplier(owner_limit_multiplier),
        })
    }

    /// The policy columns, checked when they were written; a value that does not read back
    /// is an error rather than a key without that limit.
    fn policy(&self) -> anyhow::Result<KeyPolicy> {
        let allowed_models = self
            .allowed_models
            .as_deref()
            .map(serde_json::from_str::<Vec<String>>)
            .transpose()
            .context("reading an API key's allowed_models")?
            .map(AllowedModels::from_trusted);
        let budgets = self
            .budgets
            .as_deref()
            .map(serde_json::from_str::<Vec<BudgetColumn>>)
            .transpose()
            .context("reading an API key's budgets")?
            .unwrap_or_default()
            .into_iter()
            .map(|b| KeyBudget {
                window: std::time::Duration::from_secs(b.window_seconds),
                limit: Usd::from_units(b.limit_units),
            })
            .collect();
        let rpm = self
            .rpm
            .map(|n| u32::try_from(n).ok().and_then(std::num::NonZeroU32::new))
            .map(|n| n.context("an API key's rpm is out of range"))
            .transpose()?;
        let tpm = self
            .tpm
            .map(|n| u64::try_from(n).ok().and_then(std::num::NonZeroU64::new))
            .map(|n| n.context("an API key's tpm is out of range"))
            .transpose()?;
        Ok(KeyPolicy {
            expires_at: self.expires_at.map(|at| at.and_utc()),
            allowed_models,
            rpm,
            tpm,
            budgets,
            stream_continuation: self.stream_continuation,
        })
    }
}

impl TryFrom<ApiKeyRow> for ApiKey {
    type Error = anyhow::Error;

    fn try_from(row: ApiKeyRow) -> anyhow::Result<Self> {
        let policy = row.policy()?;
        Ok(ApiKey {
            id: ApiKeyId(row.id),
            user_id: UserId(row.user_id),
            prefix: KeyPrefix::from_trusted(row.key_prefix),
            name: row.name,
            is_active: row.is_active,
            created_at: row.created_at.and_utc(),
            last_used_at: row.last_used_at.map(|at| at.and_utc()),
            policy,
            is_default: row.is_default,
        })
    }
}

impl From<NewApiKey> for NewApiKeyRow {
    fn from(key: NewApiKey) -> Self {
        let policy = key.policy;
        NewApiKeyRow {
            id: key.id.0,
            user_id: key.user_id.0,
            key_prefix: key.prefix.as_str().to_owned(),
            key_digest: key.digest.0,
            name: key.name,
            is_active: true,
            created_at: key.created_at.naive_utc(),
            expires_at: policy.expires_at.map(|at| at.naive_utc()),
            allowed_models: policy.allowed_models.as_ref().map(allowed_models_column),
            rpm: policy.rpm.map(|n| i64::from(n.get())),
            tpm: policy
                .tpm
                .map(|n| i64::try_from(n.get()).unwrap_or(i64::MAX)),
            budgets: budgets_column(&policy.budgets),
            stream_continuation: policy.stream_continuation,
        }
    }
}

/// The user's keys that authenticate at `now`: active and not expired.
fn usable_keys(
    user: UserId,
    now: NaiveDateTime,
) -> api_keys::BoxedQuery<'static, <AnyConnection as diesel::Connection>::Backend> {
    api_keys::table
        .filter(api_keys::user_id.eq(user.0))
        .filter(api_keys::is_active.eq(true))
        .filter(
            api_keys::expires_at
                .is_null()
                .or(api_keys::expires_at.gt(now)),
        )
        .into_boxed()
}

/// The first key `query` gives, if any.
fn first_of(
    conn: &mut AnyConnection,
    query: api_keys::BoxedQuery<'static, <AnyConnection as diesel::Connection>::Backend>,
) -> anyhow::Result<Option<ApiKey>> {
    query
        .select(ApiKeyRow::as_select())
        .first(conn)
        .optional()?
        .map(ApiKey::try_from)
        .transpose()
}

fn load_key(conn: &mut AnyConnection, id: i64) -> QueryResult<Option<ApiKeyRow>> {
    api_keys::table
        .find(id)
        .select(ApiKeyRow::as_select())
        .first(conn)
        .optional()
}

/// Why a key was not inserted, inside the transaction (which needs a type that diesel's errors
/// convert into).
enum Refusal {
    LimitReached,
    DailyLimitReached(NaiveDateTime),
    Collision,
    Failed(diesel::result::Error),
}

impl From<diesel::result::Error> for Refusal {
    fn from(error: diesel::result::Error) -> Self {
        Refusal::Failed(error)
    }
}

/// Counts the user's active keys and the keys made in the last 24 hours, and inserts the new
/// one if there is room; run in a write transaction. SQLite's `BEGIN IMMEDIATE` already admits
/// one writer at a time; PostgreSQL needs the user's row locked, or concurrent transactions
/// would each count the same keys.
fn insert_within_limit(
    conn: &mut AnyConnection,
    row: &NewApiKeyRow,
    limits: ApiKeyLimits,
) -> Result<Option<ApiKeyRow>, Refusal> {
    if let AnyConnection::Postgresql(pg) = conn {
        users::table
            .find(row.user_id)
            .select(users::id)
            .for_update()
            .first::<i64>(pg)
            .optional()?;
    }
    let active: i64 = api_keys::table
        .filter(api_keys::user_id.eq(row.user_id))
        .filter(api_keys::is_active.eq(true))
        .count()
        .get_result(conn)?;
    if u64::try_from(active).unwrap_or(0) >= limits.max_active {
        return Err(Refusal::LimitReached);
    }
    if limits.max_created_per_day != u64::MAX {
        // Revoked keys count too: they are rows all the same.
        let since = row.created_at - chrono::Duration::days(1);
        let today: i64 = api_keys::table
            .filter(api_keys::user_id.eq(row.user_id))
            .filter(api_keys::created_at.gt(since))
            .count()
            .get_result(conn)?;
        let today = u64::try_from(today).unwrap_or(0);
        if today >= limits.max_created_per_day {
            // A creation is possible again when enough of them are a day old.
            let freed = i64::try_from(today - limits.max_created_per_day).unwrap_or(0);
            let oldest: NaiveDateTime = api_keys::table
                .filter(api_keys::user_id.eq(row.user_id))
                .filter(api_keys::created_at.gt(since))
                .order(api_keys::created_at.asc())
                .offset(freed)
                .select(api_keys::created_at)
                .first(conn)?;
            return Err(Refusal::DailyLimitReached(
                oldest + chrono::Duration::days(1),
            ));
        }
    }
    match diesel::insert_into(api_keys::table)
        .values(row)
        .execute(conn)
    {
        Ok(_) => {}
        // Id, prefix and digest are all random; whichever clashed, the caller draws a new key.
        Err(error) if is_unique_violation(&error) => return Err(Refusal::Collision),
        Err(error) => return Err(error.into()),
    }
    Ok(load_key(conn, row.id)?)
}

#[async_trait]
impl ApiKeyRepository for Database {
    #[tracing::instrument(skip_all, fields(user_id = %key.user_id, api_key_id = %key.id))]
    async fn insert_api_key(
        &self,
        key: NewApiKey,
        limits: ApiKeyLimits,
    ) -> Result<ApiKey, InsertApiKeyError> {
        let row = NewApiKeyRow::from(key);
        self.run(move |conn| {
            conn.write_transaction(|conn| insert_within_limit(conn, &row, limits))
                .map_err(|refusal| match refusal {
                    Refusal::LimitReached => InsertApiKeyError::LimitReached,
                    Refusal::DailyLimitReached(at) => InsertApiKeyError::DailyLimitReached {
                        retry_at: at.and_utc(),
                    },
                    Refusal::Collision => InsertApiKeyError::Collision,
                    Refusal::Failed(error) => anyhow::Error::new(error)
                        .context("inserting an API key")
                        .into(),
                })?
                .context("a new API key vanished before it could be read back")
                .and_then(ApiKey::try_from)
                .map_err(InsertApiKeyError::from)
        })
        .await
    }

    #[tracing::instrument(skip_all, fields(user_id = %user, api_key_id = %id))]
    async fn update_api_key(
        &self,
        user: UserId,
        id: ApiKeyId,
        change: ApiKeyChange,
    ) -> anyhow::Result<Option<ApiKey>> {
        let empty = change.is_empty();
        let changeset = ApiKeyChangeset::from(change);
        self.run(move |conn| {
            conn.write_transaction(|c| {
                // Filtering on the owner makes someone else's key look exactly like a missing
                // one; a revoked key is gone for good, so it cannot be changed either (in the
                // same statement, so a revocation cannot slip between check and change).
                let mine = api_keys::table
                    .find(id.0)
                    .filter(api_keys::user_id.eq(user.0))
                    .filter(api_keys::is_active.eq(true));
                if empty {
                    return mine.select(ApiKeyRow::as_select()).first(c).optional();
                }
                if diesel::update(mine).set(&changeset).execute(c)? == 0 {
                    return Ok(None);
                }
                let row = load_key(c, id.0)?;
                if let Some(row) = &row {
                    // Every replica's cache drops the key and reads its new policy.
                    super::revocations::log_revocations(c, vec![row.key_prefix.clone()])?;
                }
                Ok::<_, diesel::result::Error>(row)
            })
            .context("updating an API key")?
            .map(ApiKey::try_from)
            .transpose()
        })
        .await
    }

    #[tracing::instrument(skip_all, fields(user_id = %user))]
    async fn list_api_keys(&self, user: UserId, page: Page) -> anyhow::Result<Vec<ApiKey>> {
        self.run(move |conn| {
            api_keys::table
                .filter(api_keys::user_id.eq(user.0))
                // The id breaks ties between keys made in the same instant, so pages neither
                // repeat nor skip rows.
                .order((api_keys::created_at.desc(), api_keys::id.desc()))
                .offset(i64::from(page.skip))
                .limit(i64::from(page.limit))
                .select(ApiKeyRow::as_select())
                .load(conn)
                .context("listing API keys")?
                .into_iter()
                .map(ApiKey::try_from)
                .collect()
        })
        .await
    }

    #[tracing::instrument(skip_all, fields(user_id = %user, api_key_id = %id))]
    async fn set_default_api_key(
        &self,
        user: UserId,
        id: ApiKeyId,
        now: DateTime<Utc>,
    ) -> anyhow::Result<Option<ApiKey>> {
        let now = now.naive_utc();
        self.run(move |conn| {
            conn.write_transaction(|c| {
                let usable = usable_keys(user, now)
                    .filter(api_keys::id.eq(id.0))
                    .select(api_keys::id)
                    .first::<i64>(c)
                    .optional()?;
                if usable.is_none() {
                    return Ok(None);
                }
                // Cleared first: the unique index allows one default per user at any moment.
                diesel::update(
                    api_keys::table
                        .filter(api_keys::user_id.eq(user.0))
                        .filter(api_keys::is_default.eq(true)),
                )
                .set(api_keys::is_default.eq(false))
                .execute(c)?;
                diesel::update(api_keys::table.find(id.0))
                    .set(api_keys::is_default.eq(true))
                    .execute(c)?;
                load_key(c, id.0)
            })
            .context("setting the default API key")?
            .map(ApiKey::try_from)
            .transpose()
        })
        .await
    }

    #[tracing::instrument(skip_all, fields(user_id = %user))]
    async fn marked_default_api_key(
        &self,
        user: UserId,
        now: DateTime<Utc>,
    ) -> anyhow::Result<Option<ApiKey>> {
        let now = now.naive_utc();
        self.run(move |conn| {
            first_of(
                conn,
                usable_keys(user, now).filter(api_keys::is_default.eq(true)),
            )
            .context("reading the default API key")
        })
        .await
    }

    #[tracing::instrument(skip_all, fields(user_id = %user))]
    async fn first_active_api_key(
        &self,
        user: UserId,
        now: DateTime<Utc>,
    ) -> anyhow::Result<Option<ApiKey>> {
        let now = now.naive_utc();
        self.run(move |conn| {
            first_of(
                conn,
                usable_keys(user, now).order((api_keys::created_at.asc(), api_keys::id.asc())),
            )
            .context("reading the first API key")
        })
        .await
    }

    #[tracing::instrument(skip_all, fields(user_id = %user, api_key_id = %id))]
    async fn deactivate_api_key(
        &self,
        user: UserId,
        id: ApiKeyId,
    ) -> anyhow::Result<Option<ApiKey>> {
        self.run(move |conn| {
            conn.write_transaction(|c| {
                // Filtering on the owner makes someone else's key look exactly like a missing
                // one.
                let updated = diesel::update(
                    api_keys::table
                        .find(id.0)
                        .filter(api_keys::user_id.eq(user.0)),
                )
                .set((
                    api_keys::is_active.eq(false),
                    api_keys::is_default.eq(false),
                ))
                .execute(c)?;
                if updated == 0 {
                    return Ok(None);
                }
                let key = load_key(c, id.0)?;
                if let Some(key) = &key {
                    // With the deactivation or not at all: every replica's cache reads this.
                    super::revocations::log_revocations(c, vec![key.key_prefix.clone()])?;
                }
                // The key's own sessions are paid for: they serve the shared pool until their
                // end rather than nobody.
                diesel::update(
                    sessions::table
                        .filter(sessions::api_key_id.eq(id.0))
                        .filter(sessions::state.eq(SessionState::Active.as_str()))
                        .filter(sessions::pooled.eq(false)),
                )
                .set(sessions::pooled.eq(true))
                .execute(c)?;
                Ok::<_, diesel::result::Error>(key)
            })
            .context("deactivating an API key")?
            .map(ApiKey::try_from)
            .transpose()
        })
        .await
    }

    #[tracing::instrument(skip_all, fields(key_prefix = %prefix.as_str()))]
    async fn find_api_key_by_prefix(
        &self,
        prefix: &KeyPrefix,
    ) -> anyhow::Result<Option<StoredApiKey>> {
        let prefix = prefix.as_str().to_owned();
        self.run(move |conn| {
            api_keys::table
                .inner_join(users::table)
                .filter(api_keys::key_prefix.eq(prefix))
                .select((
                    ApiKeyRow::as_select(),
                    users::is_active,
                    users::limit_multiplier,
                ))
                .first::<(ApiKeyRow, bool, i64)>(conn)
                .optional()
                .context("looking up an API key by prefix")?
                .map(|(row, active, multiplier)| row.into_stored(active, multiplier))
                .transpose()
        })
        .await
    }

    #[tracing::instrument(skip_all, fields(keys = uses.len()))]
    async fn touch_api_keys(&self, uses: Vec<(ApiKeyId, DateTime<Utc>)>) -> anyhow::Result<()> {
        self.run(move |conn| {
            conn.write_transaction(|c| {
                for (id, at) in &uses {
                    diesel::update(api_keys::table.find(id.0))
                        .set(api_keys::last_used_at.eq(Some(at.naive_utc())))
                        .execute(c)?;
                }
                Ok::<_, diesel::result::Error>(())
            })
            .context("recording API keys' last use")
        })
        .await
    }
}
