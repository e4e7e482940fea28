//! F1: the gateway killed with SIGKILL under write load, again and again, on a SQLite file in
//! WAL mode; after each crash the file must be intact and every acknowledged write present.
//! (F2 runs the same loop on PostgreSQL.)

use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use morpheus_gateway::configuration::Settings;

use super::env_number;
use super::store::Store;
use super::workload::{Steering, WORKLOAD_ENV, lost_writes, run_writers};
use crate::process::GatewayProcess;

/// How many writers the guide asks for.
const WRITERS: usize = 32;

/// Totals over a crash loop.
#[derive(Debug, Default)]
pub struct CrashReport {
    pub crashes: usize,
    pub acknowledged: usize,
    pub lost: Vec<String>,
    pub corrupt: Vec<String>,
}

/// Settings for a gateway process on `store` keeping its secrets under `data_dir`.
pub fn process_settings(store: &Store, data_dir: &std::path::Path) -> Settings {
    Settings {
        database_url: store.url(),
        data_dir: data_dir.to_path_buf(),
        ..Settings::default()
    }
}

/// A pseudo-random duration in `[min, max]`: where in the load the kill lands.
fn random_between(min: Duration, max: Duration) -> Duration {
    let spread = max.saturating_sub(min).as_millis().max(1);
    let random = uuid::Uuid::new_v4().as_u128() % spread;
    min + Duration::from_millis(u64::try_from(random).unwrap_or(0))
}

/// `cycles` times: start the gateway on `store`, write with 32 writers, SIGKILL it at a random
/// moment, check the store at rest, restart and check every acknowledged write.
pub async fn crash_loop(store: &Store, cycles: usize, extra_env: &[(&str, &str)]) -> CrashReport {
    let data_dir = tempfile::tempdir().expect("a data directory");
    let settings = process_settings(store, data_dir.path());
    let env: Vec<(&str, &str)> = WORKLOAD_ENV.iter().chain(extra_env).copied().collect();
    let kill_max = Duration::from_millis(env_number("DURABILITY_KILL_MAX_MS", 2_000));
    let mut report = CrashReport::default();
    for cycle in 1..=cycles {
        let mut gateway = GatewayProcess::start(&settings, &env).await;
        let steering = Steering::default();
        let writers = tokio::spawn({
            let (base, steering) = (gateway.address.clone(), steering.clone());
            async move { run_writers(&base, WRITERS, steering).await }
        });
        // The clock starts once every writer has its first account: before that the load is
        // all password hashing, and a short run would crash little else.
        let warming = Instant::now();
        while steering.warmed_up.load(Ordering::Relaxed) < WRITERS
            && warming.elapsed() < Duration::from_secs(30)
        {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        let kill_after = random_between(Duration::from_millis(500), kill_max);
        tokio::time::sleep(kill_after).await;
        gateway.child.kill().expect("SIGKILL");
        gateway.child.wait().expect("the gateway is reaped");
        steering.stop.store(true, Ordering::Relaxed);
        let ledgers = writers.await.expect("the writers finish");
        report.crashes += 1;

        let corrupt = store.corruption();
        let mut restarted = GatewayProcess::start(&settings, &env).await;
        let checked = Instant::now();
        let mut lost = lost_writes(&restarted.address, store, &ledgers).await;
        if let Some(exit) = restarted.child.try_wait().expect("try_wait") {
            let logs = restarted.drain_logs();
            let last = &logs[logs.len().saturating_sub(20)..];
            lost.push(format!(
                "the restarted gateway exited ({exit}); its last logs: {last:#?}"
            ));
        }
        let acknowledged: usize = ledgers.iter().map(|u| u.acknowledged()).sum();
        println!(
            "cycle {cycle}: killed {kill_after:?} into the mixed load, {} users, {acknowledged} acknowledged \
             writes, {} lost, {} corrupt (checked in {:?})",
            ledgers.len(),
            lost.len(),
            corrupt.len(),
            checked.elapsed()
        );
        report.acknowledged += acknowledged;
        report.lost.extend(lost);
        report.corrupt.extend(corrupt);
        drop(restarted);
    }
    report
}

/// Asserts a crash loop's report after printing it in the README's terms.
pub fn assert_nothing_lost(label: &str, report: &CrashReport) {
    println!(
        "{label}: {} crashes, {} acknowledged writes, {} lost, {} corrupt",
        report.crashes,
        report.acknowledged,
        report.lost.len(),
        report.corrupt.len()
    );
    assert!(report.acknowledged > 0, "{label}: nothing was acknowledged");
    assert!(report.lost.is_empty(), "{label}: lost {:#?}", report.lost);
    assert!(report.corrupt.is_empty(), "{label}: {:#?}", report.corrupt);
}

async fn sqlite_crash_loop(synchronous: &str) {
    let dir = tempfile::tempdir().expect("a temporary directory");
    let store = Store::Sqlite(dir.path().join("gateway.db"));
    let cycles = env_number("DURABILITY_CYCLES", 5);
    let report = crash_loop(
        &store,
        usize::try_from(cycles).unwrap_or(5),
        &[("MORPHEUS_SQLITE_SYNCHRONOUS", synchronous)],
    )
    .await;
    assert_nothing_lost(&format!("F1 SQLite synchronous={synchronous}"), &report);
}

#[tokio::test]
#[ignore = "durability: run by .ci/durability.sh"]
async fn sqlite_normal_loses_no_acknowledged_write_to_kill_9() {
    sqlite_crash_loop("normal").await;
}

#[tokio::test]
#[ignore = "durability: run by .ci/durability.sh"]
async fn sqlite_full_loses_no_acknowledged_write_to_kill_9() {
    sqlite_crash_loop("full").await;
}
