//! F2: PostgreSQL. The F1 crash loop against a private cluster, then the cluster crashing
//! (`pg_ctl stop -m immediate`) under load and coming back: meanwhile the gateway answers fast
//! 503s, `/ready` says unavailable while `/health` stays 200, and it recovers by itself.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use morpheus_router_sim::{SimConfig, Simulator};
use reqwest::Client;
use serde_json::{Value, json};
use tokio::task::JoinHandle;

use super::crash_loop::{assert_nothing_lost, crash_loop, process_settings};
use super::pg_cluster::PgCluster;
use super::store::Store;
use super::workload::{Steering, WORKLOAD_ENV, lost_writes, run_writers};
use super::{env_number, http_client};
use crate::helpers::seed_user_at;
use crate::process::GatewayProcess;

/// The pool's wait for a connection (`MORPHEUS_DB_CONNECT_TIMEOUT_MS`, default 2000): the
/// longest a request may take while the database is down, plus scheduling slack.
const POOL_TIMEOUT: Duration = Duration::from_millis(2_000);
const SLACK: Duration = Duration::from_millis(1_500);

#[tokio::test]
#[ignore = "durability: run by .ci/durability.sh"]
async fn postgres_loses_no_acknowledged_write_to_kill_9() {
    let cluster = PgCluster::start();
    let store = Store::Postgres(cluster.create_database("gateway"));
    let cycles = usize::try_from(env_number("DURABILITY_PG_CYCLES", 3)).unwrap_or(3);
    let report = crash_loop(&store, cycles, &[]).await;
    assert_nothing_lost("F2 PostgreSQL, gateway killed", &report);
}

/// One request that needs the database, as the prober saw it.
struct Probe {
    sent: Instant,
    took: Duration,
    status: u16,
    /// The body is the documented error shape, `{"detail": …}`.
    detail: bool,
}

