use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};

use morpheus_storage::{Database, DatabaseUrl, PoolOptions, SqliteSynchronous};

use super::*;

fn database(dir: &tempfile::TempDir) -> Database {
    let url = DatabaseUrl::parse(dir.path().join("gw.db").to_str().unwrap()).unwrap();
    let options = PoolOptions {
        max_size: 1,
        connection_timeout: Duration::from_secs(2),
        sqlite_synchronous: SqliteSynchronous::Normal,
    };
    Database::connect(&url, options).unwrap()
}

fn counting(
    runs: &Arc<AtomicU32>,
    fail: bool,
) -> impl FnMut() -> std::future::Ready<anyhow::Result<()>> + use<> {
    let runs = runs.clone();
    move || {
        runs.fetch_add(1, Ordering::SeqCst);
        std::future::ready(if fail {
            Err(anyhow::anyhow!("it failed"))
        } else {
            Ok(())
        })
    }
}

#[test]
fn pauses_vary_within_a_tenth_of_the_interval() {
    let every = Duration::from_secs(10);
    let pauses: Vec<Duration> = (0..1000).map(|_| jittered(every)).collect();
    assert!(
        pauses
            .iter()
            .all(|p| *p >= Duration::from_secs(9) && *p <= Duration::from_secs(11))
    );
    assert!(pauses.iter().any(|p| *p < Duration::from_millis(9_500)));
    assert!(pauses.iter().any(|p| *p > Duration::from_millis(10_500)));
}

#[tokio::test]
async fn tasks_run_are_measured_and_stop_with_the_supervisor_before_its_hooks() {
    let dir = tempfile::tempdir().unwrap();
    let metrics = Metrics::new();
    let mut supervisor = Supervisor::new(metrics.clone(), database(&dir).task_locks());
    let (ok_runs, failed_runs) = (Arc::new(AtomicU32::new(0)), Arc::new(AtomicU32::new(0)));
    supervisor
        .every("works", Duration::from_millis(20))
        .spawn(counting(&ok_runs, false));
    supervisor
        .every("fails", Duration::from_millis(20))
        .spawn(counting(&failed_runs, true));
    let later = Arc::new(AtomicU32::new(0));
    supervisor
        .every("later", Duration::from_secs(3600))
        .first_run_after_interval()
        .spawn(counting(&later, false));
    let hook_saw = Arc::new(AtomicU32::new(u32::MAX));
    let (runs, seen) = (ok_runs.clone(), hook_saw.clone());
    supervisor.at_shutdown("check", async move {
        seen.store(runs.load(Ordering::SeqCst), Ordering::SeqCst);
    });
    tokio::time::sleep(Duration::from_millis(200)).await;
    supervisor.shutdown().await;

    let ran = ok_runs.load(Ordering::SeqCst);
    assert!((3..=12).contains(&ran), "{ran} runs in 200 ms at 20 ms");
    assert_eq!(
        hook_saw.load(Ordering::SeqCst),
        ran,
        "the hook ran after the last run"
    );
    assert_eq!(later.load(Ordering::SeqCst), 0);
    tokio::time::sleep(Duration::from_millis(60)).await;
    assert_eq!(ok_runs.load(Ordering::SeqCst), ran, "no run after shutdown");

    let text = metrics.encode();
    let failures = failed_runs.load(Ordering::SeqCst);
    assert!(
        text.contains(&format!(
            "morpheus_task_failures_total{{task=\"fails\"}} {failures}"
        )),
        "{text}"
    );
    assert!(
        text.contains(&format!(
            "morpheus_task_duration_seconds_count{{task=\"works\"}} {ran}"
        )),
        "{text}"
    );
    assert!(
        text.contains("morpheus_task_last_success_timestamp_seconds{task=\"works\"} 1"),
        "{text}"
    );
    assert!(
        !text.contains("morpheus_task_last_success_timestamp_seconds{task=\"fails\"}"),
        "{text}"
    );
}

#[tokio::test]
async fn a_singleton_task_skips_its_runs_while_another_replica_holds_it() {
    let dir = tempfile::tempdir().unwrap();
    let db = database(&dir);
    let other_replica = database(&dir).task_locks();
    let held = other_replica.try_acquire("sweep").await.unwrap().unwrap();
    let metrics = Metrics::new();
    let mut supervisor = Supervisor::new(metrics.clone(), db.task_locks());
    let runs = Arc::new(AtomicU32::new(0));
    supervisor
        .every("sweep", Duration::from_millis(20))
        .on_one_replica()
        .spawn(counting(&runs, false));
    tokio::time::sleep(Duration::from_millis(150)).await;
    assert_eq!(runs.load(Ordering::SeqCst), 0);
    assert!(
        metrics
            .encode()
            .contains("morpheus_task_skipped_total{task=\"sweep\"}")
    );

    held.release().await;
    tokio::time::sleep(Duration::from_millis(150)).await;
    assert!(
        runs.load(Ordering::SeqCst) > 0,
        "runs once the other replica let go"
    );
    supervisor.shutdown().await;
}

#[tokio::test(start_paused = true)]
async fn a_run_that_outlasts_the_grace_is_abandoned_at_shutdown() {
    let dir = tempfile::tempdir().unwrap();
    let mut supervisor = Supervisor::new(Metrics::new(), database(&dir).task_locks());
    supervisor
        .every("stuck", Duration::from_secs(1))
        .spawn(std::future::pending::<anyhow::Result<()>>);
    tokio::time::sleep(Duration::from_millis(20)).await;
    let started = Instant::now();
    supervisor.shutdown().await;
    let took = started.elapsed();
    assert!(
        took >= RUN_GRACE && took < RUN_GRACE + Duration::from_secs(2),
        "{took:?}"
    );
}
