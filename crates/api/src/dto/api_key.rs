use chrono::{DateTime, Utc};
use morpheus_domain::{ApiKey, ApiKeySecret};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(example = json!({"name": "my laptop"}))]
pub struct APIKeyCreate {
    #[serde(default)]
    #[schema(max_length = 255, pattern = r"^[^\u0000]*$")]
    pub name: Option<String>,
}

/// The new key. `key` is shown here and never again.
#[derive(Debug, Serialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct APIKeyResponse {
    pub key: String,
    pub key_prefix: String,
    #[schema(required = true)]
    pub name: Option<String>,
}

impl APIKeyResponse {
    pub fn new(key: &ApiKey, secret: &ApiKeySecret) -> Self {
        Self {
            key: secret.expose().to_owned(),
            key_prefix: key.prefix.as_str().to_owned(),
            name: key.name.clone(),
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
}

impl From<ApiKey> for APIKeyDB {
    fn from(k: ApiKey) -> Self {
        Self {
            id: k.id.0,
            key_prefix: k.prefix.as_str().to_owned(),
            name: k.name,
            created_at: k.created_at,
            is_active: k.is_active,
            last_used_at: k.last_used_at,
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
