use chrono::{DateTime, Utc};
use morpheus_domain::services::BudgetUse;
use morpheus_domain::{
    AllowedModels, ApiKey, ApiKeyChange, ApiKeySecret, Change, KeyBudget, KeyPolicy,
    check_expires_at, parse_budgets, parse_key_name, parse_rpm, parse_tpm,
};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::error::Fields;

/// A new key's name and policy. Every field is optional; `{}` makes a key without a name and
/// without limits.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(example = json!({"name": "my laptop"}))]
pub struct APIKeyCreate {
    #[serde(default)]
    #[schema(max_length = 255, pattern = r"^[^\u0000]*$")]
    pub name: Option<String>,
    /// From this instant on the key is refused, like a revoked one; must be in the future.
    #[serde(default)]
    pub expires_at: Option<DateTime<Utc>>,
    /// The only models the key may use, by name or id (any case); null: every model.
    #[serde(default)]
    #[schema(min_items = 1, max_items = 64)]
    pub allowed_models: Option<Vec<ModelRef>>,
    /// Requests per minute; null: no limit.
    #[serde(default)]
    #[schema(minimum = 1, maximum = 1_000_000)]
    pub rpm: Option<i64>,
    /// Tokens per minute; null: no limit.
    #[serde(default)]
    #[schema(minimum = 1, maximum = 10_000_000_000_i64)]
    pub tpm: Option<i64>,
    /// Spending caps in USD, each over its own window; null or empty: none.
    #[serde(default)]
    #[schema(max_items = 4)]
    pub budgets: Option<Vec<KeyBudgetCreate>>,
    /// Continue a stream that breaks mid-answer on another upstream (when the operator allows
    /// it, `MORPHEUS_STREAM_CONTINUATION`); null or absent: no.
    #[serde(default)]
    pub stream_continuation: Option<bool>,
}

/// A model's name or id, as an allow-list entry.
#[derive(Debug, Deserialize)]
#[serde(transparent)]
pub struct ModelRef(pub String);

impl utoipa::PartialSchema for ModelRef {
    fn schema() -> utoipa::openapi::RefOr<utoipa::openapi::schema::Schema> {
        utoipa::openapi::ObjectBuilder::new()
            .schema_type(utoipa::openapi::schema::Type::String)
            .min_length(Some(1))
            .max_length(Some(morpheus_domain::MAX_MODEL_REF_CHARS))
            .pattern(Some(r"^[^\u0000]+$"))
            .description(Some("A model's name or id, any case"))
            .into()
    }
}

impl ToSchema for ModelRef {}

/// A spending cap as a client writes it.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(example = json!({"window": "30d", "limit_usd": "30.00"}))]
pub struct KeyBudgetCreate {
    /// A whole number and a unit, `s`, `m`, `h` or `d` (`15m`, `1h`, `30d`), from 60 s to
    /// 366 days.
    #[schema(pattern = r"^[0-9]{1,9}[smhd]$")]
    pub window: String,
    /// USD, a decimal string with at most 8 decimals, above 0.
    #[schema(pattern = r"^[0-9]{0,10}(\.[0-9]{0,8})?$")]
    pub limit_usd: String,
}

/// A spending cap as the API shows it.
#[derive(Debug, Serialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct KeyBudgetRead {
    /// The window, in its largest whole unit (`1h`, `30d`, `90s`).
    pub window: String,
    pub window_seconds: i64,
    /// USD, 8 decimals.
    pub limit_usd: String,
    /// What the current window has counted (reserved by requests in flight included), USD;
    /// shown by the key listing, null elsewhere or when the counters cannot be read.
    #[schema(required = true, example = "0.01250000")]
    pub used_usd: Option<String>,
    /// When the current window ends and its count starts again; with `used_usd`.
    #[schema(required = true)]
    pub resets_at: Option<DateTime<Utc>>,
}

impl From<&KeyBudget> for KeyBudgetRead {
    fn from(b: &KeyBudget) -> Self {
        Self {
            window: b.window_text(),
            window_seconds: i64::try_from(b.window.as_secs()).unwrap_or(i64::MAX),
            limit_usd: b.limit.to_string(),
            used_usd: None,
            resets_at: None,
        }
    }
}

impl From<&BudgetUse> for KeyBudgetRead {
    fn from(u: &BudgetUse) -> Self {
        Self {
            used_usd: Some(u.used.to_string()),
            resets_at: Some(u.resets_at),
            ..Self::from(&u.budget)
        }
    }
}

