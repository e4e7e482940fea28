//! The supervised background tasks across replicas: a singleton task (the session sweep)
//! never runs on two gateway processes at once.

use std::time::Duration;

use morpheus_router_sim::{Fault, FaultKind, FaultRoute};
use serde_json::Value;

use crate::market::{ask, spawn_market_app};
use crate::process::GatewayProcess;

/// `(started, finished)` of each session sweep a process logged, in µs since the epoch.
fn sweeps(logs: &[String]) -> Vec<(u64, u64)> {
    logs.iter()
        .filter_map(|line| serde_json::from_str::<Value>(line).ok())
        .filter(|e| {
            e["fields"]["message"] == "background task ran"
                && e["fields"]["task"] == "session_sweep"
        })
        .map(|e| {
            let at = |f: &str| e["fields"][f].as_u64().expect("a timestamp");
            (at("started_at"), at("finished_at"))
        })
        .collect()
}

#[tokio::test]
async fn two_gateway_processes_never_sweep_sessions_at_once() {
    let app = spawn_market_app().await;
    // Open sessions, each looked up upstream by every sweep: slowed down below, a sweep takes
    // about a second, so two replicas sweeping every second would overlap if nothing stopped
    // them.
    for _ in 0..3 {
        let user = app.seed_automated_user().await;
        let r = app.chat(&user.api_key, &ask("llama-3.3-70b", "hi")).await;
        assert_eq!(r.status(), 200);
    }
    app.sim.set_fault(Fault {
        route: FaultRoute::GetSession,
        kind: FaultKind::Latency { ms: 300 },
        times: None,
    });
    let env = [
        ("MORPHEUS_SESSION_SWEEP_SECONDS", "1"),
        ("RUST_LOG", "info,morpheus_gateway::supervisor=trace"),
    ];
    let first = GatewayProcess::beside(&app, &env).await;
    let second = GatewayProcess::beside(&app, &env).await;
    tokio::time::sleep(Duration::from_secs(8)).await;

    let (a, b) = (sweeps(&first.drain_logs()), sweeps(&second.drain_logs()));
    assert!(
        a.len() + b.len() >= 4,
        "sweeps ran: {} and {}",
        a.len(),
        b.len()
    );
    for (started, finished) in &a {
        for (other_started, other_finished) in &b {
            assert!(
                finished <= other_started || other_finished <= started,
                "sweeps overlapped: {started}–{finished} and {other_started}–{other_finished}"
            );
        }
    }
    // The lock was contended: some runs were left to the other process.
    let mut skipped = 0.0;
    for process in [&first, &second] {
        let metrics = app
            .client
            .get(process.url("/metrics"))
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        skipped += metrics
            .lines()
            .find(|l| l.starts_with("morpheus_task_skipped_total{task=\"session_sweep\"}"))
            .and_then(|l| l.rsplit(' ').next())
            .map_or(0.0, |n| n.parse::<f64>().unwrap());
    }
    assert!(skipped >= 1.0, "no sweep was ever skipped");
}
