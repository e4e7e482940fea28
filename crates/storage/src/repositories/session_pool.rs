//! The shared session pool's leases and per-model cap. Every decision is one transaction
//! under a per-model lock: on PostgreSQL a transaction-level advisory lock on the model, on
//! SQLite the single writer (`BEGIN IMMEDIATE`). Under it, leasing a session is a conditional
//! update (it must still be unleased or its lease run out), so no session is leased twice.

use anyhow::Context;
use async_trait::async_trait;
use chrono::{DateTime, Utc};
use diesel::prelude::*;
use diesel::sql_types::{Integer, Text};
use morpheus_domain::ports::{
    InsertSessionError, OpenTicket, PoolCensus, PoolTake, PoolTakeRequest, SessionPoolRepository,
};
use morpheus_domain::{ModelId, SessionId, SessionRecord, SessionState};

use super::sessions::SessionRow;
use crate::connection::AnyConnection;
use crate::database::Database;
use crate::schema::{pool_opens, sessions};

/// The advisory locks' first key for pool decisions, `MGPL`; the second is the model's hash.
const POOL_LOCK_CLASS: i32 = 0x4d47_504c;

/// Serialises pool decisions for one model until the transaction ends.
fn lock_model(conn: &mut AnyConnection, model: &str) -> QueryResult<()> {
    match conn {
        AnyConnection::Postgresql(pg) => {
            diesel::sql_query("SELECT pg_advisory_xact_lock($1, hashtext($2))")
                .bind::<Integer, _>(POOL_LOCK_CLASS)
                .bind::<Text, _>(model)
                .execute(pg)?;
        }
        // The transaction began with BEGIN IMMEDIATE: it is the only writer already.
        AnyConnection::Sqlite(_) => {}
    }
    Ok(())
}

/// Pooled sessions of `model` that could still serve a request.
macro_rules! usable_pooled {
    ($model:expr, $usable_after:expr) => {
        sessions::table
            .filter(sessions::pooled.eq(true))
            .filter(sessions::state.eq(SessionState::Active.as_str()))
            .filter(sessions::model_id.eq($model))
            .filter(sessions::ends_at.gt($usable_after))
    };
}

fn take_or_reserve(conn: &mut AnyConnection, r: &PoolTakeRequest) -> anyhow::Result<PoolTake> {
    let model = r.model.as_str();
    let now = r.now.naive_utc();
    let usable_after = r.usable_after.naive_utc();
    lock_model(conn, model).context("locking the model's pool")?;
    diesel::delete(
        pool_opens::table
            .filter(pool_opens::model_id.eq(model))
            .filter(pool_opens::started_at.lt(r.opens_stale_before.naive_utc())),
    )
    .execute(conn)
    .context("dropping stale open reservations")?;

    // The session that lasts longest first: it will serve the most requests.
    let free: Option<String> = usable_pooled!(model, usable_after)
        .filter(
            sessions::leased_by
                .is_null()
                .or(sessions::lease_expires_at.lt(now)),
        )
        .order(sessions::ends_at.desc())
        .select(sessions::id)
        .first(conn)
        .optional()
        .context("looking for an unleased pooled session")?;
    if let Some(id) = free {
        let leased = diesel::update(
            sessions::table.find(&id).filter(
                sessions::leased_by
                    .is_null()
                    .or(sessions::lease_expires_at.lt(now)),
            ),
        )
        .set((
            sessions::leased_by.eq(Some(r.replica.as_str())),
            sessions::lease_expires_at.eq(Some(r.lease_until.naive_utc())),
        ))
        .execute(conn)
        .context("leasing a pooled session")?;
        if leased == 1 {
            let row: SessionRow = sessions::table
                .find(&id)
                .select(SessionRow::as_select())
                .first(conn)
                .context("reading a leased session")?;
            return Ok(PoolTake::Leased(SessionRecord::try_from(row)?));
        }
    }

    let sessions_now: i64 = usable_pooled!(model, usable_after)
        .count()
        .get_result(conn)
        .context("counting a model's pooled sessions")?;
    let opening: i64 = pool_opens::table
        .filter(pool_opens::model_id.eq(model))
        .count()
        .get_result(conn)
        .context("counting a model's opens in progress")?;
    if sessions_now + opening >= i64::from(r.cap) {
        return Ok(PoolTake::Full);
    }
    diesel::insert_into(pool_opens::table)
        .values((
            pool_opens::model_id.eq(model),
            pool_opens::replica.eq(&r.replica),
            pool_opens::started_at.eq(now),
        ))
        .execute(conn)
        .context("reserving an open")?;
    // Still under the lock: the newest reservation of this replica is the one just made.
    let id: i64 = pool_opens::table
        .filter(pool_opens::model_id.eq(model))
        .filter(pool_opens::replica.eq(&r.replica))
        .select(diesel::dsl::max(pool_opens::id))
        .first::<Option<i64>>(conn)
        .context("reading an open's reservation")?
        .context("the reservation just made is missing")?;
    Ok(PoolTake::Reserved(OpenTicket(id)))
}

