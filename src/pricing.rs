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
//! [transcription]           # every speech-to-text (STT) model the file does not name
//! per_second = 0.0001       # USD per second of audio, rounded up (the default)
//!
//! [speech]                  # every text-to-speech (TTS) model the file does not name
//! per_character = 0.000015  # USD per input character (the default)
//!
//! [models."whisper-large-v3"]
//! per_second = 0.00015      # a model is priced one way: input and output, per_second
//!                           # or per_character
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
//! Prices are decimals with at most 8 places, written as numbers or strings (`"0.15"`). An
//! audio price per unit is kept as its price per million units (`input`, with `output` 0): an
//! audio request's usage counts seconds (a transcription) or input characters (speech) as its
//! input tokens.

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

/// The prices the providers file gives its models, by the models' names.
pub type ProviderPrices = HashMap<String, ModelPricing>;

impl Tariff {
    /// The providers file's prices, for the models this price list does not name itself:
    /// the pricing file is the operator's one list and wins.
    #[must_use]
    pub fn with_provider_prices(mut self, prices: &ProviderPrices) -> Self {
        for (name, entry) in prices {
            self.pricing.models.entry(name.clone()).or_insert(*entry);
        }
        self
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct PricingFile {
    #[serde(default)]
    default: Option<PriceEntry>,
    #[serde(default)]
    models: HashMap<String, ModelEntry>,
    #[serde(default)]
    transcription: Option<TranscriptionSection>,
    #[serde(default)]
    speech: Option<SpeechSection>,
    #[serde(default)]
    limits: Option<LimitsSection>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct TranscriptionSection {
    per_second: Amount,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct SpeechSection {
    per_character: Amount,
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
pub(crate) enum Amount {
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

/// A model's entry: per million tokens (`input` and `output`), per second of audio, or per
/// character of speech; exactly one of the three. The providers file prices its models with
/// the same entry.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct ModelEntry {
    #[serde(default)]
    input: Option<Amount>,
    #[serde(default)]
    output: Option<Amount>,
    #[serde(default)]
    per_second: Option<Amount>,
    #[serde(default)]
    per_character: Option<Amount>,
    #[serde(default)]
    max_output_tokens: Option<u32>,
}

impl ModelEntry {
    /// The entry as the price list keeps it; `what` names it in errors.
    pub(crate) fn pricing(&self, what: &str) -> anyhow::Result<ModelPricing> {
        Ok(ModelPricing {
            price: self.price(what)?,
            max_output_tokens: self.max_output_tokens,
        })
    }

    fn price(&self, what: &str) -> anyhow::Result<ModelPrice> {
        let tokens = self.input.is_some() || self.output.is_some();
        match (
            tokens,
            self.per_second.as_ref(),
            self.per_character.as_ref(),
        ) {
            (true, None, None) => {
                let (Some(input), Some(output)) = (&self.input, &self.output) else {
                    anyhow::bail!("{what}: a price per token gives both input and output");
                };
                Ok(ModelPrice {
                    input_per_million: input.usd(&format!("{what}.input"))?,
                    output_per_million: output.usd(&format!("{what}.output"))?,
                })
            }
            (false, Some(per_second), None) => per_unit(per_second, &format!("{what}.per_second")),
            (false, None, Some(per_character)) => {
                per_unit(per_character, &format!("{what}.per_character"))
            }
            (false, None, None) => anyhow::bail!(
                "{what}: no price: give input and output, per_second, or per_character"
            ),
            _ => anyhow::bail!(
                "{what}: a model is priced one way only: input and output, per_second, or \
                 per_character"
            ),
        }
    }
}

/// A price per unit (a second of audio, a character), as the price per million units of
/// input it is charged at.
fn per_unit(amount: &Amount, what: &str) -> anyhow::Result<ModelPrice> {
    let usd = amount.usd(what)?;
    ModelPrice::per_unit(usd).ok_or_else(|| {
        anyhow::anyhow!("{what}: {usd} USD a unit is too much (a million would not fit)")
    })
}

/// The prices and limits in `text`.
///
/// # Errors
/// Not TOML, an unknown key, a price that is not a non-negative decimal of at most 8 places
/// (or a per-unit price whose million does not fit), a model priced more than one way or not
/// at all, a limit that is not a positive whole number, or a group without models or a usable
/// name.
pub fn parse(text: &str) -> anyhow::Result<Tariff> {
    let file: PricingFile = toml::from_str(text)?;
    let mut pricing = Pricing::standard();
    if let Some(default) = &file.default {
        pricing.default = default.price("default")?;
        if let Some(max) = default.max_output_tokens {
            pricing.default_max_output_tokens = max;
        }
    }
    if let Some(transcription) = &file.transcription {
        pricing.transcription = per_unit(&transcription.per_second, "transcription.per_second")?;
    }
    if let Some(speech) = &file.speech {
        pricing.speech = per_unit(&speech.per_character, "speech.per_character")?;
    }
    for (model, entry) in &file.models {
        let entry = entry.pricing(&format!("models.{model:?}"))?;
        pricing.models.insert(model.clone(), entry);
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
    use morpheus_domain::{ModelType, TokenUsage};

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
        let llama = pricing.of("llama-3.3-70b", "0x1", ModelType::Llm);
        assert_eq!(llama.price.output_per_million, "3.5".parse().unwrap());
        assert_eq!(llama.max_output_tokens, None);
        // The audio defaults stay the standard ones when the file does not set them.
        assert_eq!(pricing.transcription, Pricing::standard().transcription);
        assert_eq!(pricing.speech, Pricing::standard().speech);
    }

    #[test]
    fn audio_is_priced_per_second_and_per_character() {
        let pricing = parse(
            r#"
            [default]
            input = 0.15
            output = 0.60

            [transcription]
            per_second = 0.0002

            [speech]
            per_character = "0.00003"

            [models."whisper-large-v3"]
            per_second = "0.00015"

            [models.kokoro]
            per_character = 0.00000001
            "#,
        )
        .unwrap()
        .pricing;
        let usd = |raw: &str| raw.parse::<Usd>().unwrap();
        assert_eq!(pricing.transcription.input_per_million, usd("200"));
        assert_eq!(pricing.transcription.output_per_million, Usd::ZERO);
        assert_eq!(pricing.speech.input_per_million, usd("30"));
        // A model the file does not name gets the default of its type.
        assert_eq!(
            pricing.of("other", "0x1", ModelType::Stt).price,
            pricing.transcription
        );
        assert_eq!(
            pricing.of("other", "0x1", ModelType::Tts).price,
            pricing.speech
        );
        assert_eq!(
            pricing.of("other", "0x1", ModelType::Embedding).price,
            pricing.default
        );
        let whisper = pricing.of("whisper-large-v3", "0x2", ModelType::Stt).price;
        assert_eq!(whisper.input_per_million, usd("150"));
        assert_eq!(whisper.output_per_million, Usd::ZERO);
        let seconds = TokenUsage {
            prompt_tokens: 90,
            completion_tokens: 0,
        };
        assert_eq!(whisper.cost(seconds), usd("0.0135"));
        let kokoro = pricing.of("kokoro", "0x3", ModelType::Tts).price;
        assert_eq!(kokoro.input_per_million, usd("0.01"));
    }

    #[test]
    fn the_audio_defaults_cost_as_openai_lists() {
        let pricing = parse("").unwrap().pricing;
        let usage = |units| TokenUsage {
            prompt_tokens: units,
            completion_tokens: 0,
        };
        let stt = pricing.of("whisper", "0x1", ModelType::Stt).price;
        assert_eq!(stt.cost(usage(90)), "0.009".parse().unwrap());
        let tts = pricing.of("tts-1", "0x2", ModelType::Tts).price;
        assert_eq!(tts.cost(usage(1000)), "0.015".parse().unwrap());
    }

    #[test]
    fn a_model_is_priced_one_way_only() {
        for (file, says) in [
            (
                "[models.m]\ninput = 1\noutput = 1\nper_second = 0.0001\n",
                "models.\"m\": a model is priced one way only",
            ),
            (
                "[models.m]\nper_second = 0.0001\nper_character = 0.00001\n",
                "models.\"m\": a model is priced one way only",
            ),
            (
                "[models.m]\ninput = 1\nper_character = 0.00001\n",
                "models.\"m\": a model is priced one way only",
            ),
            ("[models.m]\ninput = 1\n", "models.\"m\": a price per token"),
            (
                "[models.m]\nmax_output_tokens = 10\n",
                "models.\"m\": no price",
            ),
            (
                "[models.m]\nper_second = \"0.000000001\"\n",
                "models.\"m\".per_second",
            ),
            (
                "[models.m]\nper_character = -1\n",
                "models.\"m\".per_character",
            ),
            (
                "[models.m]\nper_second = \"92233.72036855\"\n",
                "models.\"m\".per_second",
            ),
            (
                "[transcription]\nper_second = 100000\n",
                "transcription.per_second",
            ),
            ("[transcription]\nper_character = 1\n", "per_character"),
            ("[speech]\nper_second = 1\n", "per_second"),
            ("[speech]\n", "per_character"),
            ("[default]\nper_second = 1\n", "per_second"),
        ] {
            let error = format!("{:#}", parse(file).unwrap_err());
            assert!(error.contains(says), "{file}: {error}");
        }
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
