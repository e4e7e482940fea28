//! Storage for the Morpheus gateway: diesel over SQLite (the default, one file) or PostgreSQL,
//! chosen from the database URL at start-up.
//!
//! [`Database`] implements every repository port of [`morpheus_domain::ports`]. Diesel is
//! synchronous, so each call runs on tokio's blocking pool through one bridge
//! (`Database::run`); no query runs anywhere else.
//!
//! [`BatchedUsageWriter`] is the gateway's `UsageSink`: it queues usage records and writes
//! them in batches from a background task, off the requests' path.
//!
//! Errors are `anyhow` chains with context such as "inserting an API key". They are meant for
//! the logs: the HTTP layer answers an opaque 500, and database details (SQL, constraint
//! names) never reach clients.

mod bridge;
mod connection;
mod database;
mod migrations;
pub mod private_files;
mod repositories;
mod schema;
mod task_locks;
mod unavailable;
mod url;
mod usage_writer;

pub use connection::{AnyConnection, SqliteSynchronous};
pub use database::{Database, PoolOptions};
pub use task_locks::{TaskLockGuard, TaskLocks};
pub use url::DatabaseUrl;
pub use usage_writer::{BatchedUsageWriter, UsageWriterOptions, UsageWriterTask};
