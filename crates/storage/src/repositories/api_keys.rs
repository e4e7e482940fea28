use anyhow::Context;
use async_trait::async_trait;
use chrono::{DateTime, NaiveDateTime, Utc};
use diesel::prelude::*;
use morpheus_domain::ports::{ApiKeyRepository, InsertApiKeyError};
use morpheus_domain::{
    ApiKey, ApiKeyDigest, ApiKeyId, KeyPrefix, NewApiKey, Page, SessionState, StoredApiKey, UserId,
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
}

impl ApiKeyRow {
    /// The key with what authentication needs besides: its digest and its owner's state.
    fn into_stored(mut self, owner_active: bool) -> StoredApiKey {
        let digest = ApiKeyDigest(std::mem::take(&mut self.key_digest));
        StoredApiKey {
            key: self.into(),
            digest,
            owner_active,
        }
    }
}

impl From<ApiKeyRow> for ApiKey {
    fn from(row: ApiKeyRow) -> Self {
        ApiKey {
            id: ApiKeyId(row.id),
            user_id: UserId(row.user_id),
            prefix: KeyPrefix::from_trusted(row.key_prefix),
            name: row.name,
            is_active: row.is_active,
            created_at: row.created_at.and_utc(),
            last_used_at: row.last_used_at.map(|at| at.and_utc()),
        }
    }
}

impl From<NewApiKey> for NewApiKeyRow {
    fn from(key: NewApiKey) -> Self {
        NewApiKeyRow {
            id: key.id.0,
            user_id: key.user_id.0,
            key_prefix: key.prefix.as_str().to_owned(),
            key_digest: key.digest.0,
            name: key.name,
            is_active: true,
            created_at: key.created_at.naive_utc(),
        }
    }
}

fn load_key(conn: &mut AnyConnection, id: i64) -> QueryResult<Option<ApiKey>> {
    api_keys::table
        .find(id)
        .select(ApiKeyRow::as_select())
        .first(conn)
        .optional()
        .map(|row| row.map(ApiKey::from))
}

/// Why a key was not inserted, inside the transaction (which needs a type that diesel's errors
/// convert into).
enum Refusal {
    LimitReached,
    Collision,
    Failed(diesel::result::Error),
}

impl From<diesel::result::Error> for Refusal {
    fn from(error: diesel::result::Error) -> Self {
        Refusal::Failed(error)
    }
}

/// Counts the user's active keys and inserts the new one if there is room; run in a write
/// transaction. SQLite's `BEGIN IMMEDIATE` already admits one writer at a time; PostgreSQL
/// needs the user's row locked, or concurrent transactions would each count the same keys.
fn insert_within_limit(
    conn: &mut AnyConnection,
    row: &NewApiKeyRow,
    max_active: u64,
) -> Result<Option<ApiKey>, Refusal> {
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
    if u64::try_from(active).unwrap_or(0) >= max_active {
        return Err(Refusal::LimitReached);
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
        max_active: u64,
    ) -> Result<ApiKey, InsertApiKeyError> {
        let row = NewApiKeyRow::from(key);
        self.run(move |conn| {
            conn.write_transaction(|conn| insert_within_limit(conn, &row, max_active))
                .map_err(|refusal| match refusal {
                    Refusal::LimitReached => InsertApiKeyError::LimitReached,
                    Refusal::Collision => InsertApiKeyError::Collision,
                    Refusal::Failed(error) => anyhow::Error::new(error)
                        .context("inserting an API key")
                        .into(),
                })?
                .context("a new API key vanished before it could be read back")
                .map_err(InsertApiKeyError::from)
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
                .map(|rows| rows.into_iter().map(ApiKey::from).collect())
                .context("listing API keys")
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
                .set(api_keys::is_active.eq(false))
                .execute(c)?;
                if updated == 0 {
                    return Ok(None);
                }
                let key = load_key(c, id.0)?;
                if let Some(key) = &key {
                    // With the deactivation or not at all: every replica's cache reads this.
                    super::revocations::log_revocations(c, vec![key.prefix.as_str().to_owned()])?;
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
            .context("deactivating an API key")
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
                .select((ApiKeyRow::as_select(), users::is_active))
                .first::<(ApiKeyRow, bool)>(conn)
                .optional()
                .map(|found| found.map(|(row, owner_active)| row.into_stored(owner_active)))
                .context("looking up an API key by prefix")
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
