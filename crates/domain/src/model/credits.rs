//! Credits: a ledger per user and the balance it adds up to.
//!
//! The ledger is the source of truth. A user's balance row is updated in the same transaction
//! as each entry, so `posted` always equals the sum of the user's posted entries and `held`
//! the sum of their pending holds.

use std::collections::HashMap;

use chrono::{DateTime, Utc};

use super::{ApiKeyId, ModelType, TokenUsage, Usd, UserId};

/// What a ledger entry records.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum LedgerEntryType {
    /// Credit bought (a payment).
    Purchase,
    /// Credit granted or taken back by the operator, and the sign-up credit.
    Adjustment,
    /// Credit set aside for a request in flight (pending), until it is settled or voided.
    UsageHold,
    /// What a request cost (a settled hold).
    UsageCharge,
    /// Credit given back for a charge.
    Refund,
}

impl LedgerEntryType {
    pub const ALL: [Self; 5] = [
        Self::Purchase,
        Self::Adjustment,
        Self::UsageHold,
        Self::UsageCharge,
        Self::Refund,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Purchase => "purchase",
            Self::Adjustment => "adjustment",
            Self::UsageHold => "usage_hold",
            Self::UsageCharge => "usage_charge",
            Self::Refund => "refund",
        }
    }

    pub fn parse(raw: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|t| t.as_str() == raw)
    }
}

/// Where an entry is in its life: holds are `Pending` until settled (`Posted`, as a charge) or
/// released (`Voided`); every other entry is `Posted` when written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum LedgerStatus {
    Pending,
    Posted,
    Voided,
}

impl LedgerStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Pending => "pending",
            Self::Posted => "posted",
            Self::Voided => "voided",
        }
    }

    pub fn parse(raw: &str) -> Option<Self> {
        [Self::Pending, Self::Posted, Self::Voided]
            .into_iter()
            .find(|s| s.as_str() == raw)
    }
}

/// A ledger entry's id: a random UUID, made before the entry is written so that writing it
/// again (a retry) cannot make a second entry.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct LedgerEntryId(pub uuid::Uuid);

impl LedgerEntryId {
    pub fn random() -> Self {
        Self(uuid::Uuid::new_v4())
    }
}

impl std::fmt::Display for LedgerEntryId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.0.fmt(f)
    }
}

/// One line of a user's ledger. `amount` is signed: credit is positive, spending negative.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LedgerEntry {
    pub id: LedgerEntryId,
    pub user_id: UserId,
    pub entry_type: LedgerEntryType,
    pub status: LedgerStatus,
    pub amount: Usd,
    pub idempotency_key: Option<String>,
    pub api_key_id: Option<ApiKeyId>,
    pub model: Option<String>,
    pub request_id: Option<String>,
    pub usage: Option<TokenUsage>,
    pub prices: Option<ModelPrice>,
    /// The charge was not made on the provider's own count (a cut stream whose final usage
    /// never came is charged on the tokens delivered).
    pub estimated: bool,
    pub description: Option<String>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

/// A user's credit: what posted entries add up to, and what pending holds set aside.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Balance {
    pub posted: Usd,
    pub held: Usd,
}

impl Balance {
    /// What a new request may still set aside.
    pub fn available(self) -> Usd {
        self.posted.saturating_sub(self.held)
    }
}

/// USD per million tokens. An audio model's usage counts units instead (audio seconds for a
/// transcription, input characters for speech, in `prompt_tokens`), so its price is
/// `input_per_million` per million units and `output_per_million` zero: see
/// [`ModelPrice::per_unit`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ModelPrice {
    pub input_per_million: Usd,
    pub output_per_million: Usd,
}

impl ModelPrice {
    /// A price of `per_unit` USD for each unit of input (an audio second, a character) and
    /// nothing for output, exactly. `None` when a million units would cost more than [`Usd`]
    /// holds (about 92 billion USD).
    pub fn per_unit(per_unit: Usd) -> Option<Self> {
        Some(Self {
            input_per_million: Usd::from_units(per_unit.units().checked_mul(1_000_000)?),
            output_per_million: Usd::ZERO,
        })
    }

