use std::ffi::OsString;
use std::path::PathBuf;

use clap::Parser;

use super::*;
use crate::cli::Cli;

fn env(vars: &[(&str, &str)]) -> Vec<(OsString, OsString)> {
    vars.iter()
        .map(|(k, v)| (OsString::from(k), OsString::from(v)))
        .collect()
}

fn load_with(args: &[&str], vars: &[(&str, &str)]) -> anyhow::Result<Loaded> {
    let cli = Cli::try_parse_from(args).expect("arguments");
    load_from(Sources {
        file: cli.config.as_deref(),
        env: env(vars),
        command_line: cli.settings.0,
    })
}

fn origin(loaded: &Loaded, name: &str) -> Origin {
    let i = specs().iter().position(|s| s.name == name).unwrap();
    loaded.origins[i].clone()
}

fn file(content: &str) -> (tempfile::TempDir, String) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("gateway.toml");
    std::fs::write(&path, content).unwrap();
    (dir, path.display().to_string())
}

#[test]
fn env_overrides_the_file_and_the_command_line_overrides_env() {
    let (_dir, path) = file("bind = \"127.0.0.1:1\"\nworkers = 3\nchat_max_choices = 4\n");
    let loaded = load_with(
        &["gw", "serve", "--config", &path, "--bind", "0.0.0.0:9"],
        &[
            ("MORPHEUS_DATA_DIR", "/tmp/elsewhere"),
            ("MORPHEUS_WORKERS", "5"),
            ("MORPHEUS_SQLITE_SYNCHRONOUS", "full"),
            ("DATABASE_URL", "postgres://db/x"),
        ],
    )
    .unwrap();
    let s = &loaded.settings;
    assert_eq!(s.data_dir, PathBuf::from("/tmp/elsewhere"));
    assert_eq!(s.workers, 5);
    assert_eq!(s.chat_max_choices, 4);
    assert_eq!(s.sqlite_synchronous, SqliteSynchronous::Full);
    assert_eq!(s.bind, "0.0.0.0:9");
    assert_eq!(s.database_url, "postgres://db/x");
    assert_eq!(origin(&loaded, "bind"), Origin::CommandLine("bind".into()));
    assert_eq!(
        origin(&loaded, "workers"),
        Origin::Env("MORPHEUS_WORKERS".into())
    );
    assert_eq!(
        origin(&loaded, "chat_max_choices"),
        Origin::File(path.into())
    );
    assert_eq!(origin(&loaded, "chat_max_tokens"), Origin::Default);
    assert_eq!(
        origin(&loaded, "database_url"),
        Origin::Env("DATABASE_URL".into())
    );
}

#[test]
fn flags_work_before_and_after_the_subcommand() {
    for args in [
        &["gw", "--simulate-marketplace", "config"][..],
        &["gw", "config", "--simulate-marketplace"][..],
    ] {
        let loaded = load_with(args, &[]).unwrap();
        assert!(loaded.settings.simulate_marketplace, "{args:?}");
    }
}

#[test]
fn an_environment_value_is_read_as_its_setting_s_type() {
    // figment, used before, read an all-digit variable as a number, and a password of digits
    // then failed to load as text.
    let loaded = load_with(
        &["gw"],
        &[
            ("MORPHEUS_PROXY_ROUTER_PASSWORD", "12345678"),
            ("MORPHEUS_DEFAULT_MODEL", "0042"),
        ],
    )
    .unwrap();
    use secrecy::ExposeSecret;
    let password = loaded.settings.proxy_router_password.unwrap();
    assert_eq!(password.expose_secret(), "12345678");
    assert_eq!(loaded.settings.default_model.as_deref(), Some("0042"));
}

#[test]
fn an_empty_variable_unsets_an_optional_setting() {
    let (_dir, path) = file("default_model = \"llama\"\n");
    let loaded = load_with(
        &["gw", "--config", &path],
        &[("MORPHEUS_DEFAULT_MODEL", "")],
    )
    .unwrap();
    assert_eq!(loaded.settings.default_model, None);
}

#[test]
fn an_invalid_value_stops_the_start_with_one_line_naming_the_setting() {
    let error = load_with(&["gw"], &[("MORPHEUS_WORKERS", "many")]).unwrap_err();
    assert_eq!(
        error.to_string(),
        "invalid MORPHEUS_WORKERS: \"many\" is not a whole number"
    );
    let error = load_with(&["gw"], &[("MORPHEUS_CHAT_MAX_CHOICES", "0")]).unwrap_err();
    assert_eq!(
        error.to_string(),
        "invalid MORPHEUS_CHAT_MAX_CHOICES: 0 is outside 1..=128"
    );
    let error = load_with(&["gw"], &[("MORPHEUS_ENV", "prod")]).unwrap_err();
    assert_eq!(
        error.to_string(),
        "invalid MORPHEUS_ENV: \"prod\" is not one of development or production"
    );
    let (_dir, path) = file("session_sweep_seconds = \"soon\"\n");
    let error = load_with(&["gw", "--config", &path], &[]).unwrap_err();
    assert_eq!(
        error.to_string(),
        format!("invalid session_sweep_seconds in {path}: \"soon\" is not a whole number")
    );
    let error = load_with(&["gw", "--database-url", "mysql://x"], &[]).unwrap_err();
    assert!(
        error
            .to_string()
            .starts_with("invalid --database-url: unsupported database URL scheme"),
        "{error}"
    );
    // Several invalid settings: one line each.
    let error = load_with(
        &["gw"],
        &[
            ("MORPHEUS_GATEWAY_DELEGATE_ADDRESS", "0x12"),
            ("MORPHEUS_METRICS_TOKEN", "short"),
        ],
    )
    .unwrap_err()
    .to_string();
    assert_eq!(error.lines().count(), 2, "{error}");
    assert!(error.contains("invalid MORPHEUS_GATEWAY_DELEGATE_ADDRESS: \"0x12\" is not 0x"));
    assert!(error.contains("invalid MORPHEUS_METRICS_TOKEN: the token must be at least 16"));
    assert!(
        !error.contains("short"),
        "a secret is never echoed: {error}"
    );
}

