use std::sync::Arc;

use chrono::Utc;

use crate::model::*;
use crate::ports::*;

/// Per-user settings for opening marketplace sessions automatically.
#[derive(Clone)]
pub struct AutomationService {
    settings: Arc<dyn AutomationRepository>,
}

impl AutomationService {
    pub fn new(settings: Arc<dyn AutomationRepository>) -> Self {
        Self { settings }
    }

    /// What a user who never saved settings gets: automation off, one-hour sessions (the
    /// original gateway's defaults).
    fn defaults(user: UserId) -> AutomationSettings {
        let now = Utc::now();
        AutomationSettings {
            user_id: user,
            is_enabled: false,
            session_duration: SessionDuration::DEFAULT,
            created_at: now,
            updated_at: now,
        }
    }

    pub async fn get(&self, user: UserId) -> anyhow::Result<AutomationSettings> {
        self.settings
            .get_or_create_automation(Self::defaults(user))
            .await
    }

    pub async fn update(
        &self,
        user: UserId,
        update: AutomationUpdate,
    ) -> anyhow::Result<AutomationSettings> {
        self.settings
            .update_automation(Self::defaults(user), update, Utc::now())
            .await
    }
}
