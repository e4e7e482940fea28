//! Settings, layered: the declared defaults < the TOML file (`--config`, `MORPHEUS_CONFIG`) <
//! the environment < the command line, each value remembered with where it came from.
//!
//! figment did this before, but it guesses a type from an environment variable's text (a
//! password of digits became a number) and does not say which variable set a value; here each
//! value is parsed by its setting's declared type, and every error names the setting.

use std::ffi::OsString;
use std::fmt;
use std::path::{Path, PathBuf};

use super::declare::Raw;
use super::{OTHER_VARIABLES, Settings, specs};

/// Where a setting's value came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Origin {
    Default,
    File(PathBuf),
    Env(String),
    CommandLine(String),
}

impl fmt::Display for Origin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Origin::Default => f.write_str("default"),
            Origin::File(path) => write!(f, "file {}", path.display()),
            Origin::Env(var) => write!(f, "env {var}"),
            Origin::CommandLine(flag) => write!(f, "command line --{flag}"),
        }
    }
}

/// The settings, where each came from, and what start-up should warn about.
#[derive(Debug, Clone)]
pub struct Loaded {
    pub settings: Settings,
    /// One per setting, in the order of [`specs`].
    pub origins: Vec<Origin>,
    /// Unknown `MORPHEUS_*` variables, each with the closest known name.
    pub warnings: Vec<String>,
}

/// What the settings are read from.
pub struct Sources<'a, E> {
    pub file: Option<&'a Path>,
    /// The process environment (all of it: unknown `MORPHEUS_*` names are reported).
    pub env: E,
    /// `(setting name, value)` from the command line.
    pub command_line: Vec<(&'static str, String)>,
}

/// # Errors
/// The file cannot be read or parsed, it has a key that is not a setting, or values are
/// invalid: one line per setting, naming it and where its value came from.
pub fn load_from<E>(sources: Sources<'_, E>) -> anyhow::Result<Loaded>
where
    E: IntoIterator<Item = (OsString, OsString)>,
{
    let specs = specs();
    let mut settings = Settings::default();
    let mut origins = vec![Origin::Default; specs.len()];
    let mut errors = Vec::new();
    // Settings whose value did not parse: their bounds are not checked on top.
    let mut failed = vec![false; specs.len()];
    let mut warnings = Vec::new();
    let position = |name: &str| specs.iter().position(|s| s.name == name);

    if let Some(path) = sources.file {
        let text = std::fs::read_to_string(path)
            .map_err(|e| anyhow::anyhow!("config file {}: {e}", path.display()))?;
        let table: toml::Table = text
            .parse()
            .map_err(|e| anyhow::anyhow!("config file {}: {e}", path.display()))?;
        for (key, value) in &table {
            let Some(i) = position(key) else {
                errors.push(format!(
                    "unknown key `{key}` in {}{}",
                    path.display(),
                    suggestion(key, specs.iter().map(|s| s.name))
                        .map_or(String::new(), |s| format!(" (did you mean `{s}`?)"))
                ));
                continue;
            };
            let origin = Origin::File(path.to_owned());
            match (specs[i].apply)(&mut settings, Raw::Toml(value)) {
                Ok(()) => origins[i] = origin,
                Err(why) => {
                    failed[i] = true;
                    errors.push(invalid(i, &origin, &why));
                }
            }
        }
    }

    let mut env: Vec<(String, Result<String, OsString>)> = sources
        .env
        .into_iter()
        .filter_map(|(k, v)| Some((k.into_string().ok()?, v.into_string())))
        .collect();
    env.sort_by(|a, b| a.0.cmp(&b.0));
    for (var, value) in &env {
        let declared = specs.iter().position(|s| s.env == *var);
        let Some(i) = declared else {
            if var.starts_with("MORPHEUS_") && !OTHER_VARIABLES.iter().any(|(v, _)| v == var) {
                warnings.push(unknown_variable(var));
            }
            continue;
        };
        let origin = Origin::Env(var.clone());
        let applied = match value {
            Ok(text) => (specs[i].apply)(&mut settings, Raw::Text(text)),
            Err(_) => Err("the value is not valid UTF-8".to_owned()),
        };
        match applied {
            Ok(()) => {
                failed[i] = false;
                origins[i] = origin;
            }
            Err(why) => {
                failed[i] = true;
                errors.push(invalid(i, &origin, &why));
            }
        }
    }

    for (name, text) in &sources.command_line {
        let i = position(name).expect("command-line flags are made from the declarations");
        let origin = Origin::CommandLine(specs[i].cli.unwrap_or(name).to_owned());
        match (specs[i].apply)(&mut settings, Raw::Text(text)) {
            Ok(()) => {
                failed[i] = false;
                origins[i] = origin;
            }
            Err(why) => {
                failed[i] = true;
                errors.push(invalid(i, &origin, &why));
            }
        }
    }

    for (i, spec) in specs.iter().enumerate() {
        if failed[i] {
            continue;
        }
        if let Err(why) = spec.validate(&settings) {
            errors.push(invalid(i, &origins[i], &why));
        }
    }

    if !errors.is_empty() {
        anyhow::bail!("{}", errors.join("\n"));
    }
    Ok(Loaded {
        settings,
        origins,
        warnings,
    })
}

/// One line naming the setting as the operator wrote it: `invalid MORPHEUS_WORKERS: "x" is
/// not a whole number`, `invalid workers in gateway.toml: …`, `invalid --bind: …`.
fn invalid(i: usize, origin: &Origin, why: &str) -> String {
    let spec = &specs()[i];
    match origin {
        Origin::Env(var) => format!("invalid {var}: {why}"),
        Origin::File(path) => format!("invalid {} in {}: {why}", spec.name, path.display()),
        Origin::CommandLine(flag) => format!("invalid --{flag}: {why}"),
        Origin::Default => format!("invalid {} (its default): {why}", spec.env),
    }
}

impl Settings {
    /// Checks every value against its declaration (for settings built in code; [`load_from`]
    /// checks what it loads).
    ///
    /// # Errors
    /// One line per invalid setting.
    pub fn validate(&self) -> anyhow::Result<()> {
        let errors: Vec<String> = specs()
            .iter()
            .filter_map(|spec| {
                spec.validate(self)
                    .err()
                    .map(|why| format!("invalid {}: {why}", spec.env))
            })
            .collect();
        anyhow::ensure!(errors.is_empty(), "{}", errors.join("\n"));
        Ok(())
    }
}

fn unknown_variable(var: &str) -> String {
    let rest = var.trim_start_matches("MORPHEUS_").to_ascii_lowercase();
    // Compared without the prefix, so MORPHEUS_DATABASE_URL finds DATABASE_URL.
    let closest = suggestion(&rest, specs().iter().map(|s| s.name))
        .and_then(|name| specs().iter().find(|s| s.name == name))
        .map(|spec| spec.env.as_str());
    match closest {
        Some(known) => format!("{var} is not a setting and is ignored; did you mean {known}?"),
        None => format!(
            "{var} is not a setting and is ignored (see `morpheus-gateway config` for the settings)"
        ),
    }
}

/// The known name closest to `unknown`, when one is close enough to be a likely typo.
pub(crate) fn suggestion<'a>(
    unknown: &str,
    known: impl Iterator<Item = &'a str>,
) -> Option<&'a str> {
    known
        .map(|k| (k, strsim::normalized_damerau_levenshtein(unknown, k)))
        .filter(|(_, score)| *score >= 0.6)
        .max_by(|a, b| a.1.total_cmp(&b.1))
        .map(|(k, _)| k)
}
