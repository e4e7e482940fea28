//! One connection type for both backends, and how the pool opens it.

use std::time::Duration;

use diesel::connection::{AnsiTransactionManager, SimpleConnection, TransactionManager};
use diesel::prelude::*;
use diesel::r2d2::{self, R2D2Connection};
use diesel::sql_types::Text;

use crate::url::DatabaseUrl;

/// A connection to whichever database was configured. Queries are written once against it;
/// the rare statement the multi-backend cannot express goes through `on_each_backend!`.
///
/// Postgres is listed first: the derived `establish` tries variants in order and SQLite would
/// accept any string as a file name. We never call that `establish` ourselves (see `Manager`).
#[derive(diesel::MultiConnection)]
pub enum AnyConnection {
    Postgresql(PgConnection),
    Sqlite(SqliteConnection),
}

/// Runs `$body` with `$c` bound to the concrete connection, for statements the multi-backend
/// does not support although both databases do (`ON CONFLICT …`). The body is written once and
/// type-checked once per backend.
macro_rules! on_each_backend {
    ($conn:expr, $c:ident => $body:expr) => {
        match $conn {
            $crate::connection::AnyConnection::Postgresql($c) => $body,
            $crate::connection::AnyConnection::Sqlite($c) => $body,
        }
    };
}
pub(crate) use on_each_backend;

impl AnyConnection {
    /// A transaction for work that reads before it writes.
    ///
    /// On SQLite it starts with `BEGIN IMMEDIATE`, taking the write lock up front (waiting up
    /// to `busy_timeout` for it): a deferred transaction that has read cannot upgrade once
    /// another connection has written, and fails at once with `SQLITE_BUSY`, busy timeout or
    /// not. Postgres locks rows as it goes, so a plain `BEGIN` is right there.
    pub(crate) fn write_transaction<T, E, F>(&mut self, f: F) -> Result<T, E>
    where
        F: FnOnce(&mut Self) -> Result<T, E>,
        E: From<diesel::result::Error>,
    {
        match self {
            AnyConnection::Sqlite(sqlite) => {
                AnsiTransactionManager::begin_transaction_sql(sqlite, "BEGIN IMMEDIATE")?;
            }
            AnyConnection::Postgresql(_) => return self.transaction(f),
        }
        // From here on as in diesel's `TransactionManager::transaction`; commit and rollback go
        // through the multi-connection, which forwards to the same SQLite transaction manager.
        match f(self) {
            Ok(value) => {
                <Self as TransactionManager<Self>>::commit_transaction(self)?;
                Ok(value)
            }
            Err(error) => match <Self as TransactionManager<Self>>::rollback_transaction(self) {
                Ok(()) | Err(diesel::result::Error::BrokenTransactionManager) => Err(error),
                Err(rollback_error) => Err(rollback_error.into()),
            },
        }
    }
}

/// SQLite's `synchronous` setting under WAL: what a commit waits for before it returns.
///
/// Either way an application crash (`kill -9`) loses no acknowledged commit and corrupts
/// nothing. They differ on power loss or an OS crash: `Normal` syncs the WAL only at
/// checkpoints, so the last commits before the outage can roll back (the file stays
/// consistent); `Full` syncs the WAL on every commit, so they survive, at the price of one
/// fsync per write transaction.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum SqliteSynchronous {
    #[default]
    Normal,
    Full,
}

impl SqliteSynchronous {
    fn pragma(self) -> &'static str {
        match self {
            SqliteSynchronous::Normal => "PRAGMA synchronous = NORMAL;",
            SqliteSynchronous::Full => "PRAGMA synchronous = FULL;",
        }
    }
}

/// Per-connection SQLite settings (they do not persist in the file), before `synchronous`:
/// - `busy_timeout`: wait for a competing writer instead of failing with `SQLITE_BUSY`;
/// - `foreign_keys`: SQLite ignores `REFERENCES … ON DELETE CASCADE` unless asked.
const SQLITE_SESSION_PRAGMAS: &str = "PRAGMA busy_timeout = 5000; PRAGMA foreign_keys = ON;";

/// Opens connections for the r2d2 pool. Our own manager rather than diesel's
/// `ConnectionManager<AnyConnection>`, so the backend comes from the parsed URL and a failure
/// carries the real error instead of "Invalid connection url for multiconnection".
pub(crate) struct Manager {
    target: Target,
}

enum Target {
    Postgres(String),
    Sqlite {
        path: String,
        synchronous: SqliteSynchronous,
    },
}

impl Manager {
    pub(crate) fn new(
        url: &DatabaseUrl,
        connect_timeout: Duration,
        synchronous: SqliteSynchronous,
    ) -> anyhow::Result<Manager> {
        let connection_string = url.connection_string()?;
        let target = match url {
            DatabaseUrl::Postgres(_) => {
                Target::Postgres(with_connect_timeout(connection_string, connect_timeout))
            }
            DatabaseUrl::Sqlite(_) => Target::Sqlite {
                path: connection_string,
                synchronous,
            },
        };
        Ok(Manager { target })
    }
}