    pub fn cost(self, usage: TokenUsage) -> Usd {
        Usd::per_million(self.input_per_million, u64::from(usage.prompt_tokens)).saturating_add(
            Usd::per_million(self.output_per_million, u64::from(usage.completion_tokens)),
        )
    }
}

/// The operator's price list: a price per model (by name or id) and, for the rest, a price
/// per model type.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pricing {
    /// Every model the list does not name, but for the audio types below.
    pub default: ModelPrice,
    /// Speech-to-text models ([`ModelType::Stt`]) the list does not name: per audio second
    /// (see [`ModelPrice::per_unit`]).
    pub transcription: ModelPrice,
    /// Text-to-speech models ([`ModelType::Tts`]) the list does not name: per input
    /// character.
    pub speech: ModelPrice,
    /// The output a hold reserves for when the request sets no `max_tokens`.
    pub default_max_output_tokens: u32,
    /// Keyed by model name or blockchain id, as the file wrote it.
    pub models: HashMap<String, ModelPricing>,
}

/// One model's entry in the price list.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ModelPricing {
    pub price: ModelPrice,
    /// The model's own output reservation, when it differs from the default.
    pub max_output_tokens: Option<u32>,
}

impl Pricing {
    /// The original gateway's defaults: 0.50 USD per million input tokens, 2.00 per million
    /// output tokens, 2048 output tokens reserved when the request does not say. Audio at
    /// OpenAI's list prices: a transcription 0.0001 USD per second (whisper's 0.006 per
    /// minute), speech 15 USD per million characters.
    pub fn standard() -> Self {
        Self {
            default: ModelPrice {
                input_per_million: Usd::from_units(50_000_000),
                output_per_million: Usd::from_units(200_000_000),
            },
            transcription: ModelPrice {
                input_per_million: Usd::from_units(100 * Usd::UNITS_PER_DOLLAR),
                output_per_million: Usd::ZERO,
            },
            speech: ModelPrice {
                input_per_million: Usd::from_units(15 * Usd::UNITS_PER_DOLLAR),
                output_per_million: Usd::ZERO,
            },
            default_max_output_tokens: 2048,
            models: HashMap::new(),
        }
    }

    /// The price of a model of this type that the list does not name.
    pub fn default_for(&self, model_type: ModelType) -> ModelPrice {
        match model_type {
            ModelType::Stt => self.transcription,
            ModelType::Tts => self.speech,
            ModelType::Llm | ModelType::Embedding | ModelType::Unknown => self.default,
        }
    }

    /// The entry of the model with this name or id (the name wins), else the default of its
    /// type.
    pub fn of(&self, name: &str, id: &str, model_type: ModelType) -> ModelPricing {
        self.models
            .get(name)
            .or_else(|| self.models.get(id))
            .copied()
            .unwrap_or(ModelPricing {
                price: self.default_for(model_type),
                max_output_tokens: None,
            })
    }

    pub fn max_output_tokens(&self, entry: ModelPricing) -> u32 {
        entry
            .max_output_tokens
            .unwrap_or(self.default_max_output_tokens)
    }
}

/// What a request may use, as estimated before it is sent: the hold covers it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct TokenEstimate {
    pub input_tokens: u32,
    /// `max_tokens` (times `n`) when the request set it.
    pub max_output_tokens: Option<u32>,
}

impl TokenEstimate {
    /// Tokens in a text, estimated as the original gateway does: four characters a token,
    /// rounded up.
    pub fn tokens_in_chars(chars: usize) -> u32 {
        u32::try_from(chars.div_ceil(4)).unwrap_or(u32::MAX)
    }
}

