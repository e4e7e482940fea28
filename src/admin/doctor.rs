//! `admin doctor`: checks what the gateway depends on and says what to fix.
//!
//! Read-only: it applies no migration, writes no secret, opens no session (the proxy-router's
//! permissions are probed with requests the node refuses before doing anything, see
//! `morpheus_upstream::diagnosis`).

use std::time::Duration;

use morpheus_domain::ports::HealthProbe;
use morpheus_storage::{Database, DatabaseUrl};
use morpheus_upstream::{ChatStorage, Credentials, Permission, ProxyRouterClient, Reach};
use serde_json::json;

use super::Report;
use crate::configuration::{Environment, Loaded, Settings};
use crate::output::table;
use crate::secrets::Secrets;
use crate::{marketplace, startup};

/// The oldest node release the gateway works with: older nodes end a stream at the first
/// `stop` and fail on usage-only chunks (fixed in 5.7.0), and do not report
/// `usage_from_provider` (5.10.0).
const MIN_NODE_VERSION: (u64, u64, u64) = (5, 10, 0);

/// How long Redis gets to answer.
const REDIS_TIMEOUT: Duration = Duration::from_secs(3);

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Status {
    Ok,
    Warn,
    Fail,
    Skip,
}

impl Status {
    fn word(self) -> &'static str {
        match self {
            Status::Ok => "ok",
            Status::Warn => "warn",
            Status::Fail => "FAIL",
            Status::Skip => "skip",
        }
    }
}

struct Check {
    name: &'static str,
    status: Status,
    detail: String,
    fix: Option<String>,
}

fn check(name: &'static str, status: Status, detail: impl Into<String>) -> Check {
    Check {
        name,
        status,
        detail: detail.into(),
        fix: None,
    }
}

impl Check {
    fn fix(mut self, fix: impl Into<String>) -> Self {
        self.fix = Some(fix.into());
        self
    }
}

pub(super) async fn run(loaded: &Loaded) -> Report {
    let settings = &loaded.settings;
    let mut checks = settings_checks(loaded);
    checks.extend(database_checks(settings).await);
    checks.push(redis_check(settings).await);
    checks.extend(proxy_router_checks(settings).await);
    render(&checks)
}

fn settings_checks(loaded: &Loaded) -> Vec<Check> {
    let s = &loaded.settings;
    let mut checks = Vec::new();
    for warning in &loaded.warnings {
        checks.push(
            check("settings", Status::Warn, warning.clone()).fix("rename or remove the variable"),
        );
    }
    match s.env {
        Environment::Production => match Secrets::resolve(s) {
            Ok(_) => checks.push(check("secrets", Status::Ok, "the three secrets are set")),
            Err(e) => checks.push(
                check("secrets", Status::Fail, e.to_string())
                    .fix("set them (README, Configuration)"),
            ),
        },
        Environment::Development => checks.push(
            check(
                "secrets",
                Status::Warn,
                format!(
                    "MORPHEUS_ENV=development: missing secrets are generated and kept in {}",
                    s.data_dir.join("secrets.json").display()
                ),
            )
            .fix("for a deployment set MORPHEUS_ENV=production and the three secrets"),
        ),
    }
    if s.simulate_marketplace {
        checks.push(check(
            "marketplace",
            Status::Warn,
            "--simulate-marketplace: answers come from the in-process simulator",
        ));
    } else if s.proxy_router_url.is_none() {
        checks.push(
            check(
                "marketplace",
                Status::Fail,
                "no proxy-router: chat and session routes answer 503",
            )
            .fix("set MORPHEUS_PROXY_ROUTER_URL, MORPHEUS_PROXY_ROUTER_USER and MORPHEUS_PROXY_ROUTER_PASSWORD"),
        );
    }
    if s.diamond_contract_address.is_none() {
        checks.push(
            check(
                "marketplace",
                Status::Warn,
                "no Diamond contract address: POST /session/approve answers 503",
            )
            .fix("set MORPHEUS_DIAMOND_CONTRACT_ADDRESS"),
        );
    }
    if s.env == Environment::Production && s.metrics_token.is_none() && s.metrics_bind.is_none() {
        checks.push(
            check("metrics", Status::Warn, "GET /metrics is off")
                .fix("set MORPHEUS_METRICS_TOKEN or MORPHEUS_METRICS_BIND"),
        );
    }
    if checks.iter().all(|c| c.name != "settings") {
        checks.insert(
            0,
            check(
                "settings",
                Status::Ok,
                "valid (`morpheus-gateway config` shows them)",
            ),
        );
    }
    checks
}

