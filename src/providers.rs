//! The operator's plain OpenAI-compatible providers, beside the marketplace: a TOML file read
//! at start-up (`MORPHEUS_PROVIDERS_FILE`).
//!
//! ```toml
//! cooldown_seconds = 30          # a provider that failed is left alone this long (else its Retry-After)
//!
//! [marketplace]                  # where the marketplace stands among the providers
//! priority = 10                  # lower is tried first; default 0
//! weight = 1
//!
//! [[providers]]
//! name = "local-vllm"            # letters, digits, - and _; names the upstream in usage records
//! base_url = "http://127.0.0.1:8001/v1"
//! api_key_env = "VLLM_API_KEY"   # the environment variable holding its key (optional)
//! priority = 0
//! weight = 1
//! timeout_seconds = 60           # to the first byte (a stream's first event), and a whole JSON answer
//! idle_timeout_seconds = 60      # the longest quiet gap in a stream
//! models = [
//!   { name = "llama-3.3-70b", upstream = "meta-llama/Llama-3.3-70B-Instruct", aliases = ["llama"] },
//!   { name = "bge-m3", type = "EMBEDDING" },
//! ]
//! ```
//!
//! Prices and rate limits come from the pricing file, by the model's name, whoever serves it.

use std::collections::HashSet;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use morpheus_domain::ModelType;
use morpheus_domain::ports::Provider;
use morpheus_domain::services::{DEFAULT_COOLDOWN, ProvidedModel, ProviderEntry, Upstreams};
use morpheus_upstream::{OpenAiProvider, ProviderConfig};
use secrecy::SecretString;
use serde::Deserialize;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ProvidersFile {
    #[serde(default)]
    cooldown_seconds: Option<u64>,
    #[serde(default)]
    marketplace: Option<MarketplaceEntry>,
    #[serde(default)]
    providers: Vec<ProviderSection>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct MarketplaceEntry {
    #[serde(default)]
    priority: u32,
    #[serde(default = "one")]
    weight: u32,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ProviderSection {
    name: String,
    base_url: String,
    #[serde(default)]
    api_key_env: Option<String>,
    #[serde(default)]
    priority: u32,
    #[serde(default = "one")]
    weight: u32,
    #[serde(default = "sixty")]
    timeout_seconds: u64,
    #[serde(default = "sixty")]
    idle_timeout_seconds: u64,
    models: Vec<ModelSection>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ModelSection {
    name: String,
    #[serde(default)]
    upstream: Option<String>,
    #[serde(default)]
    aliases: Vec<String>,
    #[serde(default, rename = "type")]
    model_type: Option<String>,
}

fn one() -> u32 {
    1
}

fn sixty() -> u64 {
    60
}

/// The routing table the file declares; no file: the marketplace alone.
/// `wrap` dresses each provider's client (the composition root adds its metrics).
pub fn load(
    path: Option<&Path>,
    connect_timeout: Duration,
    wrap: &dyn Fn(Arc<dyn Provider>) -> Arc<dyn Provider>,
) -> anyhow::Result<Upstreams> {
    let Some(path) = path else {
        return Ok(Upstreams::marketplace_only());
    };
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("reading the providers file {}", path.display()))?;
    parse(
        &text,
        connect_timeout,
        &|name| std::env::var(name).ok(),
        wrap,
    )
    .with_context(|| format!("in the providers file {}", path.display()))
}

fn parse(
    text: &str,
    connect_timeout: Duration,
    env: &dyn Fn(&str) -> Option<String>,
    wrap: &dyn Fn(Arc<dyn Provider>) -> Arc<dyn Provider>,
) -> anyhow::Result<Upstreams> {
    let file: ProvidersFile = toml::from_str(text)?;
    let mut names = HashSet::new();
    let mut entries = Vec::with_capacity(file.providers.len());
    for section in file.providers {
        let name = section.name;
        anyhow::ensure!(
            !name.is_empty()
                && name.len() <= 64
                && name != "marketplace"
                && name
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_'),
            "providers: {name:?}: a name is 1 to 64 letters, digits, - or _, and not \"marketplace\""
        );
        anyhow::ensure!(
            names.insert(name.clone()),
            "providers: {name:?} is declared twice"
        );
        anyhow::ensure!(
            !section.models.is_empty(),
            "providers.{name}.models: name at least one model"
        );
        anyhow::ensure!(
            (1..=3600).contains(&section.timeout_seconds)
                && (1..=3600).contains(&section.idle_timeout_seconds),
            "providers.{name}: timeouts are 1 to 3600 seconds"
        );
        let api_key = match &section.api_key_env {
            Some(var) => Some(SecretString::from(env(var).with_context(|| {
                format!("providers.{name}.api_key_env: the environment variable {var} is not set")
            })?)),
            None => None,
        };
        let mut models = Vec::with_capacity(section.models.len());
        for model in section.models {
            anyhow::ensure!(
                !model.name.trim().is_empty(),
                "providers.{name}.models: a model needs a name"
            );
            let model_type = match &model.model_type {
                None => ModelType::Llm,
                Some(raw) => ModelType::parse(raw).with_context(|| {
                    format!(
                        "providers.{name}.models.{}: type is LLM, EMBEDDING, STT, TTS or UNKNOWN",
                        model.name
                    )
                })?,
            };
            models.push(ProvidedModel {
                upstream_name: model.upstream.unwrap_or_else(|| model.name.clone()),
                name: model.name,
                aliases: model.aliases,
                model_type,
            });
        }
        let timeout = Duration::from_secs(section.timeout_seconds);
        let client = OpenAiProvider::new(ProviderConfig {
            name: name.clone(),
            base_url: section.base_url,
            api_key,
            connect_timeout,
            first_byte_timeout: timeout,
            idle_timeout: Duration::from_secs(section.idle_timeout_seconds),
            request_timeout: timeout,
        })?;
        entries.push(ProviderEntry {
            name,
            client: wrap(Arc::new(client)),
            priority: section.priority,
            weight: section.weight.max(1),
            models,
        });
    }
    let marketplace = file.marketplace.unwrap_or(MarketplaceEntry {
        priority: 0,
        weight: 1,
    });
    Ok(Upstreams::new(
        entries,
        marketplace.priority,
        marketplace.weight,
        file.cooldown_seconds
            .map_or(DEFAULT_COOLDOWN, Duration::from_secs),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(name: &str) -> Option<String> {
        (name == "VLLM_KEY").then(|| "sk-local".to_owned())
    }

    fn parsed(text: &str) -> anyhow::Result<Upstreams> {
        parse(text, Duration::from_secs(1), &env, &|p| p)
    }

    #[test]
    fn a_full_file_reads_and_lists_its_models() {
        let upstreams = parsed(
            r#"
            cooldown_seconds = 5
            [marketplace]
            priority = 10
            [[providers]]
            name = "vllm"
            base_url = "http://127.0.0.1:8001/v1"
            api_key_env = "VLLM_KEY"
            models = [
              { name = "llama", upstream = "meta/llama", aliases = ["l3"] },
              { name = "bge", type = "embedding" },
            ]
            "#,
        )
        .unwrap();
        assert!(upstreams.has_providers());
        let models = upstreams.models();
        assert_eq!(models.len(), 2);
        assert_eq!(models[1].model_type, ModelType::Embedding);
        assert_eq!(upstreams.aliases(), [("l3".to_owned(), "llama".to_owned())]);
    }

    #[test]
    fn mistakes_are_refused_with_their_place() {
        let base = "base_url = \"http://h/v1\"\nmodels = [{ name = \"m\" }]";
        for (text, says) in [
            (format!("[[providers]]\nname = \"a b\"\n{base}"), "a name is"),
            (
                format!("[[providers]]\nname = \"a\"\n{base}\n[[providers]]\nname = \"a\"\n{base}"),
                "declared twice",
            ),
            (
                format!("[[providers]]\nname = \"a\"\napi_key_env = \"NOPE\"\n{base}"),
                "NOPE is not set",
            ),
            (
                "[[providers]]\nname = \"a\"\nbase_url = \"http://h\"\nmodels = []".to_owned(),
                "at least one model",
            ),
            (
                "[[providers]]\nname = \"a\"\nbase_url = \"http://h\"\nmodels = [{ name = \"m\", type = \"vision\" }]".to_owned(),
                "type is LLM",
            ),
            (format!("[[providers]]\nname = \"a\"\ncolour = 1\n{base}"), "unknown field"),
        ] {
            let error = format!("{:#}", parsed(&text).err().expect(says));
            assert!(error.contains(says), "{error}");
        }
    }

    #[test]
    fn no_file_means_the_marketplace_alone() {
        assert!(
            !load(None, Duration::from_secs(1), &|p| p)
                .unwrap()
                .has_providers()
        );
    }
}