#[async_trait]
impl SessionPoolRepository for Database {
    #[tracing::instrument(skip_all, fields(model = %request.model))]
    async fn take_or_reserve(&self, request: PoolTakeRequest) -> anyhow::Result<PoolTake> {
        self.run(move |conn| conn.write_transaction(|c| take_or_reserve(c, &request)))
            .await
    }

    #[tracing::instrument(skip_all, fields(ticket = ticket.0))]
    async fn finish_open(
        &self,
        ticket: OpenTicket,
        opened: Option<SessionRecord>,
        replica: &str,
        lease_until: DateTime<Utc>,
    ) -> Result<(), InsertSessionError> {
        let replica = replica.to_owned();
        self.run(move |conn| {
            conn.write_transaction(|c| -> anyhow::Result<()> {
                // Turning a reservation into a session takes the model's lock, as a claim
                // does: on PostgreSQL a claim counts sessions and reservations in two
                // statements, and a move committed between them would be missed by both
                // counts, letting one open too many past the cap.
                if let Some(session) = &opened {
                    lock_model(c, session.model_id.as_str()).context("locking the model's pool")?;
                }
                diesel::delete(pool_opens::table.find(ticket.0))
                    .execute(c)
                    .context("ending an open's reservation")?;
                let Some(session) = opened else {
                    return Ok(());
                };
                let id = session.id.as_str().to_owned();
                let row = SessionRow::from(session);
                // A failure rolls the reservation back too: it goes stale, and the janitor
                // adopts the session it does not know.
                diesel::insert_into(sessions::table)
                    .values(&row)
                    .execute(c)
                    .context("recording a pooled session")?;
                diesel::update(sessions::table.find(id))
                    .set((
                        sessions::leased_by.eq(Some(replica)),
                        sessions::lease_expires_at.eq(Some(lease_until.naive_utc())),
                    ))
                    .execute(c)
                    .context("leasing a new pooled session")?;
                Ok(())
            })
            .map_err(InsertSessionError::Unknown)
        })
        .await
    }

    #[tracing::instrument(skip_all)]
    async fn renew_leases(
        &self,
        replica: &str,
        until: DateTime<Utc>,
    ) -> anyhow::Result<Vec<SessionId>> {
        let replica = replica.to_owned();
        self.run(move |conn| {
            conn.write_transaction(|c| {
                diesel::update(
                    sessions::table
                        .filter(sessions::leased_by.eq(&replica))
                        .filter(sessions::state.eq(SessionState::Active.as_str())),
                )
                .set(sessions::lease_expires_at.eq(Some(until.naive_utc())))
                .execute(c)
                .context("renewing leases")?;
                let ids: Vec<String> = sessions::table
                    .filter(sessions::leased_by.eq(&replica))
                    .filter(sessions::state.eq(SessionState::Active.as_str()))
                    .select(sessions::id)
                    .load(c)
                    .context("listing held leases")?;
                ids.iter()
                    .map(|id| {
                        SessionId::parse(id)
                            .map_err(|_| anyhow::anyhow!("stored session id is malformed"))
                    })
                    .collect()
            })
        })
        .await
    }

    #[tracing::instrument(skip_all, fields(count = ids.len()))]
    async fn release_leases(
        &self,
        replica: &str,
        ids: Vec<SessionId>,
        at: DateTime<Utc>,
    ) -> anyhow::Result<()> {
        let replica = replica.to_owned();
        let ids: Vec<String> = ids.iter().map(|id| id.as_str().to_owned()).collect();
        self.run(move |conn| {
            diesel::update(
                sessions::table
                    .filter(sessions::id.eq_any(ids))
                    .filter(sessions::leased_by.eq(replica)),
            )
            // Without a holder, the lease's time says since when nobody held it.
            .set((
                sessions::leased_by.eq(None::<String>),
                sessions::lease_expires_at.eq(Some(at.naive_utc())),
            ))
            .execute(conn)
            .context("releasing leases")?;
            Ok(())
        })
        .await
    }