async fn database_checks(settings: &Settings) -> Vec<Check> {
    let opened = DatabaseUrl::parse(&settings.database_url).and_then(|url| {
        let shown = url.to_string();
        Database::connect(&url, startup::pool_options(settings)).map(|db| (db, shown))
    });
    let (database, shown) = match opened {
        Ok(opened) => opened,
        Err(e) => {
            return vec![
                check("database", Status::Fail, format!("{e:#}"))
                    .fix("check DATABASE_URL and that the database server runs"),
            ];
        }
    };
    if let Err(e) = database.ping().await {
        return vec![check("database", Status::Fail, format!("{shown}: {e:#}"))];
    }
    let mut checks = vec![check(
        "database",
        Status::Ok,
        format!("{shown} ({}) answers", database.backend_name()),
    )];
    match database.pending_migrations().await {
        Ok(pending) if pending.is_empty() => {
            checks.push(check("migrations", Status::Ok, "the schema is up to date"));
        }
        Ok(pending) => checks.push(
            check(
                "migrations",
                Status::Warn,
                format!("not applied yet: {}", pending.join(", ")),
            )
            .fix("`morpheus-gateway migrate` applies them (serve does at start)"),
        ),
        Err(e) => checks.push(check("migrations", Status::Fail, format!("{e:#}"))),
    }
    checks
}

async fn redis_check(settings: &Settings) -> Check {
    let Some(url) = &settings.redis_url else {
        return check("redis", Status::Skip, "not configured (MORPHEUS_REDIS_URL)");
    };
    let shown = crate::configuration::specs()
        .iter()
        .find(|s| s.name == "redis_url")
        .and_then(|s| s.show(settings))
        .unwrap_or_default();
    let ping = async {
        let client = redis::Client::open(url.as_str())?;
        let mut conn = client.get_multiplexed_async_connection().await?;
        redis::cmd("PING").query_async::<String>(&mut conn).await
    };
    match tokio::time::timeout(REDIS_TIMEOUT, ping).await {
        Ok(Ok(pong)) if pong == "PONG" => check("redis", Status::Ok, format!("{shown} answers")),
        Ok(Ok(other)) => check(
            "redis",
            Status::Fail,
            format!("{shown} answered PING with {other:?}"),
        ),
        Ok(Err(e)) => check("redis", Status::Fail, format!("{shown}: {e}"))
            .fix("check MORPHEUS_REDIS_URL (host, port, password) and that Redis runs"),
        Err(_) => check(
            "redis",
            Status::Fail,
            format!("{shown} did not answer within {REDIS_TIMEOUT:?}"),
        )
        .fix("check MORPHEUS_REDIS_URL and that Redis runs"),
    }
}

