//! The one way from async code to the synchronous diesel connection.

use morpheus_domain::ports::StorageUnavailable;

use crate::connection::AnyConnection;
use crate::database::Database;
use crate::unavailable::MarkOutage;

impl Database {
    /// Runs `f` with a pooled connection on tokio's blocking pool, so neither waiting for a
    /// connection nor the query itself stalls an async worker. Every repository method goes
    /// through here.
    ///
    /// The caller's span is re-entered on the blocking thread, so diesel's and our events keep
    /// the request's context; a panic in `f` is re-raised in the caller, as if `f` ran inline.
    /// `E` is `anyhow::Error` or a port's error enum with an `Unknown(anyhow::Error)` variant.
    /// When no connection can be had in time (database down, pool exhausted), or the query
    /// fails for a passing reason (server gone, disk full, lock timeout), the error's root is
    /// [`StorageUnavailable`], which the HTTP layer answers with 503 rather than 500.
    pub(crate) async fn run<T, E, F>(&self, f: F) -> Result<T, E>
    where
        F: FnOnce(&mut AnyConnection) -> Result<T, E> + Send + 'static,
        T: Send + 'static,
        E: From<anyhow::Error> + MarkOutage + Send + 'static,
    {
        let pool = self.pool.clone();
        blocking(move || {
            // Inside the closure: `get` blocks until a connection is free.
            let mut conn = pool.get().map_err(|pool_error| {
                // The marker must be the root (the API looks for it in the chain); the
                // pool's reason, for the log, goes into the context.
                anyhow::Error::new(StorageUnavailable).context(format!(
                    "taking a connection from the database pool: {pool_error}"
                ))
            })?;
            f(&mut conn).map_err(MarkOutage::mark_outage)
        })
        .await
    }
}

/// Runs `f` on tokio's blocking pool, in the caller's span; a panic in `f` is re-raised in the
/// caller. [`Database::run`] and the task locks' dedicated connection go through here.
pub(crate) async fn blocking<T, E, F>(f: F) -> Result<T, E>
where
    F: FnOnce() -> Result<T, E> + Send + 'static,
    T: Send + 'static,
    E: From<anyhow::Error> + Send + 'static,
{
    let span = tracing::Span::current();
    let task = tokio::task::spawn_blocking(move || span.in_scope(f));
    match task.await {
        Ok(result) => result,
        Err(join_error) if join_error.is_panic() => {
            std::panic::resume_unwind(join_error.into_panic())
        }
        Err(join_error) => Err(anyhow::Error::new(join_error)
            .context("the database task was cancelled")
            .into()),
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use morpheus_domain::ports::StorageUnavailable;

    use crate::{Database, DatabaseUrl, PoolOptions, SqliteSynchronous};

    fn sqlite(dir: &tempfile::TempDir, options: PoolOptions) -> Database {
        let path = dir.path().join("t.db");
        let url = DatabaseUrl::parse(path.to_str().unwrap()).unwrap();
        Database::connect(&url, options).unwrap()
    }

    #[tokio::test]
    #[should_panic(expected = "boom in the closure")]
    async fn a_panic_in_the_closure_reaches_the_caller() {
        let dir = tempfile::tempdir().unwrap();
        let db = sqlite(
            &dir,
            PoolOptions {
                max_size: 2,
                connection_timeout: Duration::from_secs(2),
                sqlite_synchronous: SqliteSynchronous::Normal,
            },
        );
        let _: anyhow::Result<()> = db.run(|_conn| panic!("boom in the closure")).await;
    }

    #[tokio::test]
    async fn no_free_connection_in_time_is_reported_as_unavailable() {
        let dir = tempfile::tempdir().unwrap();
        let db = sqlite(
            &dir,
            PoolOptions {
                max_size: 1,
                connection_timeout: Duration::from_millis(200),
                sqlite_synchronous: SqliteSynchronous::Normal,
            },
        );
        let _only_connection = db.pool.get().unwrap();
        let error = db
            .run(|_conn| Ok::<_, anyhow::Error>(()))
            .await
            .unwrap_err();
        assert!(
            error.chain().any(|cause| cause.is::<StorageUnavailable>()),
            "{error:?}"
        );
    }
}
