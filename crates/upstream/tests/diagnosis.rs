//! `ProxyRouterClient::diagnose` against the simulator: credentials, permissions, chat storage.

mod common;

use common::{client, client_with};
use morpheus_router_sim::{SimConfig, Simulator};
use morpheus_upstream::{ChatStorage, Credentials, NEEDED_PERMISSIONS, Permission, Reach};
use secrecy::SecretString;

async fn sim_with(config: SimConfig) -> morpheus_router_sim::SimHandle {
    Simulator::start(config, "127.0.0.1:0".parse().unwrap())
        .await
        .unwrap()
}

#[tokio::test]
async fn a_well_configured_node_passes_every_probe_and_nothing_is_spent() {
    let sim = sim_with(SimConfig {
        store_chat_context: false,
        ..SimConfig::default()
    })
    .await;
    let d = client(&sim.base_url()).diagnose().await;
    assert!(
        matches!(&d.reach, Reach::Reachable { status, version: Some(v) } if status == "healthy" && v.starts_with("sim-")),
        "{:?}",
        d.reach
    );
    assert_eq!(d.credentials, Credentials::Accepted);
    let granted: Vec<&str> = d
        .permissions
        .iter()
        .filter(|(_, p)| *p == Permission::Granted)
        .map(|(m, _)| *m)
        .collect();
    assert_eq!(granted, NEEDED_PERMISSIONS);
    assert_eq!(d.chat_storage, ChatStorage::Off);
    let counters = sim.counters();
    assert_eq!(
        (counters.sessions_opened, counters.sessions_closed),
        (0, 0),
        "the probes open and close nothing"
    );
}

#[tokio::test]
async fn a_wrong_password_a_missing_method_and_stored_chats_are_told_apart() {
    let sim = sim_with(SimConfig::default()).await;
    let d = client_with(&sim.base_url(), |c| {
        c.password = Some(SecretString::from("wrong"));
    })
    .diagnose()
    .await;
    assert_eq!(
        d.credentials,
        Credentials::Refused("invalid username or password".to_owned())
    );
    assert!(
        d.permissions
            .iter()
            .all(|(_, p)| matches!(p, Permission::Unknown(_)))
    );

    let sim = sim_with(SimConfig {
        user_methods: NEEDED_PERMISSIONS
            .iter()
            .filter(|m| **m != "approve")
            .map(|m| (*m).to_owned())
            .collect(),
        ..SimConfig::default()
    })
    .await;
    let d = client(&sim.base_url()).diagnose().await;
    assert_eq!(d.credentials, Credentials::Accepted);
    let missing: Vec<&str> = d
        .permissions
        .iter()
        .filter(|(_, p)| *p == Permission::Missing)
        .map(|(m, _)| *m)
        .collect();
    assert_eq!(missing, ["approve"]);
    assert!(
        matches!(d.chat_storage, ChatStorage::Unreadable(ref why) if why.contains("system_config"))
    );

    // The node's default: chats stored.
    let sim = sim_with(SimConfig::default()).await;
    let d = client(&sim.base_url()).diagnose().await;
    assert_eq!(d.chat_storage, ChatStorage::On { forwarded: true });
}

#[tokio::test]
async fn an_absent_node_is_unreachable() {
    let d = client("http://127.0.0.1:9").diagnose().await;
    assert!(matches!(d.reach, Reach::Unreachable(_)), "{:?}", d.reach);
    assert!(matches!(d.credentials, Credentials::Unknown(_)));
}
