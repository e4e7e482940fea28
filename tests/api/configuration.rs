//! The binary's settings: `morpheus-gateway config`, and a start stopped by an invalid value.

use std::process::Command;

use serde_json::Value;

fn gateway(args: &[&str], env: &[(&str, &str)]) -> std::process::Output {
    let dir = tempfile::tempdir().unwrap();
    let mut command = Command::new(env!("CARGO_BIN_EXE_morpheus-gateway"));
    command
        .args(args)
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .env("MORPHEUS_DATA_DIR", dir.path())
        .env("DATABASE_URL", dir.path().join("gw.db"));
    for (k, v) in env {
        command.env(k, v);
    }
    command.output().expect("the gateway binary runs")
}

#[test]
fn config_shows_each_value_with_its_origin_and_no_secret() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("gateway.toml");
    std::fs::write(
        &file,
        "chat_max_tokens = 4096\nmetrics_token = \"file-token-0123456789\"\n",
    )
    .unwrap();
    let out = gateway(
        &["config", "--json", "--bind", "127.0.0.1:9"],
        &[
            ("MORPHEUS_CONFIG", file.to_str().unwrap()),
            ("MORPHEUS_CHAT_MAX_CHOICES", "3"),
            (
                "MORPHEUS_JWT_SECRET",
                "jwt-secret-from-the-environment-0123456789",
            ),
        ],
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let stdout = String::from_utf8(out.stdout).unwrap();
    assert!(!stdout.contains("jwt-secret-from") && !stdout.contains("file-token"));
    let shown: Value = serde_json::from_str(&stdout).unwrap();
    let setting = |name: &str| {
        shown["settings"]
            .as_array()
            .unwrap()
            .iter()
            .find(|s| s["name"] == name)
            .unwrap()
            .clone()
    };
    assert_eq!(setting("chat_max_tokens")["value"], "4096");
    assert_eq!(
        setting("chat_max_tokens")["from"],
        format!("file {}", file.display())
    );
    assert_eq!(
        setting("chat_max_choices")["from"],
        "env MORPHEUS_CHAT_MAX_CHOICES"
    );
    assert_eq!(setting("bind")["from"], "command line --bind");
    assert_eq!(setting("jwt_secret")["value"], "<redacted>");
    assert_eq!(setting("metrics_token")["secret"], true);
    assert_eq!(setting("sse_keep_alive_seconds")["from"], "default");
}

#[test]
fn config_as_a_table_and_unknown_variables_as_warnings() {
    let out = gateway(&["config"], &[("MORPHEUS_SHUTDOWN_GRACE_SECOND", "5")]);
    assert!(out.status.success());
    let stdout = String::from_utf8(out.stdout).unwrap();
    assert!(stdout.starts_with("SETTING"), "{stdout}");
    assert!(
        stdout
            .lines()
            .any(|l| l.split_whitespace().collect::<Vec<_>>()
                == ["shutdown_grace_seconds", "30", "default"])
    );
    assert_eq!(
        String::from_utf8(out.stderr).unwrap(),
        "warning: MORPHEUS_SHUTDOWN_GRACE_SECOND is not a setting and is ignored; did you mean \
         MORPHEUS_SHUTDOWN_GRACE_SECONDS?\n"
    );
}

#[test]
fn an_invalid_value_stops_the_start_with_one_line_naming_the_setting() {
    let out = gateway(&["serve"], &[("MORPHEUS_SESSION_SWEEP_SECONDS", "0")]);
    assert_eq!(out.status.code(), Some(2));
    assert_eq!(
        String::from_utf8(out.stderr).unwrap(),
        "invalid MORPHEUS_SESSION_SWEEP_SECONDS: 0 is outside 1..=86400\n"
    );
    assert!(out.stdout.is_empty(), "nothing started");
}

#[test]
fn production_refuses_to_start_on_a_secret_that_is_not_random_in_one_line_naming_it() {
    let random = || -> String {
        rand::random::<[u8; 32]>()
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect()
    };
    let weak = "s".repeat(48);
    let out = gateway(
        &["serve"],
        &[
            ("MORPHEUS_ENV", "production"),
            // Were the secret accepted, the start would stop here, at once, on another line.
            ("DATABASE_URL", "postgres://gw@127.0.0.1:1/none"),
            ("MORPHEUS_JWT_SECRET", &weak),
            ("MORPHEUS_API_KEY_PEPPER", &random()),
            ("MORPHEUS_WALLET_MASTER_KEY", &random()),
        ],
    );
    assert_ne!(out.status.code(), Some(0));
    let stderr = String::from_utf8(out.stderr).unwrap();
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
    assert!(
        stderr.contains("MORPHEUS_JWT_SECRET is not random (one character repeated)"),
        "{stderr}"
    );
    assert!(!stderr.contains(&weak), "the secret is not printed");
}

#[test]
fn a_cors_origin_with_a_path_a_wildcard_or_no_scheme_stops_the_start() {
    for value in [
        "https://app.example.com/app",
        "https://*.example.com",
        "app.example.com",
        " , ",
    ] {
        let out = gateway(&["serve"], &[("MORPHEUS_CORS_ALLOWED_ORIGINS", value)]);
        assert_eq!(out.status.code(), Some(2), "{value}");
        let error = String::from_utf8(out.stderr).unwrap();
        assert!(
            error.starts_with("invalid MORPHEUS_CORS_ALLOWED_ORIGINS: "),
            "{value}: {error}"
        );
    }
}
