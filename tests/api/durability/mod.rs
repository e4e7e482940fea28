//! Data durability (reliability guide, section F). Each check is one file:
//!
//! - `crash_loop`: F1, `kill -9` under write load on SQLite, `synchronous` NORMAL and FULL;
//! - `postgres`: F2, the same loop on a private PostgreSQL cluster, then the cluster itself
//!   crashing and coming back under load;
//! - `concurrency`: F3, concurrent writers and usage increments (normal suite);
//! - `disk_full`: F4's full disk (migration redo is in the storage crate's tests).
//!
//! The checks that need root, a cluster of their own or minutes of running are `#[ignore]`d
//! and run by `.ci/durability.sh [--long]`, which sets the `DURABILITY_*` sizes below.

mod concurrency;
mod crash_loop;
mod disk_full;
mod pg_cluster;
mod postgres;
mod store;
mod workload;

/// A size from the environment (`.ci/durability.sh --long` raises them), else `default`.
fn env_number(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|value| value.parse().ok())
        .unwrap_or(default)
}

/// An HTTP client with a timeout, so a hung gateway fails the check instead of stalling it.
fn http_client() -> reqwest::Client {
    // reqwest's rustls has no default crypto provider; an error means one is installed.
    let _ = rustls::crypto::ring::default_provider().install_default();
    reqwest::Client::builder()
        .timeout(std::time::Duration::from_secs(30))
        .build()
        .expect("client")
}
