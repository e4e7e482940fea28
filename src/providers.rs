//! The operator's plain OpenAI-compatible providers, beside the marketplace: a TOML file read
//! at start-up and again on SIGHUP (`MORPHEUS_PROVIDERS_FILE`, `crate::reload`).
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
//!   { name = "bge-m3", type = "EMBEDDING", price = { input = 0.02, output = 0 } },
//!   { name = "whisper", type = "STT", price = { per_second = 0.0001 } },
//! ]
//! ```
//!
//! A model's price is the same whoever serves it: the pricing file's entry for its name, else
//! the `price` a providers file gives it (the pricing file's model entry, inline), else the
//! pricing file's default for its type. Rate limits come from the pricing file.

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

use crate::pricing::ProviderPrices;

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
    #[serde(default)]
    price: Option<crate::pricing::ModelEntry>,
}

/// What the file declares: the routing table, and the prices it gives its models.
pub struct Providers {
    pub upstreams: Upstreams,
    pub prices: ProviderPrices,
}

fn one() -> u32 {
    1
}

fn sixty() -> u64 {
    60
}

/// The routing table and prices the file declares; no file: the marketplace alone.
/// `wrap` dresses each provider's client (the composition root adds its metrics).
pub fn load(
    path: Option<&Path>,
    connect_timeout: Duration,
    wrap: &dyn Fn(Arc<dyn Provider>) -> Arc<dyn Provider>,
) -> anyhow::Result<Providers> {
    let Some(path) = path else {
        return Ok(Providers {
            upstreams: Upstreams::marketplace_only(),
            prices: ProviderPrices::new(),
        });
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
) -> anyhow::Result<Providers> {
    let file: ProvidersFile = toml::from_str(text)?;
    let mut names = HashSet::new();
    let mut prices = ProviderPrices::new();
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
            if let Some(price) = &model.price {
                let what = format!("providers.{name}.models.{}.price", model.name);
                let entry = price.pricing(&what)?;
                let earlier = prices.insert(model.name.clone(), entry);
                anyhow::ensure!(
                    earlier.is_none_or(|earlier| earlier == entry),
                    "{what}: another provider prices {} differently; a model has one price",
                    model.name
                );
            }
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
    let upstreams = Upstreams::new(
        entries,
        marketplace.priority,
        marketplace.weight,
        file.cooldown_seconds
            .map_or(DEFAULT_COOLDOWN, Duration::from_secs),
    );
    Ok(Providers { upstreams, prices })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(name: &str) -> Option<String> {
        (name == "VLLM_KEY").then(|| "sk-local".to_owned())
    }

    fn parsed(text: &str) -> anyhow::Result<Upstreams> {
        priced(text).map(|p| p.upstreams)
    }

    fn priced(text: &str) -> anyhow::Result<Providers> {
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
            (
                "[[providers]]\nname = \"a\"\nbase_url = \"http://h\"\nmodels = [{ name = \"m\", price = { input = 1 } }]".to_owned(),
                "providers.a.models.m.price: a price per token gives both",
            ),
            (
                "[[providers]]\nname = \"a\"\nbase_url = \"http://h\"\nmodels = [{ name = \"m\", price = { per_second = 1 } }]\n[[providers]]\nname = \"b\"\nbase_url = \"http://h\"\nmodels = [{ name = \"m\", price = { per_second = 2 } }]".to_owned(),
                "prices m differently",
            ),
        ] {
            let error = format!("{:#}", parsed(&text).err().expect(says));
            assert!(error.contains(says), "{error}");
        }
    }

    #[test]
    fn no_file_means_the_marketplace_alone() {
        let providers = load(None, Duration::from_secs(1), &|p| p).unwrap();
        assert!(!providers.upstreams.has_providers());
        assert!(providers.prices.is_empty());
    }

    #[test]
    fn a_models_price_applies_unless_the_pricing_file_names_it() {
        let providers = priced(
            r#"
            [[providers]]
            name = "vllm"
            base_url = "http://127.0.0.1:8001/v1"
            models = [
              { name = "llama", price = { input = 0.2, output = "0.8", max_output_tokens = 512 } },
              { name = "ears", type = "STT", price = { per_second = 0.0002 } },
              { name = "named-there", price = { input = 9, output = 9 } },
            ]
            "#,
        )
        .unwrap();
        let tariff = crate::pricing::parse("[models.\"named-there\"]\ninput = 1\noutput = 1\n")
            .unwrap()
            .with_provider_prices(&providers.prices);
        let pricing = &tariff.pricing;
        let llama = pricing.of("llama", "0x1", ModelType::Llm);
        assert_eq!(llama.price.input_per_million.to_string(), "0.20000000");
        assert_eq!(llama.price.output_per_million.to_string(), "0.80000000");
        assert_eq!(llama.max_output_tokens, Some(512));
        let ears = pricing.of("ears", "0x2", ModelType::Stt);
        assert_eq!(ears.price.input_per_million.to_string(), "200.00000000");
        let named = pricing.of("named-there", "0x3", ModelType::Llm);
        assert_eq!(
            named.price.input_per_million.to_string(),
            "1.00000000",
            "the pricing file wins"
        );
    }
}
