//! Credits and billing (`/api/v1/billing/*`), in the 2026 Morpheus gateway's shapes. Money is a
//! decimal string of USD with 8 places; spending is negative in the ledger.

use chrono::{DateTime, Utc};
use morpheus_domain::{Balance, LedgerEntry, MonthSpending, Usd};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

/// A user's credit.
#[derive(Debug, Serialize, ToSchema)]
pub struct BalanceResponse {
    pub paid: PaidBalance,
    /// Credit from staking MOR (not offered by this gateway: always zero).
    pub staking: StakingBalance,
    /// What new requests may still set aside.
    #[schema(example = "0.99800000")]
    pub total_available: String,
    pub is_staker: bool,
    pub allow_overage: bool,
    #[schema(example = "USD")]
    pub currency: String,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct PaidBalance {
    /// The sum of the posted entries.
    #[schema(example = "1.00000000")]
    pub posted_balance: String,
    /// What requests in flight set aside (negative).
    #[schema(example = "-0.00200000")]
    pub pending_holds: String,
    #[schema(example = "0.99800000")]
    pub available: String,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct StakingBalance {
    #[schema(example = "0.00000000")]
    pub daily_amount: String,
    pub refresh_date: Option<String>,
    #[schema(example = "0.00000000")]
    pub available: String,
}

impl From<Balance> for BalanceResponse {
    fn from(balance: Balance) -> Self {
        let zero = Usd::ZERO.to_string();
        Self {
            paid: PaidBalance {
                posted_balance: balance.posted.to_string(),
                pending_holds: (-balance.held).to_string(),
                available: balance.available().to_string(),
            },
            staking: StakingBalance {
                daily_amount: zero.clone(),
                refresh_date: None,
                available: zero,
            },
            total_available: balance.available().to_string(),
            is_staker: false,
            allow_overage: true,
            currency: "USD".to_owned(),
        }
    }
}

/// One ledger entry.
#[derive(Debug, Serialize, ToSchema)]
pub struct LedgerEntryResponse {
    #[schema(example = "5b0f3f4e-8f3a-4d6e-9f61-2f1f2b6f1c11")]
    pub id: String,
    /// `purchase`, `adjustment`, `usage_hold`, `usage_charge` or `refund`.
    #[schema(example = "usage_charge")]
    pub entry_type: String,
    /// `pending` (a hold in flight), `posted` or `voided`.
    #[schema(example = "posted")]
    pub status: String,
    /// Credit positive, spending negative.
    #[schema(example = "-0.00041000")]
    pub amount_paid: String,
    #[schema(example = "0.00000000")]
    pub amount_staking: String,
    #[schema(example = "USD")]
    pub currency: String,
    pub idempotency_key: Option<String>,
    pub api_key_id: Option<i64>,
    pub model_name: Option<String>,
    pub request_id: Option<String>,
    pub tokens_input: Option<i64>,
    pub tokens_output: Option<i64>,
    pub tokens_total: Option<i64>,
    /// USD per million input tokens the charge was made at.
    pub input_price_per_million: Option<String>,
    pub output_price_per_million: Option<String>,
    /// The charge is on the text delivered, not on the provider's count (a stream cut before
    /// its final usage came).
    pub estimated: bool,
    pub description: Option<String>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

impl From<LedgerEntry> for LedgerEntryResponse {
    fn from(e: LedgerEntry) -> Self {
        let tokens = e
            .usage
            .map(|u| (i64::from(u.prompt_tokens), i64::from(u.completion_tokens)));
        Self {
            id: e.id.to_string(),
            entry_type: e.entry_type.as_str().to_owned(),
            status: e.status.as_str().to_owned(),
            amount_paid: e.amount.to_string(),
            amount_staking: Usd::ZERO.to_string(),
            currency: "USD".to_owned(),
            idempotency_key: e.idempotency_key,
            api_key_id: e.api_key_id.map(|k| k.0),
            model_name: e.model,
            request_id: e.request_id,
            tokens_input: tokens.map(|t| t.0),
            tokens_output: tokens.map(|t| t.1),
            tokens_total: tokens.map(|t| t.0 + t.1),
            input_price_per_million: e.prices.map(|p| p.input_per_million.to_string()),
            output_price_per_million: e.prices.map(|p| p.output_per_million.to_string()),
            estimated: e.estimated,
            description: e.description,
            created_at: e.created_at,
            updated_at: e.updated_at,
        }
    }
}

/// A page of ledger entries, newest first.
#[derive(Debug, Serialize, ToSchema)]
pub struct LedgerPageResponse {
    pub items: Vec<LedgerEntryResponse>,
    /// Entries matching the filters in all.
    pub total: u64,
    pub limit: u32,
    pub offset: u64,
    pub has_more: bool,
}

/// Paging and filters of `GET /billing/transactions`.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct TransactionsQuery {
    /// How many entries (at most 100).
    #[param(minimum = 1, maximum = 100, default = 50)]
    pub limit: Option<i64>,
    #[param(minimum = 0, maximum = 1000000, default = 0)]
    pub offset: Option<i64>,
    /// Only entries of this type.
    #[param(inline)]
    pub entry_type: Option<EntryTypeParam>,
    /// Only entries made at or after this time (RFC 3339).
    pub from: Option<DateTime<Utc>>,
    /// Only entries made before this time (RFC 3339).
    pub to: Option<DateTime<Utc>>,
}

/// Paging and filters of `GET /billing/usage`.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct UsageQuery {
    #[param(minimum = 1, maximum = 100, default = 50)]
    pub limit: Option<i64>,
    #[param(minimum = 0, maximum = 1000000, default = 0)]
    pub offset: Option<i64>,
    /// Only charges for this model (its name).
    pub model: Option<String>,
    pub from: Option<DateTime<Utc>>,
    pub to: Option<DateTime<Utc>>,
}

/// `GET /billing/spending`'s year and mode.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct SpendingQuery {
    /// The year (this year by default).
    #[param(minimum = 2000, maximum = 9999)]
    pub year: Option<i32>,
    /// `gross` (charges) or `net` (charges less refunds).
    #[param(inline)]
    pub mode: Option<SpendingMode>,
}

