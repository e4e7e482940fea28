//! Embedded schema migrations, one set per backend: the SQL differs, and both sets record
//! themselves in the same `__diesel_schema_migrations` table.

use anyhow::Context;
use diesel_migrations::{EmbeddedMigrations, MigrationHarness, embed_migrations};

use crate::connection::AnyConnection;
use crate::database::Database;

const SQLITE_MIGRATIONS: EmbeddedMigrations = embed_migrations!("migrations/sqlite");
const POSTGRES_MIGRATIONS: EmbeddedMigrations = embed_migrations!("migrations/postgres");

impl Database {
    /// Applies the migrations this database has not seen yet; running it again is a no-op.
    ///
    /// # Errors
    /// A migration failed (it is rolled back) or the database is unreachable.
    pub async fn migrate(&self) -> anyhow::Result<()> {
        let (applied, clashing) = self
            .run(|conn| {
                let applied = match conn {
                    AnyConnection::Sqlite(c) => c.run_pending_migrations(SQLITE_MIGRATIONS),
                    AnyConnection::Postgresql(c) => c.run_pending_migrations(POSTGRES_MIGRATIONS),
                }
                .map_err(|e| anyhow::anyhow!(e))
                .context("running database migrations")?
                .iter()
                .map(ToString::to_string)
                .collect::<Vec<_>>();
                let clashing = crate::repositories::users::fill_email_skeletons(conn)?;
                Ok::<_, anyhow::Error>((applied, clashing))
            })
            .await?;
        if clashing > 0 {
            tracing::warn!(
                accounts = clashing,
                "accounts made before look-alike addresses were refused share their address's \
                 skeleton with an older account; each still logs in with its exact address"
            );
        }
        if applied.is_empty() {
            tracing::info!(
                backend = self.backend_name(),
                "database schema is up to date"
            );
        } else {
            tracing::info!(
                backend = self.backend_name(),
                migrations = ?applied,
                "applied database migrations"
            );
        }
        Ok(())
    }

    /// The migrations not yet applied to this database (for `admin doctor`, which does not
    /// apply them).
    ///
    /// # Errors
    /// The database is unreachable, or its migration table cannot be read.
    pub async fn pending_migrations(&self) -> anyhow::Result<Vec<String>> {
        self.run(|conn| {
            let pending = match conn {
                AnyConnection::Sqlite(c) => c
                    .pending_migrations(SQLITE_MIGRATIONS)
                    .map(|m| m.iter().map(|m| m.name().to_string()).collect()),
                AnyConnection::Postgresql(c) => c
                    .pending_migrations(POSTGRES_MIGRATIONS)
                    .map(|m| m.iter().map(|m| m.name().to_string()).collect()),
            };
            pending
                .map_err(|e| anyhow::anyhow!(e))
                .context("reading which migrations are applied")
        })
        .await
    }
}
