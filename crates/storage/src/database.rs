//! The handle the rest of the gateway holds: a pool of connections to one database.

use std::fmt;
use std::time::Duration;

use anyhow::Context;
use diesel::r2d2::{ManageConnection, Pool};

use crate::connection::{AnyConnection, Manager, SqliteSynchronous, enable_wal};
use crate::task_locks::TaskLocks;
use crate::url::DatabaseUrl;

/// How many connections to keep and how long a caller waits for one.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PoolOptions {
    pub max_size: u32,
    /// How long to wait for a free connection, and for a new one to open: with the database
    /// down, requests fail after this instead of piling up.
    pub connection_timeout: Duration,
    /// How hard SQLite pushes each commit to disk; PostgreSQL ignores it.
    pub sqlite_synchronous: SqliteSynchronous,
}

/// The database: implements every repository port of `morpheus_domain::ports`. Cloning is
/// cheap and shares the pool.
#[derive(Clone)]
pub struct Database {
    pub(crate) pool: Pool<Manager>,
    backend: Backend,
    locks: TaskLocks,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Backend {
    Postgres,
    Sqlite,
}

impl fmt::Debug for Database {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Database")
            .field("backend", &self.backend_name())
            .field("connections", &self.pool.state().connections)
            .finish()
    }
}

impl Database {
    /// Opens the pool. Blocks while the first connections are made, so call it at start-up.
    /// For SQLite, creates the file and its directory if needed, owner-only (0600 and 0700),
    /// and switches the file to WAL.
    ///
    /// # Errors
    /// The database cannot be reached (within `connection_timeout`) or opened.
    pub fn connect(url: &DatabaseUrl, options: PoolOptions) -> anyhow::Result<Database> {
        let backend = match url {
            DatabaseUrl::Postgres(_) => Backend::Postgres,
            DatabaseUrl::Sqlite(path) => {
                if let Some(dir) = path.parent().filter(|dir| !dir.as_os_str().is_empty()) {
                    crate::private_files::create_private_dir_all(dir).with_context(|| {
                        format!("creating the directory of the SQLite database {url}")
                    })?;
                }
                // Owner-only before SQLite opens it: its -wal and -shm files take its mode.
                crate::private_files::create_private_file(path)
                    .with_context(|| format!("creating the SQLite database {url}"))?;
                Backend::Sqlite
            }
        };
        let manager = Manager::new(url, options.connection_timeout, options.sqlite_synchronous)?;
        // One connection by hand first: r2d2 would only report "timed out" after waiting, while
        // this fails at once with the database's own reason. It also sets WAL, which persists.
        let mut first = manager
            .connect()
            .with_context(|| format!("connecting to the database at {url}"))?;
        if let AnyConnection::Sqlite(sqlite) = &mut first {
            enable_wal(sqlite).with_context(|| format!("enabling WAL on {url}"))?;
        }
        drop(first);
        let pool = Pool::builder()
            .max_size(options.max_size)
            .connection_timeout(options.connection_timeout)
            .build(manager)
            .with_context(|| format!("opening a connection pool to {url}"))?;
        let locks = match url {
            DatabaseUrl::Sqlite(path) => TaskLocks::sqlite(path.clone()),
            DatabaseUrl::Postgres(_) => TaskLocks::postgres(Manager::new(
                url,
                options.connection_timeout,
                options.sqlite_synchronous,
            )?),
        };
        Ok(Database {
            pool,
            backend,
            locks,
        })
    }

    /// The locks of singleton background tasks (see [`TaskLocks`]).
    pub fn task_locks(&self) -> TaskLocks {
        self.locks.clone()
    }

    /// `"sqlite"` or `"postgres"`, for logs and the health report.
    pub fn backend_name(&self) -> &'static str {
        match self.backend {
            Backend::Postgres => "postgres",
            Backend::Sqlite => "sqlite",
        }
    }
}
