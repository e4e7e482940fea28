//! What is made from the declarations for people: README's settings table, and the effective
//! configuration that `morpheus-gateway config` prints.

use serde_json::{Value, json};

use super::load::Loaded;
use super::specs;

/// README's settings table (between its markers), generated from the declarations.
pub fn readme_table() -> String {
    let mut out = String::from(
        "| environment variable | values | default | meaning |\n|---|---|---|---|\n\
         | `MORPHEUS_CONFIG` / `--config` | path | unset | a TOML file with any of the settings below |\n",
    );
    for spec in specs() {
        let name = match spec.cli {
            Some(flag) => format!("`{}` / `--{flag}`", spec.env),
            None => format!("`{}`", spec.env),
        };
        let default = if spec.default_text == "unset" || spec.default_text.contains(' ') {
            spec.default_text.clone()
        } else {
            format!("`{}`", spec.default_text)
        };
        out.push_str(&format!(
            "| {name} | {} | {} | {} |\n",
            cell(&spec.kind),
            cell(&default),
            cell(&spec.doc)
        ));
    }
    out.push_str(
        "| `RUST_LOG` | filter | `info` | log filter (`tracing-subscriber`'s `EnvFilter`) |\n",
    );
    out
}

fn cell(text: &str) -> String {
    text.replace('|', "\\|")
}

/// One row per setting: its name, its value (secrets redacted), and where it came from.
pub fn effective_rows(loaded: &Loaded) -> Vec<[String; 3]> {
    specs()
        .iter()
        .zip(&loaded.origins)
        .map(|(spec, origin)| {
            [
                spec.name.to_owned(),
                spec.show(&loaded.settings)
                    .unwrap_or_else(|| "(unset)".to_owned()),
                origin.to_string(),
            ]
        })
        .collect()
}

/// The same as JSON: `{"settings":[{"name","env","value","secret","from"}]}`.
pub fn effective_json(loaded: &Loaded) -> Value {
    let settings: Vec<Value> = specs()
        .iter()
        .zip(&loaded.origins)
        .map(|(spec, origin)| {
            json!({
                "name": spec.name,
                "env": spec.env,
                "value": spec.show(&loaded.settings),
                "secret": spec.secret,
                "from": origin.to_string(),
            })
        })
        .collect();
    json!({ "settings": settings })
}
