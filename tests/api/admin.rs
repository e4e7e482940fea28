//! `morpheus-gateway admin …`, end to end: the real binary on the test's database and
//! settings, beside the test's running gateway (another replica, as far as the API keys'
//! caches go) and the simulator.

use std::process::{Command, Output};
use std::time::{Duration, Instant};

use morpheus_gateway::configuration::Settings;
use morpheus_router_sim::{SimConfig, SimHandle, Simulator};
use serde_json::Value;

use crate::helpers::{JWT_SECRET, MASTER_KEY_HEX, PEPPER, TestApp, spawn_app};
use crate::market::{DIAMOND, ask, spawn_market_app};

/// Runs `morpheus-gateway admin <args>` on the database, secrets and proxy-router of
/// `settings`, off the test's runtime (which also runs the gateway and the simulator it talks
/// to).
async fn admin(settings: &Settings, args: &[&str], env: &[(&str, &str)]) -> Output {
    let mut args = args.to_vec();
    args.insert(0, "admin");
    gateway(settings, &args, env).await
}

/// Runs `morpheus-gateway <args>` as [`admin`] does.
pub async fn gateway(settings: &Settings, args: &[&str], env: &[(&str, &str)]) -> Output {
    let mut command = Command::new(env!("CARGO_BIN_EXE_morpheus-gateway"));
    command
        .args(args)
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .env("DATABASE_URL", &settings.database_url)
        .env("MORPHEUS_DATA_DIR", &settings.data_dir)
        .env("MORPHEUS_JWT_SECRET", JWT_SECRET)
        .env("MORPHEUS_API_KEY_PEPPER", PEPPER)
        .env("MORPHEUS_WALLET_MASTER_KEY", MASTER_KEY_HEX)
        .env("RUST_LOG", "warn");
    if let Some(url) = &settings.proxy_router_url {
        command
            .env("MORPHEUS_PROXY_ROUTER_URL", url)
            .env("MORPHEUS_PROXY_ROUTER_USER", "morpheus")
            .env("MORPHEUS_PROXY_ROUTER_PASSWORD", "sim-password");
    }
    for (k, v) in env {
        command.env(k, v);
    }
    tokio::task::spawn_blocking(move || command.output().expect("the gateway binary runs"))
        .await
        .unwrap()
}

