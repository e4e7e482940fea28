//! The operator's price list and rate limits: a TOML file, read at start-up and again on
//! SIGHUP.
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
//!
//! [limits]                  # per user, every model no group names; absent: unlimited
//! rpm = 600                 # requests per minute
//! tpm = 1000000             # tokens per minute (input and output)
//!
//! [limits.groups.large]     # a group's name labels its counters: letters, digits, - and _
//! models = ["llama-3.3-70b"]
//! rpm = 60
//! tpm = 200000
//! ```
//!
//! Prices are decimals with at most 8 places, written as numbers or strings (`"0.15"`).

use std::collections::{BTreeMap, HashMap};
use std::num::{NonZeroU32, NonZeroU64};
use std::path::Path;

use anyhow::Context;
use morpheus_domain::{
    DEFAULT_GROUP, ModelGroup, ModelPrice, ModelPricing, OperatorLimits, Pricing, RateLimit, Usd,
};
use serde::Deserialize;

/// What the file sets: the prices and the operator's rate limits.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Tariff {
    pub pricing: Pricing,
    pub limits: OperatorLimits,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct PricingFile {
    #[serde(default)]
    default: Option<PriceEntry>,
    #[serde(default)]
    models: HashMap<String, PriceEntry>,
    #[serde(default)]
    limits: Option<LimitsSection>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct LimitsSection {
    rpm: Option<NonZeroU32>,
    tpm: Option<NonZeroU64>,
    /// Ordered by name, so a model two groups name always falls in the same one.
    #[serde(default)]
    groups: BTreeMap<String, GroupEntry>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct GroupEntry {
    models: Vec<String>,
    rpm: Option<NonZeroU32>,
    tpm: Option<NonZeroU64>,
}

impl LimitsSection {
    fn limits(self) -> anyhow::Result<OperatorLimits> {
        let mut groups = Vec::with_capacity(self.groups.len());
        for (name, group) in self.groups {
            anyhow::ensure!(
                !name.is_empty()
                    && name.len() <= 64
                    && name != DEFAULT_GROUP
                    && name
                        .bytes()
                        .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_'),
                "limits.groups.{name:?}: a group's name is 1 to 64 letters, digits, - or _, and \
                 not {DEFAULT_GROUP:?}"
            );
            anyhow::ensure!(
                !group.models.is_empty(),
                "limits.groups.{name:?}.models: name at least one model"
            );
            groups.push(ModelGroup {
                name,
                models: group.models,
                limit: RateLimit {
                    rpm: group.rpm,
                    tpm: group.tpm,
                },
            });
        }
        Ok(OperatorLimits {
            default: RateLimit {
                rpm: self.rpm,
                tpm: self.tpm,
            },
            groups,
        })
    }
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

/// The prices and limits in `text`.
///
/// # Errors
/// Not TOML, an unknown key, a price that is not a non-negative decimal of at most 8 places,
/// a limit that is not a positive whole number, or a group without models or a usable name.
pub fn parse(text: &str) -> anyhow::Result<Tariff> {
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
    let limits = file
        .limits
        .map(LimitsSection::limits)
        .transpose()?
        .unwrap_or_default();
    Ok(Tariff { pricing, limits })
}

/// The prices and limits of the file at `path`; without a file, the standard prices and no
/// limits.
///
/// # Errors
/// See [`parse`]; the file cannot be read.
pub fn load(path: Option<&Path>) -> anyhow::Result<Tariff> {
    let Some(path) = path else {
        return Ok(Tariff {
            pricing: Pricing::standard(),
            limits: OperatorLimits::default(),
        });
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
        .unwrap()
        .pricing;
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
        assert_eq!(parse("").unwrap().pricing, Pricing::standard());
        assert_eq!(parse("").unwrap().limits, OperatorLimits::default());
        for (file, says) in [
            ("[limits]\nrpm = 0\n", "rpm"),
            ("[limits]\nrpm = -5\n", "rpm"),
            ("[limits]\nrmp = 5\n", "rmp"),
            (
                "[limits.groups.x]\nmodels = []\n",
                "limits.groups.\"x\".models",
            ),
            (
                "[limits.groups.\"a b\"]\nmodels = [\"m\"]\n",
                "a group's name",
            ),
            (
                "[limits.groups.default]\nmodels = [\"m\"]\n",
                "a group's name",
            ),
        ] {
            let error = format!("{:#}", parse(file).unwrap_err());
            assert!(error.contains(says), "{file}: {error}");
        }
    }

    #[test]
    fn limits_are_read_per_group_with_a_default() {
        let limits = parse(
            r#"
            [limits]
            rpm = 600

            [limits.groups.large]
            models = ["llama-3.3-70b", "0xabc"]
            rpm = 60
            tpm = 200000
            "#,
        )
        .unwrap()
        .limits;
        assert_eq!(limits.default.rpm, NonZeroU32::new(600));
        assert_eq!(limits.default.tpm, None);
        let (group, large) = limits.of("x", "0xabc");
        assert_eq!(group, "large");
        assert_eq!(large.tpm, NonZeroU64::new(200_000));
        assert_eq!(limits.of("other", "0x1").0, DEFAULT_GROUP);
    }
}