/// Every 100 ms, without waiting for the previous answer, a write that needs the database
/// (the key itself is checked from memory): `PUT /automation/settings`.
fn probe_every_100ms(base: String, key: String, stop: Arc<AtomicBool>) -> JoinHandle<Vec<Probe>> {
    tokio::spawn(async move {
        let client = http_client();
        let mut sent_probes = Vec::new();
        while !stop.load(Ordering::Relaxed) {
            let request = client
                .put(format!("{base}/api/v1/automation/settings"))
                .bearer_auth(&key)
                .json(&json!({"is_enabled": true}));
            sent_probes.push(tokio::spawn(async move {
                let sent = Instant::now();
                let r = request
                    .send()
                    .await
                    .expect("the gateway answers while the database is down");
                let status = r.status().as_u16();
                let body: Value = r.json().await.unwrap_or(Value::Null);
                Probe {
                    sent,
                    took: sent.elapsed(),
                    status,
                    detail: body["detail"].is_string(),
                }
            }));
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        let mut probes = Vec::new();
        for probe in sent_probes {
            probes.push(probe.await.expect("a probe panicked"));
        }
        probes
    })
}

async fn status_of(client: &Client, url: &str) -> (u16, Value) {
    let r = client.get(url).send().await.expect("the gateway answers");
    let status = r.status().as_u16();
    (status, r.json().await.unwrap_or(Value::Null))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "durability: run by .ci/durability.sh"]
async fn a_postgres_crash_gives_fast_503s_and_the_gateway_recovers_by_itself() {
    let cluster = PgCluster::start();
    let store = Store::Postgres(cluster.create_database("gateway"));
    // A proxy-router, so that `/ready` is 200 when the database is up.
    let sim = Simulator::start(SimConfig::default(), "127.0.0.1:0".parse().unwrap())
        .await
        .expect("the simulator starts");
    let data_dir = tempfile::tempdir().unwrap();
    let mut settings = process_settings(&store, data_dir.path());
    settings.proxy_router_url = Some(sim.base_url());
    let gateway = GatewayProcess::start(&settings, WORKLOAD_ENV).await;
    let base = gateway.address.clone();
    let client = http_client();
    let key = seed_user_at(&client, &base).await.api_key;
    assert_eq!(status_of(&client, &gateway.url("/ready")).await.0, 200);

    let steering = Steering::default();
    let writers = tokio::spawn({
        let (base, steering) = (base.clone(), steering.clone());
        async move { run_writers(&base, 16, steering).await }
    });
    let stop = steering.stop.clone();
    let prober = probe_every_100ms(base.clone(), key, stop.clone());
    tokio::time::sleep(Duration::from_millis(1_500)).await;

    // Liveness and readiness early in the outage, without delaying the restart: `/ready` may
    // wait the pool timeout for a connection, and must not see the database come back.
    let outage = Duration::from_secs(env_number("DURABILITY_PG_OUTAGE_SECONDS", 3));
    let early = Duration::from_millis(500);
    assert!(
        outage > early + POOL_TIMEOUT,
        "an outage of {outage:?} is too short to observe"
    );
    cluster.crash();
    let crashed = Instant::now();
    let during = tokio::spawn({
        let (client, health, ready) = (
            client.clone(),
            gateway.url("/health"),
            gateway.url("/ready"),
        );
        async move {
            tokio::time::sleep(early).await;
            // Together: each may wait the pool timeout.
            tokio::join!(status_of(&client, &health), status_of(&client, &ready))
        }
    });
    tokio::time::sleep(outage.saturating_sub(crashed.elapsed())).await;
    let restarting = Instant::now();
    cluster.start_server();
    let restarted = Instant::now();
    let mut ready_again = None;
    while restarted.elapsed() < Duration::from_secs(10) {
        if status_of(&client, &gateway.url("/ready")).await.0 == 200 {
            ready_again = Some(restarted.elapsed());
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    tokio::time::sleep(Duration::from_secs(1)).await;
    stop.store(true, Ordering::Relaxed);
    let probes = prober.await.unwrap();
    let ((health, health_body), (ready, ready_body)) = during.await.unwrap();
    let ledgers = writers.await.unwrap();
    let lost = lost_writes(&base, &store, &ledgers).await;

    let failed: Vec<&Probe> = probes.iter().filter(|p| p.status != 200).collect();
    let first_success_after_restart = probes
        .iter()
        .find(|p| p.sent > restarted && p.status == 200)
        .map(|p| p.sent + p.took);
    // From the crash until writes succeed again; the recovery is the part after the restart.
    let window = first_success_after_restart.map(|at| at - crashed);
    let recovered = first_success_after_restart.map(|at| at - restarted);
    let slowest = probes.iter().map(|p| p.took).max().unwrap_or_default();
    let acknowledged: usize = ledgers.iter().map(|u| u.acknowledged()).sum();
    println!(
        "F2 PostgreSQL crashed, restarted after {:?} (pg_ctl start took {:?}): {} probes, {} failed, error window {window:?} (crash to first success), \
         slowest answer {slowest:?}, recovered {recovered:?} after the restart (/ready: \
         {ready_again:?}), {acknowledged} acknowledged writes, {} lost",
        restarting - crashed,
        restarted - restarting,
        probes.len(),
        failed.len(),
        lost.len()
    );

    assert!(!failed.is_empty(), "the outage was not noticed");
    for probe in &failed {
        assert!(
            probe.status == 503 && probe.detail,
            "a request during the outage answered {} (JSON detail: {})",
            probe.status,
            probe.detail
        );
    }
    assert!(
        slowest <= POOL_TIMEOUT + SLACK,
        "a request took {slowest:?}"
    );
    assert_eq!(health, 200, "/health during the outage: {health_body}");
    assert_eq!(ready, 503, "/ready during the outage: {ready_body}");
    assert_eq!(ready_body["database"], "unhealthy", "{ready_body}");
    let recovered = recovered.expect("writes never succeeded again after the restart");
    assert!(
        recovered <= Duration::from_secs(5),
        "recovery took {recovered:?}"
    );
    assert!(lost.is_empty(), "lost acknowledged writes: {lost:#?}");
}
