use anyhow::Context;
use async_trait::async_trait;
use chrono::{DateTime, NaiveDateTime, Utc};
use diesel::prelude::*;
use diesel::upsert::excluded;
use morpheus_domain::ports::WalletKeyRepository;
use morpheus_domain::{SealedWalletKey, StoredWalletKey, UserId};

use crate::connection::{AnyConnection, on_each_backend};
use crate::database::Database;
use crate::schema::wallet_keys;

#[derive(Queryable, Selectable, Insertable)]
#[diesel(table_name = wallet_keys)]
struct WalletKeyRow {
    user_id: i64,
    sealed_key: Vec<u8>,
    created_at: NaiveDateTime,
    updated_at: NaiveDateTime,
}

impl From<WalletKeyRow> for StoredWalletKey {
    fn from(row: WalletKeyRow) -> Self {
        StoredWalletKey {
            user_id: UserId(row.user_id),
            sealed: SealedWalletKey(row.sealed_key),
            created_at: row.created_at.and_utc(),
            updated_at: row.updated_at.and_utc(),
        }
    }
}

fn load_wallet_key(conn: &mut AnyConnection, user: i64) -> QueryResult<Option<StoredWalletKey>> {
    wallet_keys::table
        .find(user)
        .select(WalletKeyRow::as_select())
        .first(conn)
        .optional()
        .map(|row| row.map(StoredWalletKey::from))
}

#[async_trait]
impl WalletKeyRepository for Database {
    #[tracing::instrument(skip_all, fields(user_id = %user))]
    async fn upsert_wallet_key(
        &self,
        user: UserId,
        sealed: SealedWalletKey,
        at: DateTime<Utc>,
    ) -> anyhow::Result<StoredWalletKey> {
        let row = WalletKeyRow {
            user_id: user.0,
            sealed_key: sealed.0,
            created_at: at.naive_utc(),
            updated_at: at.naive_utc(),
        };
        self.run(move |conn| {
            conn.write_transaction(|c| {
                // A single upsert, so two first-time saves cannot both try to insert; the
                // conflict branch leaves `created_at` alone.
                on_each_backend!(c, c => diesel::insert_into(wallet_keys::table)
                    .values(&row)
                    .on_conflict(wallet_keys::user_id)
                    .do_update()
                    .set((
                        wallet_keys::sealed_key.eq(excluded(wallet_keys::sealed_key)),
                        wallet_keys::updated_at.eq(excluded(wallet_keys::updated_at)),
                    ))
                    .execute(c))
                .context("storing a wallet key")?;
                load_wallet_key(c, row.user_id)
                    .context("reading back a stored wallet key")?
                    .context("a stored wallet key vanished before it could be read back")
            })
        })
        .await
    }

    #[tracing::instrument(skip_all, fields(user_id = %user))]
    async fn find_wallet_key(&self, user: UserId) -> anyhow::Result<Option<StoredWalletKey>> {
        self.run(move |conn| load_wallet_key(conn, user.0).context("looking up a wallet key"))
            .await
    }

    #[tracing::instrument(skip_all, fields(user_id = %user))]
    async fn delete_wallet_key(&self, user: UserId) -> anyhow::Result<bool> {
        self.run(move |conn| {
            diesel::delete(wallet_keys::table.find(user.0))
                .execute(conn)
                .map(|deleted| deleted > 0)
                .context("deleting a wallet key")
        })
        .await
    }

    #[tracing::instrument(skip_all)]
    async fn list_wallet_keys(
        &self,
        after: Option<UserId>,
        limit: u32,
    ) -> anyhow::Result<Vec<StoredWalletKey>> {
        let after = after.map_or(i64::MIN, |u| u.0);
        self.run(move |conn| {
            wallet_keys::table
                .filter(wallet_keys::user_id.gt(after))
                .order(wallet_keys::user_id.asc())
                .limit(i64::from(limit))
                .select(WalletKeyRow::as_select())
                .load(conn)
                .map(|rows| rows.into_iter().map(StoredWalletKey::from).collect())
                .context("listing wallet keys")
        })
        .await
    }

    #[tracing::instrument(skip_all, fields(user_id = %user))]
    async fn replace_wallet_key(
        &self,
        user: UserId,
        expected: SealedWalletKey,
        replacement: SealedWalletKey,
        at: DateTime<Utc>,
    ) -> anyhow::Result<bool> {
        self.run(move |conn| {
            diesel::update(
                wallet_keys::table
                    .filter(wallet_keys::user_id.eq(user.0))
                    .filter(wallet_keys::sealed_key.eq(expected.0)),
            )
            .set((
                wallet_keys::sealed_key.eq(replacement.0),
                wallet_keys::updated_at.eq(at.naive_utc()),
            ))
            .execute(conn)
            .map(|updated| updated == 1)
            .context("replacing a wallet key")
        })
        .await
    }
}
