//! Singleton background tasks across replicas: a task that must not run on two replicas at
//! once (the session sweep, reconciliations) takes its lock for each run, and skips the run
//! when another replica holds it.
//!
//! - PostgreSQL: a session-level advisory lock, `pg_try_advisory_lock(class, crc32(task))`, on
//!   one connection of its own (not one of the pool's). A replica that dies, or loses that
//!   connection, releases its locks with it.
//! - SQLite: an exclusive lock (`flock`) on a file beside the database, per task, so that
//!   processes sharing one database file on one machine exclude each other too. The lock goes
//!   with the process.

use std::collections::HashSet;
use std::fs::File;
use std::path::PathBuf;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use anyhow::Context;
use diesel::RunQueryDsl;
use diesel::r2d2::ManageConnection;
use diesel::sql_types::{Bool, Integer};

use crate::bridge::blocking;
use crate::connection::{AnyConnection, Manager};

/// The advisory locks' first key, `MGTW`: the second is the task name's CRC-32. Both show in
/// `pg_locks` (`classid`, `objid`).
const LOCK_CLASS: i32 = 0x4d47_5457;

/// Takes the locks of singleton tasks. Cloning shares the lock connection.
#[derive(Clone)]
pub struct TaskLocks {
    inner: Inner,
    /// The tasks whose lock this replica holds: PostgreSQL's advisory locks are reentrant on
    /// one connection, and would let a replica take a lock twice.
    held: Arc<Mutex<HashSet<String>>>,
}

#[derive(Clone)]
enum Inner {
    Postgres {
        /// Opens the lock connection, as the pool opens its own.
        manager: Arc<Manager>,
        /// Opened at the first lock; dropped (and reopened next time) after an error.
        conn: Arc<Mutex<Option<AnyConnection>>>,
    },
    Sqlite {
        /// The database file: locks are `<file>.task-<name>.lock`.
        database: PathBuf,
    },
}

/// A held lock. [`TaskLockGuard::release`] gives it back; dropping it does too (at once for
/// SQLite, on a blocking thread for PostgreSQL).
pub struct TaskLockGuard {
    lock: Option<Held>,
    task: String,
    held: Arc<Mutex<HashSet<String>>>,
}

enum Held {
    Postgres {
        conn: Arc<Mutex<Option<AnyConnection>>>,
        key: i32,
    },
    Sqlite(#[allow(dead_code, reason = "held for its lock, released when closed")] File),
}

#[derive(diesel::QueryableByName)]
struct Locked {
    #[diesel(sql_type = Bool)]
    locked: bool,
}

impl TaskLocks {
    pub(crate) fn postgres(manager: Manager) -> Self {
        Self::new(Inner::Postgres {
            manager: Arc::new(manager),
            conn: Arc::default(),
        })
    }

    pub(crate) fn sqlite(database: PathBuf) -> Self {
        Self::new(Inner::Sqlite { database })
    }

    fn new(inner: Inner) -> Self {
        Self {
            inner,
            held: Arc::default(),
        }
    }

    /// Takes `task`'s lock if no other replica holds it.
    ///
    /// # Errors
    /// When the database (or the lock file) cannot be reached.
    pub async fn try_acquire(&self, task: &str) -> anyhow::Result<Option<TaskLockGuard>> {
        if !lock(&self.held).insert(task.to_owned()) {
            return Ok(None);
        }
        let acquired = self.acquire(task).await;
        if !matches!(acquired, Ok(Some(_))) {
            lock(&self.held).remove(task);
        }
        Ok(acquired?.map(|held| TaskLockGuard {
            lock: Some(held),
            task: task.to_owned(),
            held: self.held.clone(),
        }))
    }

    async fn acquire(&self, task: &str) -> anyhow::Result<Option<Held>> {
        match &self.inner {
            Inner::Postgres { manager, conn } => {
                let (manager, conn, key) = (manager.clone(), conn.clone(), key(task));
                blocking(move || {
                    let locked = with_lock_connection(&manager, &conn, |c| {
                        advisory(c, "SELECT pg_try_advisory_lock($1, $2) AS locked", key)
                    })?;
                    Ok(locked.then_some(Held::Postgres { conn, key }))
                })
                .await
            }
            Inner::Sqlite { database } => {
                let mut path = database.clone().into_os_string();
                path.push(format!(".task-{task}.lock"));
                let path = PathBuf::from(path);
                blocking(move || {
                    let file = crate::private_files::private_file_options()
                        .create(true)
                        .truncate(false)
                        .write(true)
                        .open(&path)
                        .with_context(|| format!("opening the task lock {}", path.display()))?;
                    match file.try_lock() {
                        Ok(()) => Ok(Some(Held::Sqlite(file))),
                        Err(std::fs::TryLockError::WouldBlock) => Ok(None),
                        Err(std::fs::TryLockError::Error(e)) => {
                            Err(anyhow::Error::new(e)
                                .context(format!("locking {}", path.display())))
                        }
                    }
                })
                .await
            }
        }
    }
}

impl TaskLockGuard {
    /// Gives the lock back.
    pub async fn release(mut self) {
        if let Some(held) = self.lock.take() {
            let _: anyhow::Result<()> = blocking(move || {
                unlock(held);
                Ok(())
            })
            .await;
        }
        lock(&self.held).remove(&self.task);
    }
}

impl Drop for TaskLockGuard {
    fn drop(&mut self) {
        let Some(held) = self.lock.take() else { return };
        let (task, set) = (std::mem::take(&mut self.task), self.held.clone());
        let release = move || {
            unlock(held);
            lock(&set).remove(&task);
        };
        match tokio::runtime::Handle::try_current() {
            Ok(runtime) => drop(runtime.spawn_blocking(release)),
            Err(_) => release(),
        }
    }
}

fn unlock(held: Held) {
    if let Held::Postgres { conn, key } = held {
        let unlocked = lock(&conn)
            .as_mut()
            .map(|c| advisory(c, "SELECT pg_advisory_unlock($1, $2) AS locked", key));
        if let Some(Err(error)) = unlocked {
            // The connection is dropped: closing it releases every lock it held.
            tracing::warn!(error.cause_chain = ?error, "releasing a task lock failed; reconnecting");
            lock(&conn).take();
        }
    }
}

fn with_lock_connection<T>(
    manager: &Manager,
    conn: &Mutex<Option<AnyConnection>>,
    f: impl FnOnce(&mut AnyConnection) -> anyhow::Result<T>,
) -> anyhow::Result<T> {
    let mut slot = lock(conn);
    if slot.is_none() {
        *slot = Some(
            manager
                .connect()
                .context("opening the connection for task locks")?,
        );
    }
    let result = f(slot.as_mut().expect("just opened"));
    if result.is_err() {
        // A broken connection has lost its locks anyway; the next call opens a new one.
        slot.take();
    }
    result
}

fn advisory(conn: &mut AnyConnection, query: &str, key: i32) -> anyhow::Result<bool> {
    let AnyConnection::Postgresql(pg) = conn else {
        anyhow::bail!("advisory locks need PostgreSQL");
    };
    let row: Locked = diesel::sql_query(query)
        .bind::<Integer, _>(LOCK_CLASS)
        .bind::<Integer, _>(key)
        .get_result(pg)
        .context("an advisory lock query")?;
    Ok(row.locked)
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

/// The task's name as the lock's second key.
fn key(task: &str) -> i32 {
    i32::from_ne_bytes(crc32fast::hash(task.as_bytes()).to_ne_bytes())
}
