use std::sync::Arc;

use chrono::Utc;

use crate::model::*;
use crate::ports::*;

/// How long a user's settings are taken from memory: every pooled chat request reads them,
/// and must not cost a database round trip. A change made on this replica applies at once; one
/// made on another replica is seen within this.
const RECENT_TTL: std::time::Duration = std::time::Duration::from_secs(5);

/// Most users whose settings are kept in memory.
const RECENT_CAPACITY: usize = 10_000;

/// Per-user settings for opening marketplace sessions automatically.
#[derive(Clone)]
pub struct AutomationService {
    settings: Arc<dyn AutomationRepository>,
    recent: Arc<quick_cache::sync::Cache<UserId, (AutomationSettings, std::time::Instant)>>,
}

impl AutomationService {
    pub fn new(settings: Arc<dyn AutomationRepository>) -> Self {
        Self {
            settings,
            recent: Arc::new(quick_cache::sync::Cache::new(RECENT_CAPACITY)),
        }
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
        if let Some((settings, read_at)) = self.recent.get(&user)
            && read_at.elapsed() < RECENT_TTL
        {
            return Ok(settings);
        }
        let settings = self
            .settings
            .get_or_create_automation(Self::defaults(user))
            .await?;
        self.recent
            .insert(user, (settings.clone(), std::time::Instant::now()));
        Ok(settings)
    }

    pub async fn update(
        &self,
        user: UserId,
        update: AutomationUpdate,
    ) -> anyhow::Result<AutomationSettings> {
        let settings = self
            .settings
            .update_automation(Self::defaults(user), update, Utc::now())
            .await?;
        self.recent
            .insert(user, (settings.clone(), std::time::Instant::now()));
        Ok(settings)
    }
}