    #[tracing::instrument(skip_all)]
    async fn take_idle_for_closing(
        &self,
        replica: &str,
        now: DateTime<Utc>,
        released_before: DateTime<Utc>,
        lease_until: DateTime<Utc>,
    ) -> anyhow::Result<Vec<SessionRecord>> {
        let replica = replica.to_owned();
        self.run(move |conn| {
            conn.write_transaction(|c| -> anyhow::Result<Vec<SessionRecord>> {
                let now = now.naive_utc();
                let stale: Vec<SessionRow> = sessions::table
                    .filter(sessions::pooled.eq(true))
                    .filter(sessions::state.eq(SessionState::Active.as_str()))
                    .filter(sessions::ends_at.gt(now))
                    .filter(sessions::leased_by.is_null())
                    .filter(
                        sessions::lease_expires_at
                            .is_null()
                            .or(sessions::lease_expires_at.lt(released_before.naive_utc())),
                    )
                    .order(sessions::ends_at.asc())
                    .select(SessionRow::as_select())
                    .load(c)
                    .context("looking for long-idle pooled sessions")?;
                let mut taken = Vec::new();
                for row in stale {
                    lock_model(c, &row.model_id).context("locking the model's pool")?;
                    let active: i64 = sessions::table
                        .filter(sessions::pooled.eq(true))
                        .filter(sessions::state.eq(SessionState::Active.as_str()))
                        .filter(sessions::model_id.eq(&row.model_id))
                        .filter(sessions::ends_at.gt(now))
                        .count()
                        .get_result(c)
                        .context("counting a model's pooled sessions")?;
                    let closing = taken
                        .iter()
                        .filter(|s: &&SessionRecord| s.model_id.as_str() == row.model_id)
                        .count() as i64;
                    // A warm model keeps one.
                    if active - closing <= 1 {
                        continue;
                    }
                    let leased = diesel::update(
                        sessions::table
                            .find(&row.id)
                            .filter(sessions::leased_by.is_null()),
                    )
                    .set((
                        sessions::leased_by.eq(Some(replica.as_str())),
                        sessions::lease_expires_at.eq(Some(lease_until.naive_utc())),
                    ))
                    .execute(c)
                    .context("taking a long-idle session for closing")?;
                    if leased == 1 {
                        taken.push(SessionRecord::try_from(row)?);
                    }
                }
                Ok(taken)
            })
        })
        .await
    }

    #[tracing::instrument(skip_all, fields(session = %id))]
    async fn join_pool(&self, id: &SessionId) -> anyhow::Result<bool> {
        let id = id.as_str().to_owned();
        self.run(move |conn| {
            diesel::update(
                sessions::table
                    .find(id)
                    .filter(sessions::state.eq(SessionState::Active.as_str())),
            )
            .set((
                sessions::pooled.eq(true),
                sessions::leased_by.eq(None::<String>),
                // Idle from now, for the idle grace.
                sessions::lease_expires_at.eq(Some(Utc::now().naive_utc())),
            ))
            .execute(conn)
            .map(|updated| updated > 0)
            .context("moving a session into the pool")
        })
        .await
    }

    #[tracing::instrument(skip_all)]
    async fn pool_census(&self, now: DateTime<Utc>) -> anyhow::Result<Vec<PoolCensus>> {
        let now = now.naive_utc();
        self.run(move |conn| {
            let rows: Vec<(String, Option<String>, Option<chrono::NaiveDateTime>)> =
                sessions::table
                    .filter(sessions::pooled.eq(true))
                    .filter(sessions::state.eq(SessionState::Active.as_str()))
                    .filter(sessions::ends_at.gt(now))
                    .select((
                        sessions::model_id,
                        sessions::leased_by,
                        sessions::lease_expires_at,
                    ))
                    .load(conn)
                    .context("counting pooled sessions")?;
            let opens: Vec<String> = pool_opens::table
                .select(pool_opens::model_id)
                .load(conn)
                .context("counting opens in progress")?;
            let mut census: std::collections::BTreeMap<String, PoolCensus> = Default::default();
            for (model, leased_by, until) in rows {
                let c = census_entry(&mut census, &model)?;
                c.active += 1;
                if leased_by.is_some() && until.is_some_and(|u| u > now) {
                    c.leased += 1;
                }
            }
            for model in opens {
                census_entry(&mut census, &model)?.opening += 1;
            }
            Ok(census.into_values().collect())
        })
        .await
    }
}

fn census_entry<'a>(
    census: &'a mut std::collections::BTreeMap<String, PoolCensus>,
    model: &str,
) -> anyhow::Result<&'a mut PoolCensus> {
    if !census.contains_key(model) {
        let parsed =
            ModelId::parse(model).map_err(|_| anyhow::anyhow!("stored model id is malformed"))?;
        census.insert(
            model.to_owned(),
            PoolCensus {
                model: parsed,
                active: 0,
                leased: 0,
                opening: 0,
            },
        );
    }
    Ok(census.get_mut(model).expect("just inserted"))
}
