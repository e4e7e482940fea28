use anyhow::{Context, anyhow};
use async_trait::async_trait;
use chrono::{DateTime, NaiveDateTime, Utc};
use diesel::prelude::*;
use morpheus_domain::ports::{InsertSessionError, SessionRepository};
use morpheus_domain::{
    ApiKeyId, BidId, ModelId, SessionId, SessionOrigin, SessionRecord, SessionState, UserId,
};

use super::is_unique_violation;
use crate::database::Database;
use crate::schema::sessions;

#[derive(Queryable, Selectable, Insertable)]
#[diesel(table_name = sessions)]
pub(super) struct SessionRow {
    pub(super) id: String,
    api_key_id: i64,
    user_id: i64,
    pub(super) model_id: String,
    bid_id: Option<String>,
    origin: String,
    state: String,
    opened_at: NaiveDateTime,
    ends_at: NaiveDateTime,
    closed_at: Option<NaiveDateTime>,
    pooled: bool,
}

impl From<SessionRecord> for SessionRow {
    fn from(session: SessionRecord) -> Self {
        SessionRow {
            id: session.id.as_str().to_owned(),
            api_key_id: session.api_key_id.0,
            user_id: session.user_id.0,
            model_id: session.model_id.as_str().to_owned(),
            bid_id: session.bid_id.map(|bid| bid.as_str().to_owned()),
            origin: session.origin.as_str().to_owned(),
            state: session.state.as_str().to_owned(),
            opened_at: session.opened_at.naive_utc(),
            ends_at: session.ends_at.naive_utc(),
            closed_at: session.closed_at.map(|at| at.naive_utc()),
            pooled: session.pooled,
        }
    }
}

impl TryFrom<SessionRow> for SessionRecord {
    type Error = anyhow::Error;

    fn try_from(row: SessionRow) -> anyhow::Result<Self> {
        // The CHECK constraints keep origin and state valid; the ids are only ever written from
        // parsed values. A failure here means someone edited the table by hand.
        Ok(SessionRecord {
            id: SessionId::parse(&row.id).map_err(|_| anyhow!("stored session id is malformed"))?,
            api_key_id: ApiKeyId(row.api_key_id),
            user_id: UserId(row.user_id),
            model_id: ModelId::parse(&row.model_id)
                .map_err(|_| anyhow!("stored model id of a session is malformed"))?,
            bid_id: row
                .bid_id
                .map(|bid| BidId::parse(&bid))
                .transpose()
                .map_err(|_| anyhow!("stored bid id of a session is malformed"))?,
            origin: SessionOrigin::parse(&row.origin)
                .with_context(|| format!("unknown stored session origin {:?}", row.origin))?,
            state: SessionState::parse(&row.state)
                .with_context(|| format!("unknown stored session state {:?}", row.state))?,
            opened_at: row.opened_at.and_utc(),
            ends_at: row.ends_at.and_utc(),
            closed_at: row.closed_at.map(|at| at.and_utc()),
            pooled: row.pooled,
        })
    }
}

fn into_records(rows: Vec<SessionRow>) -> anyhow::Result<Vec<SessionRecord>> {
    rows.into_iter().map(SessionRecord::try_from).collect()
}

/// The states of sessions not yet closed on chain: what the close sweep and the
/// reconciliation look at.
fn open_states() -> [&'static str; 2] {
    [
        SessionState::Active.as_str(),
        SessionState::Retired.as_str(),
    ]
}

#[async_trait]
impl SessionRepository for Database {
    #[tracing::instrument(skip_all, fields(session = %session.id, api_key_id = %session.api_key_id))]
    async fn insert_session(&self, session: SessionRecord) -> Result<(), InsertSessionError> {
        let row = SessionRow::from(session);
        self.run(move |conn| {
            // No transaction: on Postgres a failed statement aborts the transaction it is in,
            // and the question below must still be asked.
            let Err(error) = diesel::insert_into(sessions::table)
                .values(&row)
                .execute(conn)
            else {
                return Ok(());
            };
            if !is_unique_violation(&error) {
                return Err(anyhow::Error::new(error)
                    .context("inserting a session")
                    .into());
            }
            // Two unique keys: the id, and (key, model) among active sessions. Asking whether
            // the id is taken works the same on both backends, unlike their error messages
            // (SQLite names no constraint). A clash on both is reported as the duplicate.
            let id_taken = diesel::select(diesel::dsl::exists(sessions::table.find(&row.id)))
                .get_result::<bool>(conn)
                .context("checking which unique key a new session clashed with")?;
            Err(if id_taken {
                InsertSessionError::Duplicate
            } else {
                InsertSessionError::ActiveExists
            })
        })
        .await
    }

