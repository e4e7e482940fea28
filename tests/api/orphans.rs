//! Orphaned sessions: an open the node answered with an error after its transaction was mined
//! leaves a paid session on chain that the gateway never recorded. Once the open's recovery
//! window has passed, the janitor finds it in the node wallet's list and adopts it into the
//! shared pool, or closes it when its end has passed; none is left behind.

use std::sync::Arc;
use std::time::Duration;

use chrono::Utc;
use morpheus_domain::services::{CatalogueOptions, ModelCatalogue, SessionJanitor};
use morpheus_gateway::configuration::Settings;
use morpheus_router_sim::{Fault, FaultKind, FaultRoute, MinedError};

use crate::market::{MarketApp, ask, spawn_market_app_with};

/// No recovery by the upstream client, and a short open limit: the janitor's grace (the
/// open's limit, its recovery window and 5 s) is then 6 s.
fn without_open_recovery(s: &mut Settings) {
    s.proxy_router_open_recovery_ms = 0;
    s.proxy_router_open_timeout_ms = 1_000;
}

/// A chat whose session open fails with `parse session receipt failed` although the session
/// was mined; it shows up in reads only after the client's single look (a lagging RPC node).
/// Returns the orphan's id.
async fn orphan_from_a_failed_open(app: &MarketApp, key: &str) -> String {
    app.sim.set_fault(Fault {
        route: FaultRoute::OpenSession,
        kind: FaultKind::OpenFailsAfterMining {
            error: MinedError::ParseReceipt,
            visible_after_ms: 1_500,
        },
        times: Some(1),
    });
    let r = app.chat(key, &ask("llama-3.3-70b", "hi")).await;
    assert!(r.status().is_server_error(), "{}", r.status());
    let ids = app.sim.session_ids();
    assert_eq!(
        ids.len(),
        1,
        "the failed open still made a session on chain"
    );
    assert_eq!(
        app.count("SELECT COUNT(*) AS n FROM sessions"),
        0,
        "the gateway recorded nothing"
    );
    ids[0].clone()
}

async fn wait_for(what: &str, mut done: impl FnMut() -> bool) {
    for _ in 0..300 {
        if done() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("timed out waiting for {what}");
}

/// A janitor of its own on the app's database and proxy-router, to run a pass at a chosen time.
async fn janitor_of(app: &MarketApp) -> SessionJanitor {
    let db = Arc::new(
        morpheus_gateway::startup::connect(&app.settings)
            .await
            .expect("the database"),
    );
    let wiring = morpheus_gateway::marketplace::connect(&app.settings)
        .await
        .expect("the proxy-router");
    let catalogue = Arc::new(ModelCatalogue::new(CatalogueOptions {
        default_model: None,
        aliases: Vec::new(),
        provided: Vec::new(),
    }));
    morpheus_gateway::marketplace::refresh_catalogue(
        &*wiring.market,
        wiring.feed.as_deref(),
        &catalogue,
    )
    .await
    .expect("the model list");
    SessionJanitor::new(db, wiring.market).adopting_orphans(
        catalogue,
        morpheus_gateway::startup::orphan_grace(&app.settings),
    )
}

#[tokio::test]
async fn an_orphan_of_a_failed_open_is_adopted_by_the_sweep_and_serves_the_next_request() {
    let app = spawn_market_app_with(|s| {
        without_open_recovery(s);
        s.session_sweep_seconds = 1;
    })
    .await;
    let user = app.seed_automated_user().await;
    let orphan = orphan_from_a_failed_open(&app, &user.api_key).await;
    let opened = app.sim.counters().sessions_opened;

    let adopted = format!(
        "SELECT COUNT(*) AS n FROM sessions WHERE id = '{orphan}' AND pooled \
         AND state = 'active' AND api_key_id = 0 AND user_id = 0"
    );
    wait_for("the sweep to adopt the orphan", || app.count(&adopted) == 1).await;

    // The next request is served by the adopted session: no new open.
    let r = app
        .chat(&user.api_key, &ask("llama-3.3-70b", "again"))
        .await;
    assert_eq!(r.status(), 200);
    assert_eq!(
        app.sim.counters().sessions_opened,
        opened,
        "no new session opened"
    );
    assert_eq!(app.count("SELECT COUNT(*) AS n FROM sessions"), 1);
    let report = janitor_of(&app).await.run_once(Utc::now()).await.unwrap();
    assert_eq!(report.orphans_found, 0, "no orphan is left: {report:?}");
    println!(
        "orphans: 1 found by the sweep, 1 adopted, 0 closed; the next chat used it \
         (sessions opened on chain: {opened}, unchanged); a later pass found {}",
        report.orphans_found
    );
}

#[tokio::test]
async fn an_orphan_past_its_end_is_closed_on_chain() {
    // The app's own sweep does not come round during the test.
    let app = spawn_market_app_with(without_open_recovery).await;
    let user = app.seed_automated_user().await;
    let orphan = orphan_from_a_failed_open(&app, &user.api_key).await;
    let janitor = janitor_of(&app).await;

    // Wait until the lagging read shows the session.
    let later = Utc::now() + chrono::Duration::days(2);
    let mut report = Default::default();
    for _ in 0..50 {
        report = janitor.run_once(later).await.unwrap();
        if report.orphans_found > 0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(
        (
            report.orphans_found,
            report.orphans_adopted,
            report.orphans_closed
        ),
        (1, 0, 1),
        "{report:?}"
    );
    assert_eq!(app.sim.counters().sessions_closed, 1);
    assert_eq!(app.count("SELECT COUNT(*) AS n FROM sessions"), 0);
    let again = janitor.run_once(later).await.unwrap();
    assert_eq!(again.orphans_found, 0, "{again:?}");
    println!(
        "orphans past their end: {} found, {} adopted, {} closed on chain ({orphan}); \
         a second pass found {}",
        report.orphans_found, report.orphans_adopted, report.orphans_closed, again.orphans_found
    );
}
