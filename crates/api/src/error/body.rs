//! Error bodies, as they appear in the OpenAPI document.

use serde::Serialize;
use utoipa::ToSchema;

use super::FieldError;

/// Every error except request validation: `{"detail": "<message>"}`.
#[derive(Debug, Serialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ErrorResponse {
    /// What went wrong, for people.
    pub detail: String,
}

/// A refusal by one of the operator's limits: `{"detail": "<message>", "code": "<stable code>"}`
/// (`stake_budget_exhausted`, `bid_price_above_limit`, `mor_below_low_water_mark`,
/// `too_many_sessions`, `stake_budget_unavailable`).
#[derive(Debug, Serialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CodedErrorResponse {
    /// What went wrong, for people: it names the limit.
    pub detail: String,
    /// A stable machine-readable code (absent on the same status's other causes).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub code: Option<String>,
}

/// Request validation failures (422), in FastAPI's shape.
#[derive(Debug, Serialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[allow(clippy::upper_case_acronyms)]
pub struct HTTPValidationError {
    pub detail: Vec<ValidationError>,
}

/// One invalid input: where (`loc`, e.g. `["body","password"]`), what (`msg`) and a stable
/// machine-readable `type`.
#[derive(Debug, Serialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ValidationError {
    pub loc: Vec<LocItem>,
    pub msg: String,
    #[serde(rename = "type")]
    pub kind: String,
}

/// A step of a location: a field name or an array index.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, ToSchema)]
#[serde(untagged)]
pub enum LocItem {
    Name(String),
    Index(i64),
}

impl From<&str> for LocItem {
    fn from(s: &str) -> Self {
        LocItem::Name(s.to_owned())
    }
}

impl From<&[FieldError]> for HTTPValidationError {
    fn from(errors: &[FieldError]) -> Self {
        Self {
            detail: errors
                .iter()
                .map(|e| ValidationError {
                    loc: e.loc.clone(),
                    msg: e.msg.clone(),
                    kind: e.kind.clone(),
                })
                .collect(),
        }
    }
}