/// A partial update of a key: a field given replaces its value, `null` clears it (no limit;
/// for `name`, no name), a field left out stays as it is.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(example = json!({"allowed_models": ["llama-3.3-70b"], "rpm": null}))]
pub struct APIKeyUpdate {
    #[serde(default, deserialize_with = "present")]
    #[schema(value_type = Option<String>, max_length = 255, pattern = r"^[^\u0000]*$")]
    pub name: Option<Option<String>>,
    /// Must be in the future.
    #[serde(default, deserialize_with = "present")]
    #[schema(value_type = Option<DateTime<Utc>>)]
    pub expires_at: Option<Option<DateTime<Utc>>>,
    #[serde(default, deserialize_with = "present")]
    #[schema(value_type = Option<Vec<ModelRef>>, min_items = 1, max_items = 64)]
    pub allowed_models: Option<Option<Vec<ModelRef>>>,
    #[serde(default, deserialize_with = "present")]
    #[schema(value_type = Option<i64>, minimum = 1, maximum = 1_000_000)]
    pub rpm: Option<Option<i64>>,
    #[serde(default, deserialize_with = "present")]
    #[schema(value_type = Option<i64>, minimum = 1, maximum = 10_000_000_000_i64)]
    pub tpm: Option<Option<i64>>,
    #[serde(default, deserialize_with = "present")]
    #[schema(value_type = Option<Vec<KeyBudgetCreate>>, max_items = 4)]
    pub budgets: Option<Option<Vec<KeyBudgetCreate>>>,
    /// `null` turns it off.
    #[serde(default, deserialize_with = "present")]
    #[schema(value_type = Option<bool>)]
    pub stream_continuation: Option<Option<bool>>,
}

/// A member that is present, `null` included, is `Some`; an absent one stays `None` (its
/// `#[serde(default)]`).
fn present<'de, D, T>(deserializer: D) -> Result<Option<Option<T>>, D::Error>
where
    D: serde::Deserializer<'de>,
    T: Deserialize<'de>,
{
    Option::<T>::deserialize(deserializer).map(Some)
}

/// The new key. `key` is shown here and never again.
#[derive(Debug, Serialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct APIKeyResponse {
    pub key: String,
    pub key_prefix: String,
    #[schema(required = true)]
    pub name: Option<String>,
    pub id: i64,
    /// When the key stops working; null: never.
    #[schema(required = true)]
    pub expires_at: Option<DateTime<Utc>>,
    /// The only models the key may use; null: every model.
    #[schema(required = true)]
    pub allowed_models: Option<Vec<String>>,
    /// Requests per minute; null: no limit.
    #[schema(required = true)]
    pub rpm: Option<i64>,
    /// Tokens per minute; null: no limit.
    #[schema(required = true)]
    pub tpm: Option<i64>,
    /// Spending caps; null: none.
    #[schema(required = true)]
    pub budgets: Option<Vec<KeyBudgetRead>>,
    /// A broken stream is continued on another upstream (when the operator allows it).
    pub stream_continuation: bool,
}

impl APIKeyResponse {
    pub fn new(key: &ApiKey, secret: &ApiKeySecret) -> Self {
        let p = PolicyRead::from(&key.policy);
        Self {
            key: secret.expose().to_owned(),
            key_prefix: key.prefix.as_str().to_owned(),
            name: key.name.clone(),
            id: key.id.0,
            expires_at: p.expires_at,
            allowed_models: p.allowed_models,
            rpm: p.rpm,
            tpm: p.tpm,
            budgets: p.budgets,
            stream_continuation: key.policy.stream_continuation,
        }
    }
}

/// The policy fields of a key as the API shows them.
struct PolicyRead {
    expires_at: Option<DateTime<Utc>>,
    allowed_models: Option<Vec<String>>,
    rpm: Option<i64>,
    tpm: Option<i64>,
    budgets: Option<Vec<KeyBudgetRead>>,
}

impl From<&KeyPolicy> for PolicyRead {
    fn from(p: &KeyPolicy) -> Self {
        Self {
            expires_at: p.expires_at,
            allowed_models: p.allowed_models.as_ref().map(|m| m.as_slice().to_vec()),
            rpm: p.rpm.map(|n| i64::from(n.get())),
            tpm: p.tpm.map(|n| i64::try_from(n.get()).unwrap_or(i64::MAX)),
            budgets: (!p.budgets.is_empty())
                .then(|| p.budgets.iter().map(KeyBudgetRead::from).collect()),
        }
    }
}

/// A key as listed: never the secret, only its public prefix.
#[derive(Debug, Serialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[allow(clippy::upper_case_acronyms)]
pub struct APIKeyDB {
    pub id: i64,
    pub key_prefix: String,
    #[schema(required = true)]
    pub name: Option<String>,
    pub created_at: DateTime<Utc>,
    pub is_active: bool,
    #[schema(required = true)]
    pub last_used_at: Option<DateTime<Utc>>,
    /// When the key stops working; null: never.
    #[schema(required = true)]
    pub expires_at: Option<DateTime<Utc>>,
    /// The only models the key may use; null: every model.
    #[schema(required = true)]
    pub allowed_models: Option<Vec<String>>,
    /// Requests per minute; null: no limit.
    #[schema(required = true)]
    pub rpm: Option<i64>,
    /// Tokens per minute; null: no limit.
    #[schema(required = true)]
    pub tpm: Option<i64>,
    /// Spending caps; null: none.
    #[schema(required = true)]
    pub budgets: Option<Vec<KeyBudgetRead>>,
    /// The user's default key (`PUT /auth/keys/{key_id}/default`).
    pub is_default: bool,
    /// A broken stream is continued on another upstream (when the operator allows it).
    pub stream_continuation: bool,
}

