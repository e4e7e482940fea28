//! The operator's price list: a TOML file, read at start-up and again on SIGHUP.
//!
//! ```toml
//! [default]                 # every model the file does not name
//! input = 0.50              # USD per million input tokens
//! output = 2.00             # USD per million output tokens
//! max_output_tokens = 2048  # what a hold reserves when the request sets no max_tokens
//!
//! [models."llama-3.3-70b"]  # a model's name or its blockchain id
//! input = 0.60
//! output = 2.40
//! max_output_tokens = 4096  # optional
//! ```
//!
//! Prices are decimals with at most 8 places, written as numbers or strings (`"0.15"`).

use std::collections::HashMap;
use std::path::Path;

use anyhow::Context;
use morpheus_domain::{ModelPrice, ModelPricing, Pricing, Usd};
use serde::Deserialize;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct PricingFile {
    #[serde(default)]
    default: Option<PriceEntry>,
    #[serde(default)]
    models: HashMap<String, PriceEntry>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct PriceEntry {
    input: Amount,
    output: Amount,
    #[serde(default)]
    max_output_tokens: Option<u32>,
}

/// A price as TOML has it: a number or a string.
#[derive(Deserialize)]
#[serde(untagged)]
enum Amount {
    Number(f64),
    Text(String),
}

impl Amount {
    fn usd(&self, what: &str) -> anyhow::Result<Usd> {
        let usd = match self {
            Amount::Number(n) => Usd::from_written_number(*n),
            Amount::Text(t) => t.parse(),
        }
        .map_err(|invalid| anyhow::anyhow!("{what}: {}", invalid.message))?;
        anyhow::ensure!(!usd.is_negative(), "{what}: a price cannot be negative");
        Ok(usd)
    }
}

impl PriceEntry {
    fn price(&self, what: &str) -> anyhow::Result<ModelPrice> {
        Ok(ModelPrice {
            input_per_million: self.input.usd(&format!("{what}.input"))?,
            output_per_million: self.output.usd(&format!("{what}.output"))?,
        })
    }
}

/// The prices in `text`.
///
/// # Errors
/// Not TOML, an unknown key, or a price that is not a non-negative decimal of at most 8 places.
pub fn parse(text: &str) -> anyhow::Result<Pricing> {
    let file: PricingFile = toml::from_str(text)?;
    let mut pricing = Pricing::standard();
    if let Some(default) = &file.default {
        pricing.default = default.price("default")?;
        if let Some(max) = default.max_output_tokens {
            pricing.default_max_output_tokens = max;
        }
    }
    for (model, entry) in &file.models {
        let price = entry.price(&format!("models.{model:?}"))?;
        pricing.models.insert(
            model.clone(),
            ModelPricing {
                price,
                max_output_tokens: entry.max_output_tokens,
            },
        );
    }
    Ok(pricing)
}

/// The prices of the file at `path`, or the standard ones without a file.
///
/// # Errors
/// See [`parse`]; the file cannot be read.
pub fn load(path: Option<&Path>) -> anyhow::Result<Pricing> {
    let Some(path) = path else {
        return Ok(Pricing::standard());
    };
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("reading the pricing file {}", path.display()))?;
    parse(&text).with_context(|| format!("in the pricing file {}", path.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_file_sets_the_default_and_per_model_prices_exactly() {
        let pricing = parse(
            r#"
            [default]
            input = 0.15
            output = "0.60"
            max_output_tokens = 1000

            [models."llama-3.3-70b"]
            input = 1
            output = 3.5
            "#,
        )
        .unwrap();
        assert_eq!(pricing.default.input_per_million, "0.15".parse().unwrap());
        assert_eq!(pricing.default.output_per_million, "0.6".parse().unwrap());
        assert_eq!(pricing.default_max_output_tokens, 1000);
        let llama = pricing.of("llama-3.3-70b", "0x1");
        assert_eq!(llama.price.output_per_million, "3.5".parse().unwrap());
        assert_eq!(llama.max_output_tokens, None);
    }

    #[test]
    fn mistakes_are_refused_with_where_they_are() {
        let unknown = parse("[default]\ninput = 1\noutput = 1\nouput = 2\n").unwrap_err();
        assert!(format!("{unknown:#}").contains("ouput"), "{unknown:#}");
        let negative = parse("[models.m]\ninput = -1\noutput = 1\n").unwrap_err();
        assert!(
            format!("{negative:#}").contains("models.\"m\".input"),
            "{negative:#}"
        );
        let too_fine = parse("[default]\ninput = \"0.000000001\"\noutput = 1\n").unwrap_err();
        assert!(
            format!("{too_fine:#}").contains("default.input"),
            "{too_fine:#}"
        );
        assert_eq!(parse("").unwrap(), Pricing::standard());
    }
}
