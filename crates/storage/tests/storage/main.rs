//! Integration tests of the storage crate, in one binary. Every test runs against a fresh
//! SQLite file and, when `MORPHEUS_TEST_DATABASE_URL` points at a PostgreSQL server (for
//! example `postgres://postgres@127.0.0.1:5432/test`), against a fresh database there too.

mod harness;

mod account_deletion;
mod api_keys;
mod automation;
mod connecting;
mod delegations;
mod migrations_redo;
mod refresh_tokens;
mod session_pool;
mod sessions;
mod task_locks;
mod usage;
mod users;
mod wallet_keys;