/// The command's JSON output; it must have succeeded.
async fn admin_json(settings: &Settings, args: &[&str]) -> Value {
    let mut args = args.to_vec();
    args.push("--json");
    let out = admin(settings, &args, &[]).await;
    assert!(
        out.status.success(),
        "admin {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).expect("JSON output")
}

fn text(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// The status `GET /automation/settings` gets with `key` on the running gateway.
async fn key_status(app: &TestApp, key: &str) -> u16 {
    app.client
        .get(app.url("/api/v1/automation/settings"))
        .bearer_auth(key)
        .send()
        .await
        .unwrap()
        .status()
        .as_u16()
}

/// How long the running gateway takes to answer `want` for `key`, at most 5 s.
async fn until_key_status(app: &TestApp, key: &str, want: u16) -> Duration {
    let started = Instant::now();
    while key_status(app, key).await != want {
        assert!(
            started.elapsed() < Duration::from_secs(5),
            "the key never got {want}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    started.elapsed()
}

async fn me_status(app: &TestApp, access: &str) -> u16 {
    app.authed(reqwest::Method::GET, "/api/v1/auth/me", access, None)
        .await
        .status()
        .as_u16()
}

#[tokio::test]
async fn users_are_listed_shown_disabled_enabled_and_deleted() {
    let app = spawn_app().await;
    let ada = app.seed_user().await;
    let bob = app.seed_user().await;
    // Cached by the running gateway, so only the revocation log can make it forget the key.
    assert_eq!(key_status(&app, &ada.api_key).await, 200);

    let listed = admin_json(&app.settings, &["users", "list"]).await;
    let emails: Vec<&str> = listed["users"]
        .as_array()
        .unwrap()
        .iter()
        .map(|u| u["email"].as_str().unwrap())
        .collect();
    assert_eq!(
        emails,
        [bob.email.as_str(), ada.email.as_str()],
        "newest first"
    );
    let filtered = admin_json(&app.settings, &["users", "list", "--email", &ada.email]).await;
    assert_eq!(filtered["users"].as_array().unwrap().len(), 1);
    let table = text(&admin(&app.settings, &["users", "list"], &[]).await);
    assert!(table.starts_with("ID"), "{table}");
    assert!(table.contains(&ada.email));

    let shown = admin_json(&app.settings, &["users", "show", &ada.email]).await;
    assert_eq!(shown["user"]["id"], ada.id);
    assert_eq!(shown["api_keys"]["active"], 1);

    let disabled = admin_json(&app.settings, &["users", "disable", &ada.id.to_string()]).await;
    assert_eq!(disabled["user"]["is_active"], false);
    let took = until_key_status(&app, &ada.api_key, 401).await;
    assert!(took < Duration::from_secs(2), "refused after {took:?}");
    // The access token: within the running gateway's user cache time (5 s).
    let start = Instant::now();
    while me_status(&app, &ada.access).await != 401 {
        assert!(
            start.elapsed() < Duration::from_secs(6),
            "access token still accepted"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(
        key_status(&app, &bob.api_key).await,
        200,
        "others untouched"
    );

    admin_json(&app.settings, &["users", "enable", &ada.email]).await;
    until_key_status(&app, &ada.api_key, 200).await;
    // Enabling gives back the keys, not the sign-ins that disabling ended.
    assert_eq!(me_status(&app, &ada.access).await, 401);
    let r = app
        .post_json(
            "/api/v1/auth/refresh",
            &serde_json::json!({"refresh_token": ada.refresh}),
        )
        .await;
    assert_eq!(r.status(), 401, "the refresh token of before the disabling");
    assert_eq!(
        app.login(&ada.email, crate::helpers::PASSWORD)
            .await
            .status(),
        200
    );

    let refused = admin(&app.settings, &["users", "delete", &ada.email], &[]).await;
    assert!(!refused.status.success());
    assert!(String::from_utf8_lossy(&refused.stderr).contains("add --yes"));
    let deleted = admin_json(&app.settings, &["users", "delete", &ada.email, "--yes"]).await;
    assert_eq!(deleted["deleted"]["api_keys"], 1);
    until_key_status(&app, &ada.api_key, 401).await;
    let missing = admin(&app.settings, &["users", "show", &ada.email], &[]).await;
    assert!(!missing.status.success());
    assert!(String::from_utf8_lossy(&missing.stderr).contains("no user"));
}

#[tokio::test]
async fn a_key_revoked_by_the_cli_is_refused_by_running_replicas_within_the_log_s_delay() {
    let app = spawn_app().await;
    let ada = app.seed_user().await;
    assert_eq!(key_status(&app, &ada.api_key).await, 200);
    let keys = admin_json(&app.settings, &["keys", "list", &ada.email]).await;
    let prefix = keys["api_keys"][0]["key_prefix"]
        .as_str()
        .unwrap()
        .to_owned();
    assert!(ada.api_key.starts_with(&prefix));
    let logged = "SELECT COUNT(*) AS n FROM api_key_revocations";
    let before = app.count(logged);

    let revoked = admin_json(&app.settings, &["keys", "revoke", &prefix]).await;
    assert_eq!(revoked["api_key"]["is_active"], false);
    assert_eq!(
        app.count(logged),
        before + 1,
        "written to the revocation log"
    );
    let took = until_key_status(&app, &ada.api_key, 401).await;
    assert!(took < Duration::from_secs(2), "refused after {took:?}");

    let unknown = admin(&app.settings, &["keys", "revoke", "sk-zzzzzz"], &[]).await;
    assert!(!unknown.status.success());
    assert!(String::from_utf8_lossy(&unknown.stderr).contains("no API key sk-zzzzzz"));
    let table = text(&admin(&app.settings, &["keys", "list", &ada.id.to_string()], &[]).await);
    assert!(table.lines().nth(1).unwrap().contains(&prefix), "{table}");
}

#[tokio::test]
async fn sessions_are_listed_and_closed_on_chain_and_in_the_records() {
    let app = spawn_market_app().await;
    let user = app.seed_automated_user().await;
    let r = app.chat(&user.api_key, &ask("llama-3.3-70b", "hi")).await;
    assert_eq!(r.status(), 200);

    let listed = admin_json(&app.settings, &["sessions", "list", "--user", &user.email]).await;
    let sessions = listed["sessions"].as_array().unwrap();
    assert_eq!(sessions.len(), 1);
    assert_eq!(sessions[0]["state"], "active");
    let id = sessions[0]["id"].as_str().unwrap().to_owned();

    let closed = admin_json(&app.settings, &["sessions", "close", &id]).await;
    assert_eq!(closed["closed"], true);
    assert_eq!(app.sim.counters().sessions_closed, 1);
    assert_eq!(
        app.count(&format!(
            "SELECT COUNT(*) AS n FROM sessions WHERE id = '{id}' AND state = 'closed'"
        )),
        1
    );
    let again = text(&admin(&app.settings, &["sessions", "close", &id], &[]).await);
    assert!(again.contains("was already closed"), "{again}");
    assert!(
        admin_json(&app.settings, &["sessions", "list"]).await["sessions"]
            .as_array()
            .unwrap()
            .is_empty()
    );
    let all = admin_json(&app.settings, &["sessions", "list", "--all"]).await;
    assert_eq!(all["sessions"][0]["state"], "closed");
}

async fn node(config: SimConfig) -> SimHandle {
    Simulator::start(config, "127.0.0.1:0".parse().unwrap())
        .await
        .unwrap()
}

/// `admin doctor --json` against `sim` (with the test's user and `password`): exit status,
/// and the statuses by check.
async fn doctor(app: &TestApp, sim: &SimHandle, password: &str) -> (Option<i32>, Value, String) {
    let env = [
        ("MORPHEUS_PROXY_ROUTER_URL", sim.base_url()),
        ("MORPHEUS_PROXY_ROUTER_USER", "morpheus".to_owned()),
        ("MORPHEUS_PROXY_ROUTER_PASSWORD", password.to_owned()),
        ("MORPHEUS_DIAMOND_CONTRACT_ADDRESS", DIAMOND.to_owned()),
        ("MORPHEUS_REDIS_URL", "redis://127.0.0.1:6379".to_owned()),
    ];
    let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let json = admin(&app.settings, &["doctor", "--json"], &env).await;
    let table = admin(&app.settings, &["doctor"], &env).await;
    assert_eq!(json.status.code(), table.status.code());
    (
        json.status.code(),
        serde_json::from_slice(&json.stdout).expect("JSON"),
        text(&table),
    )
}

fn status_of<'a>(report: &'a Value, check: &str) -> Vec<&'a str> {
    report["checks"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|c| c["check"] == check)
        .map(|c| c["status"].as_str().unwrap())
        .collect()
}

#[tokio::test]
async fn doctor_tells_a_wrong_password_a_missing_permission_and_a_sound_node_apart() {
    let app = spawn_app().await;
    let sound = node(SimConfig {
        store_chat_context: false,
        ..SimConfig::default()
    })
    .await;
    let (code, report, table) = doctor(&app, &sound, "sim-password").await;
    assert_eq!(code, Some(0), "{table}");
    assert_eq!(report["ok"], true);
    for check in [
        "database",
        "migrations",
        "redis",
        "proxy-router",
        "proxy-router credentials",
        "proxy-router permissions",
        "proxy-router chat storage",
    ] {
        assert_eq!(status_of(&report, check), ["ok"], "{check}: {table}");
    }
    // The simulator's version is not a release number: said, not failed.
    assert_eq!(status_of(&report, "proxy-router version"), ["warn"]);
    assert!(table.contains("No failure"), "{table}");

    let (code, report, table) = doctor(&app, &sound, "not-the-password").await;
    assert_eq!(code, Some(1));
    assert_eq!(status_of(&report, "proxy-router credentials"), ["FAIL"]);
    assert!(
        status_of(&report, "proxy-router permissions").is_empty(),
        "not probed"
    );
    assert!(
        table.contains("the node refused user morpheus: invalid username or password"),
        "{table}"
    );
    assert!(table.contains("set MORPHEUS_PROXY_ROUTER_USER and MORPHEUS_PROXY_ROUTER_PASSWORD"));

    let lacking = node(SimConfig {
        user_methods: morpheus_upstream::NEEDED_PERMISSIONS
            .iter()
            .filter(|m| **m != "approve" && **m != "close_session")
            .map(|m| (*m).to_owned())
            .collect(),
        ..SimConfig::default()
    })
    .await;
    let (code, report, table) = doctor(&app, &lacking, "sim-password").await;
    assert_eq!(code, Some(1));
    assert_eq!(status_of(&report, "proxy-router credentials"), ["ok"]);
    assert_eq!(status_of(&report, "proxy-router permissions"), ["FAIL"]);
    assert!(
        table.contains("user morpheus lacks close_session, approve"),
        "{table}"
    );
    assert!(table.contains("add close_session, approve to the methods of user morpheus"));
    // Without system_config, the chat-storage setting cannot be read: said, with what to do.
    assert_eq!(status_of(&report, "proxy-router chat storage"), ["warn"]);
    assert!(table.contains("PROXY_STORE_CHAT_CONTEXT=false"));

    let storing = node(SimConfig::default()).await;
    let (code, report, _) = doctor(&app, &storing, "sim-password").await;
    assert_eq!(code, Some(1));
    assert_eq!(status_of(&report, "proxy-router chat storage"), ["FAIL"]);
}

#[tokio::test]
async fn doctor_reports_an_unreachable_database_redis_and_node() {
    let app = spawn_app().await;
    let settings = Settings {
        database_url: "postgres://nobody:secret-pw@127.0.0.1:1/none".to_owned(),
        ..app.settings.clone()
    };
    let out = admin(
        &settings,
        &["doctor", "--json"],
        &[
            ("MORPHEUS_PROXY_ROUTER_URL", "http://127.0.0.1:1"),
            ("MORPHEUS_REDIS_URL", "redis://:redis-pw@127.0.0.1:1"),
        ],
    )
    .await;
    assert_eq!(out.status.code(), Some(1));
    let stdout = text(&out);
    assert!(
        !stdout.contains("secret-pw") && !stdout.contains("redis-pw"),
        "{stdout}"
    );
    let report: Value = serde_json::from_str(&stdout).unwrap();
    for check in ["database", "redis", "proxy-router"] {
        assert_eq!(status_of(&report, check), ["FAIL"], "{check}: {stdout}");
    }
}