/// One month's spending.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MonthSpending {
    pub year: i32,
    pub month: u32,
    /// Charges (positive), less refunds when asked for the net.
    pub amount: Usd,
    pub transaction_count: u64,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_models_price_is_found_by_name_then_id_else_the_default() {
        let mut pricing = Pricing::standard();
        let special = ModelPricing {
            price: ModelPrice {
                input_per_million: "1".parse().unwrap(),
                output_per_million: "3".parse().unwrap(),
            },
            max_output_tokens: Some(512),
        };
        pricing.models.insert("llama".into(), special);
        let llm = ModelType::Llm;
        assert_eq!(pricing.of("llama", "0x1", llm), special);
        assert_eq!(pricing.of("other", "llama", llm), special);
        assert_eq!(pricing.of("other", "0x2", llm).price, pricing.default);
        assert_eq!(pricing.max_output_tokens(special), 512);
        assert_eq!(pricing.max_output_tokens(pricing.of("x", "y", llm)), 2048);
    }

    #[test]
    fn a_model_the_list_does_not_name_gets_the_default_of_its_type() {
        let mut pricing = Pricing::standard();
        let of = |pricing: &Pricing, t| pricing.of("whisper", "0x1", t).price;
        assert_eq!(of(&pricing, ModelType::Stt), pricing.transcription);
        assert_eq!(of(&pricing, ModelType::Tts), pricing.speech);
        for t in [ModelType::Llm, ModelType::Embedding, ModelType::Unknown] {
            assert_eq!(of(&pricing, t), pricing.default, "{t}");
        }
        assert_eq!(
            pricing.transcription,
            ModelPrice::per_unit("0.0001".parse().unwrap()).unwrap()
        );
        assert_eq!(
            pricing.speech,
            ModelPrice::per_unit("0.000015".parse().unwrap()).unwrap()
        );
        // A model the list names keeps its own price, whatever its type.
        let named = ModelPricing {
            price: ModelPrice::per_unit("0.0002".parse().unwrap()).unwrap(),
            max_output_tokens: None,
        };
        pricing.models.insert("whisper".into(), named);
        assert_eq!(pricing.of("whisper", "0x1", ModelType::Stt), named);
        assert_eq!(pricing.of("whisper", "0x1", ModelType::Llm), named);
    }

    #[test]
    fn audio_costs_per_second_and_per_character_at_the_defaults() {
        let pricing = Pricing::standard();
        // 90 seconds at 0.0001 USD a second (0.006 a minute).
        let seconds = TokenUsage {
            prompt_tokens: 90,
            completion_tokens: 0,
        };
        assert_eq!(
            pricing.transcription.cost(seconds),
            "0.009".parse().unwrap()
        );
        // 1000 characters at 15 USD per million.
        let characters = TokenUsage {
            prompt_tokens: 1_000,
            completion_tokens: 0,
        };
        assert_eq!(pricing.speech.cost(characters), "0.015".parse().unwrap());
        // Output is free: a stray completion count costs nothing.
        let with_output = TokenUsage {
            prompt_tokens: 90,
            completion_tokens: 1_000,
        };
        assert_eq!(
            pricing.transcription.cost(with_output),
            "0.009".parse().unwrap()
        );
    }

    #[test]
    fn a_per_unit_price_is_converted_exactly_or_refused() {
        let smallest = ModelPrice::per_unit(Usd::from_units(1)).unwrap();
        assert_eq!(smallest.input_per_million, "0.01".parse().unwrap());
        assert_eq!(smallest.output_per_million, Usd::ZERO);
        assert_eq!(
            ModelPrice::per_unit("92233.72036854".parse().unwrap())
                .unwrap()
                .input_per_million,
            "92233720368.54".parse().unwrap()
        );
        assert_eq!(
            ModelPrice::per_unit("92233.72036855".parse().unwrap()),
            None
        );
    }

    #[test]
    fn a_cost_adds_input_and_output_at_their_prices() {
        let price = Pricing::standard().default;
        let usage = TokenUsage {
            prompt_tokens: 1_000,
            completion_tokens: 500,
        };
        // 1000 × 0.5/M + 500 × 2/M = 0.0005 + 0.001
        assert_eq!(price.cost(usage), "0.0015".parse().unwrap());
        assert_eq!(TokenEstimate::tokens_in_chars(9), 3);
        assert_eq!(TokenEstimate::tokens_in_chars(0), 0);
    }

    #[test]
    fn entry_types_and_statuses_read_back() {
        for t in LedgerEntryType::ALL {
            assert_eq!(LedgerEntryType::parse(t.as_str()), Some(t));
        }
        assert_eq!(LedgerStatus::parse("voided"), Some(LedgerStatus::Voided));
        assert_eq!(LedgerEntryType::parse("gift"), None);
    }
}
