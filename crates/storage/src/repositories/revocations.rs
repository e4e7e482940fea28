use anyhow::Context;
use async_trait::async_trait;
use chrono::{DateTime, Utc};
use diesel::prelude::*;
use morpheus_domain::KeyPrefix;
use morpheus_domain::ports::{Revocation, RevocationLog};

use crate::connection::AnyConnection;
use crate::database::Database;
use crate::schema::api_key_revocations;

#[derive(Insertable)]
#[diesel(table_name = api_key_revocations)]
struct NewRevocationRow {
    key_prefix: String,
    revoked_at: chrono::NaiveDateTime,
}

/// Logs revoked keys; called inside the transaction that revokes them.
pub(super) fn log_revocations(
    conn: &mut AnyConnection,
    prefixes: Vec<String>,
) -> QueryResult<usize> {
    let now = Utc::now().naive_utc();
    let mut logged = 0;
    // One statement per row: the multi-backend connection has no batch insert. A user has at
    // most a hundred keys.
    for key_prefix in prefixes {
        logged += diesel::insert_into(api_key_revocations::table)
            .values(NewRevocationRow {
                key_prefix,
                revoked_at: now,
            })
            .execute(conn)?;
    }
    Ok(logged)
}

#[async_trait]
impl RevocationLog for Database {
    #[tracing::instrument(level = "trace", skip_all)]
    async fn revocations_after(&self, after: i64, limit: i64) -> anyhow::Result<Vec<Revocation>> {
        self.run(move |conn| {
            let rows: Vec<(i64, String)> = api_key_revocations::table
                .filter(api_key_revocations::seq.gt(after))
                .order(api_key_revocations::seq.asc())
                .limit(limit)
                .select((api_key_revocations::seq, api_key_revocations::key_prefix))
                .load(conn)
                .context("reading the API-key revocation log")?;
            Ok(rows
                .into_iter()
                .map(|(seq, prefix)| Revocation {
                    seq,
                    prefix: KeyPrefix::from_trusted(prefix),
                })
                .collect())
        })
        .await
    }

    #[tracing::instrument(level = "trace", skip_all)]
    async fn latest_revocation(&self) -> anyhow::Result<i64> {
        self.run(move |conn| {
            let latest: Option<i64> = api_key_revocations::table
                .select(diesel::dsl::max(api_key_revocations::seq))
                .first(conn)
                .context("reading the end of the API-key revocation log")?;
            Ok(latest.unwrap_or(0))
        })
        .await
    }

    #[tracing::instrument(skip_all)]
    async fn purge_revocations(&self, before: DateTime<Utc>) -> anyhow::Result<u64> {
        self.run(move |conn| {
            let purged = diesel::delete(
                api_key_revocations::table
                    .filter(api_key_revocations::revoked_at.lt(before.naive_utc())),
            )
            .execute(conn)
            .context("purging the API-key revocation log")?;
            Ok(super::to_u64(purged))
        })
        .await
    }
}