async fn proxy_router_checks(settings: &Settings) -> Vec<Check> {
    const NAME: &str = "proxy-router";
    let Some(url) = &settings.proxy_router_url else {
        return vec![check(NAME, Status::Skip, "not configured")];
    };
    let client = match ProxyRouterClient::new(marketplace::proxy_router_config(
        settings,
        url.clone(),
        settings.proxy_router_user.clone(),
        settings.proxy_router_password.clone(),
    )) {
        Ok(client) => client,
        Err(e) => return vec![check(NAME, Status::Fail, format!("{e:#}"))],
    };
    let shown = crate::configuration::specs()
        .iter()
        .find(|s| s.name == "proxy_router_url")
        .and_then(|s| s.show(settings))
        .unwrap_or_default();
    let diagnosis = client.diagnose().await;
    let mut checks = Vec::new();
    match &diagnosis.reach {
        Reach::Unreachable(why) => {
            checks.push(
                check(NAME, Status::Fail, format!("{shown} is unreachable: {why}"))
                    .fix("check MORPHEUS_PROXY_ROUTER_URL and that the node runs"),
            );
            return checks;
        }
        Reach::Reachable { status, version } => {
            let reachable = if status == "healthy" {
                check(NAME, Status::Ok, format!("{shown} is {status}"))
            } else {
                check(NAME, Status::Warn, format!("{shown} reports {status}"))
                    .fix("see the node's /healthcheck components (its storage)")
            };
            checks.push(reachable);
            checks.push(version_check(version.as_deref()));
        }
    }
    let user = settings
        .proxy_router_user
        .as_deref()
        .unwrap_or("(from the URL)");
    match &diagnosis.credentials {
        Credentials::Accepted => checks.push(check(
            "proxy-router credentials",
            Status::Ok,
            format!("accepted for user {user}"),
        )),
        Credentials::Refused(text) => {
            checks.push(
                check(
                    "proxy-router credentials",
                    Status::Fail,
                    format!("the node refused user {user}: {text}"),
                )
                .fix("set MORPHEUS_PROXY_ROUTER_USER and MORPHEUS_PROXY_ROUTER_PASSWORD to a user of the node's auth configuration"),
            );
            return checks;
        }
        Credentials::Unknown(why) => {
            checks.push(check("proxy-router credentials", Status::Fail, why.clone()));
            return checks;
        }
    }
    let missing: Vec<&str> = diagnosis
        .permissions
        .iter()
        .filter(|(_, p)| *p == Permission::Missing)
        .map(|(m, _)| *m)
        .collect();
    let unknown: Vec<String> = diagnosis
        .permissions
        .iter()
        .filter_map(|(m, p)| match p {
            Permission::Unknown(why) => Some(format!("{m} ({why})")),
            _ => None,
        })
        .collect();
    checks.push(if !missing.is_empty() {
        check(
            "proxy-router permissions",
            Status::Fail,
            format!(
                "user {user} lacks {} (the node answers 403 method not allowed)",
                missing.join(", ")
            ),
        )
        .fix(format!(
            "add {} to the methods of user {user} on the node",
            missing.join(", ")
        ))
    } else if !unknown.is_empty() {
        check(
            "proxy-router permissions",
            Status::Warn,
            format!("could not check {}", unknown.join(", ")),
        )
    } else {
        check(
            "proxy-router permissions",
            Status::Ok,
            format!(
                "user {user} may call {}",
                morpheus_upstream::NEEDED_PERMISSIONS.join(", ")
            ),
        )
    });
    checks.push(match &diagnosis.chat_storage {
        ChatStorage::Off => check(
            "proxy-router chat storage",
            Status::Ok,
            "off (PROXY_STORE_CHAT_CONTEXT=false)",
        ),
        ChatStorage::On { forwarded } => check(
            "proxy-router chat storage",
            Status::Fail,
            format!(
                "on: the node writes every prompt and answer to disk{}, and its chat store is \
                 not safe under concurrent requests",
                if *forwarded {
                    " and prepends the stored history to prompts"
                } else {
                    ""
                }
            ),
        )
        .fix("set PROXY_STORE_CHAT_CONTEXT=false and PROXY_FORWARD_CHAT_CONTEXT=false in the node's environment and restart it"),
        ChatStorage::Unreadable(why) => check(
            "proxy-router chat storage",
            Status::Warn,
            format!("cannot tell: {why}"),
        )
        .fix("check that the node runs with PROXY_STORE_CHAT_CONTEXT=false and PROXY_FORWARD_CHAT_CONTEXT=false (its defaults are true); granting system_config lets this check read it from GET /config"),
    });
    checks
}

