use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

/// A partial update: a field left out (or null) keeps its current value.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(example = json!({"is_enabled": true, "session_duration": 3600}))]
pub struct AutomationSettingsBase {
    #[serde(default)]
    pub is_enabled: Option<bool>,
    /// Seconds, 60 to 86400.
    #[serde(default)]
    #[schema(minimum = 300, maximum = 86400)]
    pub session_duration: Option<i64>,
}

#[derive(Debug, Serialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct AutomationSettings {
    pub user_id: i64,
    pub is_enabled: bool,
    pub session_duration: i64,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

impl From<morpheus_domain::AutomationSettings> for AutomationSettings {
    fn from(s: morpheus_domain::AutomationSettings) -> Self {
        Self {
            user_id: s.user_id.0,
            is_enabled: s.is_enabled,
            session_duration: i64::from(s.session_duration.seconds()),
            created_at: s.created_at,
            updated_at: s.updated_at,
        }
    }
}
