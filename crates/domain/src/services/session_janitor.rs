//! Background care of sessions: close them once the chain's end has passed, and keep the
//! records in line with the chain.

use std::sync::Arc;

use chrono::{DateTime, Utc};

use crate::model::*;
use crate::ports::*;

/// How many records one pass looks at, so a pass stays short.
const PAGE: u32 = 100;

/// What one pass did (for logs and tests).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct JanitorReport {
    pub closed: u32,
    pub close_failures: u32,
    pub reconciled: u32,
    /// The pass stopped reconciling because the proxy-router failed; nothing was marked.
    pub reconcile_interrupted: bool,
}

#[derive(Clone)]
pub struct SessionJanitor {
    sessions: Arc<dyn SessionRepository>,
    market: Arc<dyn Marketplace>,
}

impl SessionJanitor {
    pub fn new(sessions: Arc<dyn SessionRepository>, market: Arc<dyn Marketplace>) -> Self {
        Self { sessions, market }
    }

    pub async fn run_once(&self, now: DateTime<Utc>) -> anyhow::Result<JanitorReport> {
        let mut report = JanitorReport::default();
        self.close_ended(now, &mut report).await?;
        self.reconcile(now, &mut report).await?;
        Ok(report)
    }

    /// Closes sessions at or after their end: that returns the whole stake, where an early
    /// close would lock it for about a day.
    async fn close_ended(
        &self,
        now: DateTime<Utc>,
        report: &mut JanitorReport,
    ) -> anyhow::Result<()> {
        for session in self.sessions.sessions_due_for_close(now, PAGE).await? {
            match self.market.close_session(&session.id).await {
                Ok(_) | Err(MarketplaceError::SessionGone(_)) => {
                    self.sessions.mark_session_closed(&session.id, now).await?;
                    report.closed += 1;
                }
                Err(error) => {
                    // Left as it is: the next pass tries again.
                    tracing::warn!(session = %session.id, %error, "closing an ended session failed");
                    report.close_failures += 1;
                }
            }
        }
        Ok(())
    }

    /// Asks the chain about every open record. Only a definite answer changes a record: the
    /// original marked every session inactive whenever the proxy-router had a hiccup.
    async fn reconcile(
        &self,
        now: DateTime<Utc>,
        report: &mut JanitorReport,
    ) -> anyhow::Result<()> {
        let mut after: Option<SessionId> = None;
        loop {
            let page = self
                .sessions
                .list_open_sessions(after.as_ref(), PAGE)
                .await?;
            let Some(last) = page.last() else { break };
            after = Some(last.id.clone());
            for session in &page {
                match self.market.session(&session.id).await {
                    Ok(upstream) if upstream.is_closed() => {
                        self.sessions.mark_session_closed(&session.id, now).await?;
                        report.reconciled += 1;
                    }
                    Ok(upstream) => {
                        let end = upstream.ends_at_utc();
                        if upstream.ends_at > 0 && end != session.ends_at {
                            self.sessions.update_session_end(&session.id, end).await?;
                            report.reconciled += 1;
                        }
                    }
                    Err(MarketplaceError::SessionGone(SessionGone::NotFound)) => {
                        self.sessions.mark_session_closed(&session.id, now).await?;
                        report.reconciled += 1;
                    }
                    Err(MarketplaceError::SessionGone(SessionGone::Expired)) => {}
                    Err(error) => {
                        tracing::warn!(%error, "reconciling sessions stopped: the proxy-router failed");
                        report.reconcile_interrupted = true;
                        return Ok(());
                    }
                }
            }
            if page.len() < PAGE as usize {
                break;
            }
        }
        Ok(())
    }
}
