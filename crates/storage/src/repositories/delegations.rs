use anyhow::Context;
use async_trait::async_trait;
use chrono::NaiveDateTime;
use diesel::prelude::*;
use morpheus_domain::ports::{DelegationRepository, InsertDelegationError};
use morpheus_domain::{Delegation, DelegationId, EthAddress, Page, SignedDelegation, UserId};

use super::is_unique_violation;
use crate::connection::AnyConnection;
use crate::database::Database;
use crate::schema::{delegations, users};

#[derive(Queryable, Selectable, Insertable)]
#[diesel(table_name = delegations)]
struct DelegationRow {
    id: i64,
    user_id: i64,
    delegate_address: String,
    signed_delegation_data: String,
    expiry: Option<NaiveDateTime>,
    is_active: bool,
    created_at: NaiveDateTime,
}

impl From<DelegationRow> for Delegation {
    fn from(row: DelegationRow) -> Self {
        Delegation {
            id: DelegationId(row.id),
            user_id: UserId(row.user_id),
            delegate_address: EthAddress::from_trusted(row.delegate_address),
            signed_delegation_data: SignedDelegation::from_trusted(row.signed_delegation_data),
            expiry: row.expiry.map(|at| at.and_utc()),
            is_active: row.is_active,
            created_at: row.created_at.and_utc(),
        }
    }
}

impl From<Delegation> for DelegationRow {
    fn from(delegation: Delegation) -> Self {
        DelegationRow {
            id: delegation.id.0,
            user_id: delegation.user_id.0,
            delegate_address: delegation.delegate_address.as_str().to_owned(),
            signed_delegation_data: delegation.signed_delegation_data.as_str().to_owned(),
            expiry: delegation.expiry.map(|at| at.naive_utc()),
            is_active: delegation.is_active,
            created_at: delegation.created_at.naive_utc(),
        }
    }
}

/// Why a delegation was not inserted.
enum Refused {
    LimitReached,
    Database(diesel::result::Error),
}

impl From<diesel::result::Error> for Refused {
    fn from(error: diesel::result::Error) -> Self {
        Self::Database(error)
    }
}

/// Checks the user's count, retires the user's active delegation (if the new one is active)
/// and inserts the new one, in one transaction.
fn insert(
    conn: &mut AnyConnection,
    row: &DelegationRow,
    max_per_user: u64,
) -> Result<Delegation, Refused> {
    conn.write_transaction(|c| {
        lock_owner(c, row.user_id)?;
        let stored: i64 = delegations::table
            .filter(delegations::user_id.eq(row.user_id))
            .count()
            .get_result(c)?;
        if u64::try_from(stored).unwrap_or(0) >= max_per_user {
            return Err(Refused::LimitReached);
        }
        if row.is_active {
            diesel::update(
                delegations::table
                    .filter(delegations::user_id.eq(row.user_id))
                    .filter(delegations::is_active.eq(true)),
            )
            .set(delegations::is_active.eq(false))
            .execute(c)?;
        }
        diesel::insert_into(delegations::table)
            .values(row)
            .execute(c)?;
        delegations::table
            .find(row.id)
            .select(DelegationRow::as_select())
            .first(c)
            .map(Delegation::from)
            .map_err(Refused::from)
    })
}

/// Serialises one user's insertions. On Postgres two concurrent ones would otherwise both
/// count below the limit, or both find nothing to retire and then collide on the
/// one-active-per-user index. `NO KEY UPDATE`
/// does not block the key-share locks that inserting the user's other rows takes. SQLite needs
/// nothing here: `BEGIN IMMEDIATE` already admits one writer at a time.
fn lock_owner(conn: &mut AnyConnection, user_id: i64) -> QueryResult<()> {
    if let AnyConnection::Postgresql(pg) = conn {
        users::table
            .find(user_id)
            .select(users::id)
            .for_no_key_update()
            .first::<i64>(pg)
            .optional()?;
    }
    Ok(())
}

#[async_trait]
impl DelegationRepository for Database {
    #[tracing::instrument(skip_all, fields(user_id = %delegation.user_id, delegation_id = %delegation.id))]
    async fn insert_delegation(
        &self,
        delegation: Delegation,
        max_per_user: u64,
    ) -> Result<Delegation, InsertDelegationError> {
        let row = DelegationRow::from(delegation);
        self.run(move |conn| {
            let error = match insert(conn, &row, max_per_user) {
                Ok(stored) => return Ok(stored),
                Err(Refused::LimitReached) => return Err(InsertDelegationError::LimitReached),
                Err(Refused::Database(error)) => error,
            };
            if !is_unique_violation(&error) {
                return Err(anyhow::Error::new(error)
                    .context("inserting a delegation")
                    .into());
            }
            // The id is the only unique key a new delegation can clash on (activations are
            // serialised), but confirm before telling the caller to draw another.
            let id_taken = diesel::select(diesel::dsl::exists(delegations::table.find(row.id)))
                .get_result::<bool>(conn)
                .context("checking which unique key a new delegation clashed with")?;
            if id_taken {
                Err(InsertDelegationError::IdTaken)
            } else {
                Err(anyhow::Error::new(error)
                    .context("inserting a delegation")
                    .into())
            }
        })
        .await
    }

    #[tracing::instrument(skip_all, fields(user_id = %user))]
    async fn list_delegations(&self, user: UserId, page: Page) -> anyhow::Result<Vec<Delegation>> {
        self.run(move |conn| {
            delegations::table
                .filter(delegations::user_id.eq(user.0))
                // The id breaks ties between delegations made in the same instant, so pages
                // neither repeat nor skip rows.
                .order((delegations::created_at.desc(), delegations::id.desc()))
                .offset(i64::from(page.skip))
                .limit(i64::from(page.limit))
                .select(DelegationRow::as_select())
                .load(conn)
                .map(|rows| rows.into_iter().map(Delegation::from).collect())
                .context("listing delegations")
        })
        .await
    }

    #[tracing::instrument(skip_all, fields(user_id = %user))]
    async fn find_active_delegation(&self, user: UserId) -> anyhow::Result<Option<Delegation>> {
        self.run(move |conn| {
            delegations::table
                .filter(delegations::user_id.eq(user.0))
                .filter(delegations::is_active.eq(true))
                .select(DelegationRow::as_select())
                .first(conn)
                .optional()
                .map(|row| row.map(Delegation::from))
                .context("looking up the active delegation")
        })
        .await
    }

    #[tracing::instrument(skip_all, fields(user_id = %user, delegation_id = %id))]
    async fn delete_delegation(&self, user: UserId, id: DelegationId) -> anyhow::Result<bool> {
        self.run(move |conn| {
            diesel::delete(
                delegations::table
                    .find(id.0)
                    .filter(delegations::user_id.eq(user.0)),
            )
            .execute(conn)
            .map(|deleted| deleted > 0)
            .context("deleting a delegation")
        })
        .await
    }
}