    #[tracing::instrument(skip_all, fields(api_key_id = %key, model = %model))]
    async fn find_active_session(
        &self,
        key: ApiKeyId,
        model: &ModelId,
    ) -> anyhow::Result<Option<SessionRecord>> {
        let model = model.as_str().to_owned();
        self.run(move |conn| {
            sessions::table
                .filter(sessions::api_key_id.eq(key.0))
                .filter(sessions::model_id.eq(model))
                .filter(sessions::state.eq(SessionState::Active.as_str()))
                .filter(sessions::pooled.eq(false))
                .select(SessionRow::as_select())
                .first(conn)
                .optional()
                .context("looking up a key's active session")?
                .map(SessionRecord::try_from)
                .transpose()
        })
        .await
    }

    #[tracing::instrument(skip_all, fields(api_key_id = %key, session = %id))]
    async fn find_key_session(
        &self,
        key: ApiKeyId,
        id: &SessionId,
    ) -> anyhow::Result<Option<SessionRecord>> {
        let id = id.as_str().to_owned();
        self.run(move |conn| {
            // Filtering on the key makes another key's session look exactly like a missing one.
            sessions::table
                .find(id)
                .filter(sessions::api_key_id.eq(key.0))
                // A pooled session is no key's, whichever key's request opened it.
                .filter(sessions::pooled.eq(false))
                .select(SessionRow::as_select())
                .first(conn)
                .optional()
                .context("looking up a key's session")?
                .map(SessionRecord::try_from)
                .transpose()
        })
        .await
    }

    #[tracing::instrument(skip_all, fields(api_key_id = %key))]
    async fn list_active_sessions(&self, key: ApiKeyId) -> anyhow::Result<Vec<SessionRecord>> {
        self.run(move |conn| {
            let rows = sessions::table
                .filter(sessions::api_key_id.eq(key.0))
                .filter(sessions::state.eq(SessionState::Active.as_str()))
                .filter(sessions::pooled.eq(false))
                // The id breaks ties between sessions opened in the same instant.
                .order((sessions::opened_at.desc(), sessions::id.desc()))
                .select(SessionRow::as_select())
                .load(conn)
                .context("listing a key's active sessions")?;
            into_records(rows)
        })
        .await
    }

    #[tracing::instrument(skip_all, fields(user = user.0))]
    async fn count_explicit_sessions(
        &self,
        user: UserId,
        now: DateTime<Utc>,
    ) -> anyhow::Result<u64> {
        self.run(move |conn| {
            let count: i64 = sessions::table
                .filter(sessions::user_id.eq(user.0))
                .filter(sessions::state.eq(SessionState::Active.as_str()))
                .filter(sessions::pooled.eq(false))
                .filter(sessions::ends_at.gt(now.naive_utc()))
                .count()
                .get_result(conn)
                .context("counting a user's explicit sessions")?;
            u64::try_from(count).context("the database returned a negative count")
        })
        .await
    }

    #[tracing::instrument(skip_all)]
    async fn count_active_sessions(&self) -> anyhow::Result<u64> {
        self.run(move |conn| {
            let count: i64 = sessions::table
                .filter(sessions::state.eq(SessionState::Active.as_str()))
                .count()
                .get_result(conn)
                .context("counting active sessions")?;
            u64::try_from(count).context("the database returned a negative count")
        })
        .await
    }

    #[tracing::instrument(skip_all, fields(session = %id))]
    async fn retire_session(&self, id: &SessionId) -> anyhow::Result<bool> {
        let id = id.as_str().to_owned();
        self.run(move |conn| {
            // Conditional on the state, so of two concurrent retirements only one reports it.
            diesel::update(
                sessions::table
                    .find(id)
                    .filter(sessions::state.eq(SessionState::Active.as_str())),
            )
            .set(sessions::state.eq(SessionState::Retired.as_str()))
            .execute(conn)
            .map(|updated| updated > 0)
            .context("retiring a session")
        })
        .await
    }