impl APIKeyDB {
    /// The key with each budget window's use.
    pub fn with_budget_use(mut self, uses: &[BudgetUse]) -> Self {
        if !uses.is_empty() {
            self.budgets = Some(uses.iter().map(KeyBudgetRead::from).collect());
        }
        self
    }
}

impl From<ApiKey> for APIKeyDB {
    fn from(k: ApiKey) -> Self {
        let p = PolicyRead::from(&k.policy);
        Self {
            id: k.id.0,
            key_prefix: k.prefix.as_str().to_owned(),
            name: k.name,
            created_at: k.created_at,
            is_active: k.is_active,
            last_used_at: k.last_used_at,
            expires_at: p.expires_at,
            allowed_models: p.allowed_models,
            rpm: p.rpm,
            tpm: p.tpm,
            budgets: p.budgets,
            is_default: k.is_default,
            stream_continuation: k.policy.stream_continuation,
        }
    }
}

/// Paging of the key listing (other query parameters are ignored, as before it had any).
#[derive(Debug, serde::Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct KeyPageQuery {
    /// How many keys to skip (newest first).
    #[param(minimum = 0, maximum = 1000000, default = 0)]
    pub skip: Option<i64>,
    /// How many to return (at most 100).
    #[param(minimum = 1, maximum = 100, default = 100)]
    pub limit: Option<i64>,
}

/// The budgets of a request, checked (`budgets` errors point at the member at fault).
fn budgets(raw: &[KeyBudgetCreate], fields: &mut Fields) -> Option<Vec<KeyBudget>> {
    let pairs: Vec<(String, String)> = raw
        .iter()
        .map(|b| (b.window.clone(), b.limit_usd.clone()))
        .collect();
    fields.check_list("budgets", parse_budgets(&pairs))
}

fn allowed_models(raw: Vec<ModelRef>, fields: &mut Fields) -> Option<AllowedModels> {
    let entries = raw.into_iter().map(|m| m.0).collect();
    fields.check_list("allowed_models", AllowedModels::parse(entries))
}

impl APIKeyCreate {
    /// The key's name and policy, or the fields at fault.
    pub fn parse(self, now: DateTime<Utc>) -> Result<(Option<String>, KeyPolicy), Fields> {
        let mut fields = Fields::default();
        let name = fields.check("name", parse_key_name(self.name));
        let expires_at = self
            .expires_at
            .and_then(|at| fields.check("expires_at", check_expires_at(at, now)));
        let allowed_models = self
            .allowed_models
            .and_then(|raw| allowed_models(raw, &mut fields));
        let rpm = self.rpm.and_then(|n| fields.check("rpm", parse_rpm(n)));
        let tpm = self.tpm.and_then(|n| fields.check("tpm", parse_tpm(n)));
        let budgets = budgets(self.budgets.as_deref().unwrap_or_default(), &mut fields);
        match (name, budgets) {
            (Some(name), Some(budgets)) if fields.is_empty() => Ok((
                name,
                KeyPolicy {
                    expires_at,
                    allowed_models,
                    rpm,
                    tpm,
                    budgets,
                    stream_continuation: self.stream_continuation.unwrap_or(false),
                },
            )),
            _ => Err(fields),
        }
    }
}

impl APIKeyUpdate {
    /// The change, or the fields at fault.
    pub fn parse(self, now: DateTime<Utc>) -> Result<ApiKeyChange, Fields> {
        let mut fields = Fields::default();
        let mut change = ApiKeyChange::default();
        if let Some(name) = self.name
            && let Some(name) = fields.check("name", parse_key_name(name))
        {
            change.name = Change::Set(name);
        }
        match self.expires_at {
            None => {}
            Some(None) => change.expires_at = Change::Set(None),
            Some(Some(at)) => {
                if let Some(at) = fields.check("expires_at", check_expires_at(at, now)) {
                    change.expires_at = Change::Set(Some(at));
                }
            }
        }
        match self.allowed_models {
            None => {}
            Some(None) => change.allowed_models = Change::Set(None),
            Some(Some(raw)) => {
                if let Some(list) = allowed_models(raw, &mut fields) {
                    change.allowed_models = Change::Set(Some(list));
                }
            }
        }
        match self.rpm {
            None => {}
            Some(None) => change.rpm = Change::Set(None),
            Some(Some(n)) => {
                if let Some(n) = fields.check("rpm", parse_rpm(n)) {
                    change.rpm = Change::Set(Some(n));
                }
            }
        }
        match self.tpm {
            None => {}
            Some(None) => change.tpm = Change::Set(None),
            Some(Some(n)) => {
                if let Some(n) = fields.check("tpm", parse_tpm(n)) {
                    change.tpm = Change::Set(Some(n));
                }
            }
        }
        if let Some(raw) = self.budgets
            && let Some(list) = budgets(raw.as_deref().unwrap_or_default(), &mut fields)
        {
            change.budgets = Change::Set(list);
        }
        if let Some(on) = self.stream_continuation {
            change.stream_continuation = Change::Set(on.unwrap_or(false));
        }
        if fields.is_empty() {
            Ok(change)
        } else {
            Err(fields)
        }
    }
}