/// libpq waits for an unreachable host as long as the OS lets it unless told otherwise; the
/// pool's timeout should bound that too. An explicit `connect_timeout` in the URL wins.
fn with_connect_timeout(url: String, timeout: Duration) -> String {
    if url.contains("connect_timeout=") {
        return url;
    }
    // libpq counts whole seconds and treats anything below 2 as 2.
    let seconds = timeout.as_secs_f64().ceil().max(2.0);
    let separator = if url.contains('?') { '&' } else { '?' };
    format!("{url}{separator}connect_timeout={seconds}")
}

impl r2d2::ManageConnection for Manager {
    type Connection = AnyConnection;
    type Error = r2d2::Error;

    fn connect(&self) -> Result<AnyConnection, r2d2::Error> {
        match &self.target {
            Target::Postgres(url) => PgConnection::establish(url)
                .map(AnyConnection::Postgresql)
                .map_err(r2d2::Error::ConnectionError),
            Target::Sqlite { path, synchronous } => {
                let mut conn =
                    SqliteConnection::establish(path).map_err(r2d2::Error::ConnectionError)?;
                conn.batch_execute(SQLITE_SESSION_PRAGMAS)
                    .and_then(|()| conn.batch_execute(synchronous.pragma()))
                    .map_err(r2d2::Error::QueryError)?;
                Ok(AnyConnection::Sqlite(conn))
            }
        }
    }

    fn is_valid(&self, conn: &mut AnyConnection) -> Result<(), r2d2::Error> {
        conn.ping().map_err(r2d2::Error::QueryError)
    }

    fn has_broken(&self, conn: &mut AnyConnection) -> bool {
        // A connection dropped while panicking may be mid-transaction.
        std::thread::panicking() || conn.is_broken()
    }
}

#[derive(QueryableByName)]
struct JournalMode {
    #[diesel(sql_type = Text)]
    journal_mode: String,
}

/// Switches the file to write-ahead logging, so readers never block the writer. The mode is
/// stored in the database file, so once per start is enough.
pub(crate) fn enable_wal(conn: &mut SqliteConnection) -> anyhow::Result<()> {
    let mode = diesel::sql_query("PRAGMA journal_mode = WAL")
        .get_result::<JournalMode>(conn)
        .map_err(anyhow::Error::new)?
        .journal_mode;
    // SQLite answers with the mode in force, which stays the old one where WAL is impossible.
    if !mode.eq_ignore_ascii_case("wal") {
        tracing::warn!(
            journal_mode = %mode,
            "SQLite refused write-ahead logging; concurrent requests will contend more"
        );
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use diesel::r2d2::ManageConnection;
    use diesel::sql_types::Integer;

    use super::*;

    #[derive(QueryableByName)]
    struct Synchronous {
        #[diesel(sql_type = Integer)]
        synchronous: i32,
    }

    /// What `PRAGMA synchronous` reports on a connection the pool's manager opened.
    fn synchronous_of_a_new_connection(setting: SqliteSynchronous) -> i32 {
        let dir = tempfile::tempdir().unwrap();
        let url = DatabaseUrl::parse(dir.path().join("s.db").to_str().unwrap()).unwrap();
        let manager = Manager::new(&url, Duration::from_secs(1), setting).unwrap();
        let AnyConnection::Sqlite(mut conn) = manager.connect().unwrap() else {
            unreachable!("a SQLite URL")
        };
        diesel::sql_query("PRAGMA synchronous")
            .get_result::<Synchronous>(&mut conn)
            .unwrap()
            .synchronous
    }

    #[test]
    fn pooled_sqlite_connections_use_the_configured_synchronous_level() {
        // SQLite numbers the levels: 1 = NORMAL, 2 = FULL.
        assert_eq!(
            synchronous_of_a_new_connection(SqliteSynchronous::Normal),
            1
        );
        assert_eq!(synchronous_of_a_new_connection(SqliteSynchronous::Full), 2);
    }

    #[test]
    fn postgres_urls_get_a_connect_timeout_unless_they_have_one() {
        let two = Duration::from_secs(2);
        assert_eq!(
            with_connect_timeout("postgres://db/gw".into(), two),
            "postgres://db/gw?connect_timeout=2"
        );
        assert_eq!(
            with_connect_timeout("postgres://db/gw?sslmode=require".into(), two),
            "postgres://db/gw?sslmode=require&connect_timeout=2"
        );
        assert_eq!(
            with_connect_timeout("postgres://db/gw".into(), Duration::from_millis(2500)),
            "postgres://db/gw?connect_timeout=3"
        );
        assert_eq!(
            with_connect_timeout("postgres://db/gw?connect_timeout=30".into(), two),
            "postgres://db/gw?connect_timeout=30"
        );
    }
}