    #[tracing::instrument(skip_all, fields(session = %id))]
    async fn mark_session_closed(&self, id: &SessionId, at: DateTime<Utc>) -> anyhow::Result<()> {
        let id = id.as_str().to_owned();
        self.run(move |conn| {
            // A session already closed keeps the time it was first found closed.
            diesel::update(
                sessions::table
                    .find(id)
                    .filter(sessions::state.ne(SessionState::Closed.as_str())),
            )
            .set((
                sessions::state.eq(SessionState::Closed.as_str()),
                sessions::closed_at.eq(Some(at.naive_utc())),
            ))
            .execute(conn)
            .context("marking a session closed")?;
            Ok(())
        })
        .await
    }

    #[tracing::instrument(skip_all)]
    async fn sessions_due_for_close(
        &self,
        now: DateTime<Utc>,
        limit: u32,
    ) -> anyhow::Result<Vec<SessionRecord>> {
        self.run(move |conn| {
            let rows = sessions::table
                .filter(sessions::state.eq_any(open_states()))
                .filter(sessions::ends_at.le(now.naive_utc()))
                .order((sessions::ends_at.asc(), sessions::id.asc()))
                .limit(i64::from(limit))
                .select(SessionRow::as_select())
                .load(conn)
                .context("listing sessions due for closing")?;
            into_records(rows)
        })
        .await
    }

    #[tracing::instrument(skip_all)]
    async fn list_open_sessions(
        &self,
        after: Option<&SessionId>,
        limit: u32,
    ) -> anyhow::Result<Vec<SessionRecord>> {
        let after = after.map(|id| id.as_str().to_owned());
        self.run(move |conn| {
            let mut query = sessions::table
                .filter(sessions::state.eq_any(open_states()))
                .into_boxed();
            // Keyset pagination: rows closed or added between pages neither shift nor repeat
            // the others. The comparison and the order use the same collation, whatever it is.
            if let Some(after) = after {
                query = query.filter(sessions::id.gt(after));
            }
            let rows = query
                .order(sessions::id.asc())
                .limit(i64::from(limit))
                .select(SessionRow::as_select())
                .load(conn)
                .context("listing open sessions")?;
            into_records(rows)
        })
        .await
    }

    #[tracing::instrument(skip_all, fields(session = %id))]
    async fn update_session_end(
        &self,
        id: &SessionId,
        ends_at: DateTime<Utc>,
    ) -> anyhow::Result<()> {
        let id = id.as_str().to_owned();
        self.run(move |conn| {
            diesel::update(sessions::table.find(id))
                .set(sessions::ends_at.eq(ends_at.naive_utc()))
                .execute(conn)
                .context("updating a session's end")?;
            Ok(())
        })
        .await
    }

    #[tracing::instrument(skip_all, fields(session = %id))]
    async fn find_session(&self, id: &SessionId) -> anyhow::Result<Option<SessionRecord>> {
        let id = id.as_str().to_owned();
        self.run(move |conn| {
            sessions::table
                .find(id)
                .select(SessionRow::as_select())
                .first(conn)
                .optional()
                .context("looking up a session")?
                .map(SessionRecord::try_from)
                .transpose()
        })
        .await
    }

    #[tracing::instrument(skip_all)]
    async fn list_sessions(
        &self,
        user: Option<UserId>,
        include_closed: bool,
        limit: u32,
    ) -> anyhow::Result<Vec<SessionRecord>> {
        self.run(move |conn| {
            let mut query = sessions::table.into_boxed();
            if let Some(user) = user {
                query = query.filter(sessions::user_id.eq(user.0));
            }
            if !include_closed {
                query = query.filter(sessions::state.eq_any(open_states()));
            }
            let rows = query
                .order((sessions::opened_at.desc(), sessions::id.desc()))
                .limit(i64::from(limit))
                .select(SessionRow::as_select())
                .load(conn)
                .context("listing sessions")?;
            into_records(rows)
        })
        .await
    }
}