fn version_check(version: Option<&str>) -> Check {
    const NAME: &str = "proxy-router version";
    let (major, minor, patch) = MIN_NODE_VERSION;
    let minimum = format!("{major}.{minor}.{patch}");
    let Some(version) = version else {
        return check(NAME, Status::Warn, "the node does not say")
            .fix(format!("use a node of version {minimum} or later"));
    };
    match parse_version(version) {
        Some(v) if v >= MIN_NODE_VERSION => {
            check(NAME, Status::Ok, format!("{version} (at least {minimum})"))
        }
        Some(_) => check(
            NAME,
            Status::Fail,
            format!(
                "{version} is older than {minimum}: streams end early and usage goes unreported"
            ),
        )
        .fix(format!("upgrade the node to {minimum} or later")),
        None => check(
            NAME,
            Status::Warn,
            format!("{version} cannot be compared with {minimum}"),
        )
        .fix(format!("make sure the node is {minimum} or later")),
    }
}

/// `v5.10.0`, `5.10.0-test`, `7.1.43-dev` → (major, minor, patch).
fn parse_version(version: &str) -> Option<(u64, u64, u64)> {
    let core = version.trim().trim_start_matches('v');
    let core = core.split(['-', '+']).next()?;
    let mut parts = core.split('.').map(|p| p.parse::<u64>().ok());
    Some((
        parts.next()??,
        parts.next()??,
        parts.next().flatten().unwrap_or(0),
    ))
}

fn render(checks: &[Check]) -> Report {
    let rows: Vec<[String; 3]> = checks
        .iter()
        .map(|c| {
            [
                c.name.to_owned(),
                c.status.word().to_owned(),
                c.detail.clone(),
            ]
        })
        .collect();
    let mut text = table(["CHECK", "STATUS", "DETAIL"], &rows);
    let fixes: Vec<&Check> = checks
        .iter()
        .filter(|c| c.fix.is_some() && matches!(c.status, Status::Fail | Status::Warn))
        .collect();
    if !fixes.is_empty() {
        text.push_str("\nWhat to do:\n");
        for c in &fixes {
            text.push_str(&format!(
                "- {} ({}): {}\n",
                c.name,
                c.status.word(),
                c.fix.as_deref().unwrap_or_default()
            ));
        }
    }
    let failures = checks.iter().filter(|c| c.status == Status::Fail).count();
    let warnings = checks.iter().filter(|c| c.status == Status::Warn).count();
    text.push_str(&match (failures, warnings) {
        (0, 0) => "\nEverything checked is in order.\n".to_owned(),
        (0, w) => format!("\nNo failure; {w} warning(s).\n"),
        (f, w) => format!("\n{f} failure(s), {w} warning(s).\n"),
    });
    let json = json!({
        "ok": failures == 0,
        "checks": checks.iter().map(|c| json!({
            "check": c.name,
            "status": c.status.word(),
            "detail": c.detail,
            "fix": c.fix,
        })).collect::<Vec<_>>(),
    });
    Report {
        text,
        json,
        failed: failures > 0,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn node_versions_compare_by_their_numbers() {
        assert_eq!(parse_version("v5.10.0"), Some((5, 10, 0)));
        assert_eq!(parse_version("7.1.43-dev"), Some((7, 1, 43)));
        assert_eq!(parse_version("5.9"), Some((5, 9, 0)));
        assert_eq!(parse_version("sim-0.1.0"), None);
        assert!(parse_version("5.9.3").unwrap() < MIN_NODE_VERSION);
        assert_eq!(version_check(Some("7.1.43-dev")).status, Status::Ok);
        assert_eq!(version_check(Some("v5.9.0")).status, Status::Fail);
        assert_eq!(version_check(Some("dev")).status, Status::Warn);
    }
}