/// A ledger entry's type, as a query parameter.
#[derive(Debug, Clone, Copy, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum EntryTypeParam {
    Purchase,
    Adjustment,
    UsageHold,
    UsageCharge,
    Refund,
}

impl From<EntryTypeParam> for morpheus_domain::LedgerEntryType {
    fn from(t: EntryTypeParam) -> Self {
        match t {
            EntryTypeParam::Purchase => Self::Purchase,
            EntryTypeParam::Adjustment => Self::Adjustment,
            EntryTypeParam::UsageHold => Self::UsageHold,
            EntryTypeParam::UsageCharge => Self::UsageCharge,
            EntryTypeParam::Refund => Self::Refund,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum SpendingMode {
    Gross,
    Net,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct SpendingResponse {
    pub year: i32,
    #[schema(example = "gross")]
    pub mode: String,
    /// Months with spending, in order.
    pub months: Vec<MonthSpendingResponse>,
    #[schema(example = "0.01230000")]
    pub total: String,
    #[schema(example = "USD")]
    pub currency: String,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct MonthSpendingResponse {
    pub year: i32,
    #[schema(minimum = 1, maximum = 12)]
    pub month: u32,
    #[schema(example = "0.01230000")]
    pub amount: String,
    pub transaction_count: u64,
}

impl From<MonthSpending> for MonthSpendingResponse {
    fn from(m: MonthSpending) -> Self {
        Self {
            year: m.year,
            month: m.month,
            amount: m.amount.to_string(),
            transaction_count: m.transaction_count,
        }
    }
}

/// The operator's grant (positive) or correction (negative) of a user's credit.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreditAdjustmentRequest {
    /// The user, by id…
    pub user_id: Option<i64>,
    /// …or by email address.
    pub email: Option<String>,
    /// USD, a decimal with at most 8 places; negative takes credit back.
    #[schema(example = "25.00")]
    pub amount_usd: String,
    pub description: Option<String>,
    /// Sending the same key again grants once (the first entry is returned).
    pub idempotency_key: Option<String>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct CreditAdjustmentResponse {
    pub entry: LedgerEntryResponse,
    /// The entry existed already (same idempotency key): nothing was granted now.
    pub duplicate: bool,
    pub balance: BalanceResponse,
}
