use anyhow::Context;
use async_trait::async_trait;
use chrono::{DateTime, NaiveDateTime, Utc};
use diesel::prelude::*;
use morpheus_domain::ports::{RefreshTokenRepository, RevokedRefreshTokens};
use morpheus_domain::{NewRefreshRecord, RefreshConsumption, UserId};

use super::to_u64;
use crate::connection::AnyConnection;
use crate::database::Database;
use crate::schema::{refresh_tokens, users};

/// A family's rotations are one at a time (each consumes the token the previous one stored),
/// so a pass can miss at most the one successor in flight; the extra passes are margin.
const MAX_REVOCATION_PASSES: usize = 4;

#[derive(Insertable)]
#[diesel(table_name = refresh_tokens)]
struct NewRefreshTokenRow {
    token_id: String,
    family_id: String,
    user_id: i64,
    issued_at: NaiveDateTime,
    expires_at: NaiveDateTime,
    used_at: Option<NaiveDateTime>,
    revoked: bool,
}

impl From<NewRefreshRecord> for NewRefreshTokenRow {
    fn from(record: NewRefreshRecord) -> Self {
        NewRefreshTokenRow {
            token_id: record.token_id,
            family_id: record.family_id,
            user_id: record.user_id.0,
            issued_at: record.issued_at.naive_utc(),
            expires_at: record.expires_at.naive_utc(),
            used_at: None,
            revoked: false,
        }
    }
}

/// Revokes the user's refresh tokens that `revoked` names and raises the user's token
/// generation; inside the caller's transaction.
pub(super) fn end_sign_ins(
    conn: &mut AnyConnection,
    user: i64,
    revoked: &RevokedRefreshTokens,
) -> QueryResult<u64> {
    let mut count = 0;
    // Each statement sees the rows committed when it starts (PostgreSQL, READ COMMITTED). A
    // rotation in flight holds its consumed row, so the first UPDATE waits for it to commit,
    // but does not see the successor that rotation inserted; the next statement does. Repeat
    // until nothing is left live.
    for _ in 0..MAX_REVOCATION_PASSES {
        let live = refresh_tokens::table
            .filter(refresh_tokens::user_id.eq(user))
            .filter(refresh_tokens::revoked.eq(false));
        let pass = match revoked {
            RevokedRefreshTokens::Family(family) => {
                diesel::update(live.filter(refresh_tokens::family_id.eq(family)))
                    .set(refresh_tokens::revoked.eq(true))
                    .execute(conn)?
            }
            RevokedRefreshTokens::All => diesel::update(live)
                .set(refresh_tokens::revoked.eq(true))
                .execute(conn)?,
            RevokedRefreshTokens::None => 0,
        };
        if pass == 0 {
            break;
        }
        count += to_u64(pass);
    }
    diesel::update(users::table.find(user))
        .set(users::token_generation.eq(users::token_generation + 1))
        .execute(conn)?;
    Ok(count)
}

#[async_trait]
impl RefreshTokenRepository for Database {
    #[tracing::instrument(skip_all, fields(user_id = %record.user_id))]
    async fn insert_refresh_token(&self, record: NewRefreshRecord) -> anyhow::Result<()> {
        let row = NewRefreshTokenRow::from(record);
        self.run(move |conn| {
            diesel::insert_into(refresh_tokens::table)
                .values(&row)
                .execute(conn)
                .context("storing a refresh token record")?;
            Ok(())
        })
        .await
    }

    #[tracing::instrument(skip_all)]
    async fn rotate_refresh_token(
        &self,
        token_id: &str,
        at: DateTime<Utc>,
        successor: NewRefreshRecord,
    ) -> anyhow::Result<RefreshConsumption> {
        let token_id = token_id.to_owned();
        let successor = NewRefreshTokenRow::from(successor);
        self.run(move |conn| {
            conn.write_transaction(|conn| {
                // One conditional UPDATE: the database serialises concurrent ones on the row,
                // and only the first still finds `used_at IS NULL`.
                let consumed = diesel::update(
                    refresh_tokens::table
                        .find(&token_id)
                        .filter(refresh_tokens::used_at.is_null())
                        .filter(refresh_tokens::revoked.eq(false)),
                )
                .set(refresh_tokens::used_at.eq(Some(at.naive_utc())))
                .execute(conn)
                .context("consuming a refresh token")?;
                if consumed == 1 {
                    diesel::insert_into(refresh_tokens::table)
                        .values(&successor)
                        .execute(conn)
                        .context("storing the successor of a refresh token")?;
                    return Ok(RefreshConsumption::Consumed);
                }
                let revoked: Option<bool> = refresh_tokens::table
                    .find(&token_id)
                    .select(refresh_tokens::revoked)
                    .first(conn)
                    .optional()
                    .context("looking up a refresh token that could not be consumed")?;
                Ok(match revoked {
                    Some(true) => RefreshConsumption::Revoked,
                    Some(false) => RefreshConsumption::Reused,
                    None => RefreshConsumption::Unknown,
                })
            })
        })
        .await
    }

    #[tracing::instrument(skip_all, fields(user_id = %user))]
    async fn end_sign_ins(
        &self,
        user: UserId,
        revoked: RevokedRefreshTokens,
    ) -> anyhow::Result<u64> {
        self.run(move |conn| {
            conn.write_transaction(|c| end_sign_ins(c, user.0, &revoked))
                .context("ending a user's sign-ins")
        })
        .await
    }

    #[tracing::instrument(skip_all)]
    async fn purge_refresh_tokens(&self, before: DateTime<Utc>) -> anyhow::Result<u64> {
        self.run(move |conn| {
            diesel::delete(
                refresh_tokens::table.filter(refresh_tokens::expires_at.lt(before.naive_utc())),
            )
            .execute(conn)
            .map(to_u64)
            .context("purging expired refresh tokens")
        })
        .await
    }
}