#[test]
fn an_unknown_key_in_the_file_stops_the_start_with_the_closest_name() {
    let (_dir, path) = file("bnid = \"127.0.0.1:1\"\nzzz = 1\n");
    let error = load_with(&["gw", "--config", &path], &[])
        .unwrap_err()
        .to_string();
    assert!(
        error.contains(&format!(
            "unknown key `bnid` in {path} (did you mean `bind`?)"
        )),
        "{error}"
    );
    assert!(
        error.contains(&format!("unknown key `zzz` in {path}\n"))
            || error.ends_with(&format!("unknown key `zzz` in {path}")),
        "{error}"
    );
}

#[test]
fn an_unknown_morpheus_variable_is_reported_with_the_closest_name() {
    let loaded = load_with(
        &["gw"],
        &[
            ("MORPHEUS_WORKRES", "2"),
            ("MORPHEUS_DATABASE_URL", "postgres://x/y"),
            ("MORPHEUS_PORT", "tcp://10.0.0.1:8000"),
            ("MORPHEUS_TEST_DATABASE_URL", "postgres://localhost/test"),
            ("MORPHEUS_CONFIG", "/dev/null"),
            ("HOME", "/root"),
        ],
    )
    .unwrap();
    assert_eq!(
        loaded.warnings,
        vec![
            "MORPHEUS_DATABASE_URL is not a setting and is ignored; did you mean DATABASE_URL?",
            "MORPHEUS_PORT is not a setting and is ignored (see `morpheus-gateway config` for the settings)",
            "MORPHEUS_WORKRES is not a setting and is ignored; did you mean MORPHEUS_WORKERS?",
        ]
    );
    assert_eq!(loaded.settings.workers, 0);
}

#[test]
fn the_defaults_are_valid_and_every_command_line_flag_is_a_declared_setting() {
    Settings::default().validate().unwrap();
    let command = <Cli as clap::CommandFactory>::command();
    let flags: Vec<&str> = command
        .get_arguments()
        .filter_map(|a| a.get_long())
        .filter(|l| *l != "config")
        .collect();
    let declared: Vec<&str> = specs().iter().filter_map(|s| s.cli).collect();
    assert_eq!(flags, declared);
}

#[test]
fn secrets_and_passwords_in_urls_are_redacted_in_the_effective_configuration() {
    let loaded = load_with(
        &[
            "gw",
            "--proxy-router-url",
            "http://admin:hunter2@10.0.0.1:8082/x",
        ],
        &[
            (
                "MORPHEUS_JWT_SECRET",
                "a-very-secret-value-of-32-bytes-or-more",
            ),
            ("DATABASE_URL", "postgres://gw:s3cret@db:5432/gw"),
        ],
    )
    .unwrap();
    let shown = format!("{:?}{}", effective_rows(&loaded), effective_json(&loaded));
    for secret in ["a-very-secret", "hunter2", "s3cret"] {
        assert!(!shown.contains(secret), "{secret} in {shown}");
    }
    let rows = effective_rows(&loaded);
    let row = |name: &str| rows.iter().find(|r| r[0] == name).unwrap().clone();
    assert_eq!(
        row("jwt_secret")[1..],
        ["<redacted>", "env MORPHEUS_JWT_SECRET"]
    );
    assert_eq!(row("api_key_pepper")[1..], ["(unset)", "default"]);
    assert_eq!(row("proxy_router_url")[1], "http://***@10.0.0.1:8082/x");
    assert_eq!(
        row("proxy_router_url")[2],
        "command line --proxy-router-url"
    );
}

/// README's settings table is made from the declarations. To update it after changing a
/// declaration: `UPDATE_README=1 cargo test -p morpheus-gateway --lib readme`.
#[test]
fn readme_s_settings_table_matches_the_declarations() {
    const START: &str = "<!-- settings table: generated from src/configuration.rs -->\n";
    const END: &str = "\n<!-- end of settings table -->";
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/README.md");
    let readme = std::fs::read_to_string(path).unwrap();
    let start = readme
        .find(START)
        .expect("README has the table's start marker")
        + START.len();
    let end = readme.find(END).expect("README has the table's end marker");
    let expected = readme_table();
    if readme[start..end] != expected {
        if std::env::var_os("UPDATE_README").is_some() {
            let updated = format!("{}{expected}{}", &readme[..start], &readme[end..]);
            std::fs::write(path, updated).unwrap();
        } else {
            panic!(
                "README's settings table differs from the declarations in src/configuration.rs; \
                 rerun with UPDATE_README=1 to rewrite it. Expected:\n{expected}"
            );
        }
    }
}
