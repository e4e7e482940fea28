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
    /// The MOR (in wei) staked in the sessions the chain reported open during this pass.
    pub stake_locked_wei: u128,
}

impl JanitorReport {
    /// Whether the pass changed anything or met a failure (worth a log line).
    pub fn eventful(&self) -> bool {
        self.closed + self.close_failures + self.reconciled > 0 || self.reconcile_interrupted
    }
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
                        report.stake_locked_wei += upstream.stake;
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::{FakeMarket, SessionWorld};

    async fn world_with_sessions(n: usize) -> (SessionWorld, SessionJanitor, Vec<SessionRecord>) {
        let w = SessionWorld::new(true).await;
        let mut records = Vec::new();
        for _ in 0..n {
            // A new key each time: one active session per key and model.
            let owner = crate::services::SessionOwner {
                key: ApiKeyId::random(),
                user: w.owner.user,
            };
            let terms = SessionTerms {
                duration: SessionDuration::DEFAULT,
                direct_payment: false,
                failover: false,
            };
            records.push(
                w.sessions
                    .open_for_model(owner, &w.resolved().name, terms)
                    .await
                    .unwrap()
                    .session,
            );
        }
        let janitor = SessionJanitor::new(w.store.clone(), w.market.clone());
        (w, janitor, records)
    }

    #[tokio::test]
    async fn ended_sessions_are_closed_and_a_failed_close_is_tried_again() {
        let (w, janitor, records) = world_with_sessions(2).await;
        let later = Utc::now() + chrono::Duration::days(2);
        FakeMarket::fail_next(
            &w.market.close_failures,
            MarketplaceError::Unreachable("refused".to_owned()),
        );
        let report = janitor.run_once(later).await.unwrap();
        assert_eq!((report.closed, report.close_failures), (1, 1));
        let report = janitor.run_once(later).await.unwrap();
        assert_eq!((report.closed, report.close_failures), (1, 0));
        for r in &records {
            assert_eq!(w.store.record(&r.id).unwrap().state, SessionState::Closed);
        }
        // Nothing is closed before its end: that would lock the stake.
        let (w, janitor, records) = world_with_sessions(1).await;
        assert_eq!(janitor.run_once(Utc::now()).await.unwrap().closed, 0);
        assert_eq!(
            w.store.record(&records[0].id).unwrap().state,
            SessionState::Active
        );
    }

    #[tokio::test]
    async fn records_follow_the_chain_and_a_failing_node_changes_nothing() {
        let (w, janitor, records) = world_with_sessions(3).await;
        w.market.close_on_chain(&records[0].id);
        w.market.chain.lock().unwrap().remove(&records[1].id);
        let now = Utc::now();
        let report = janitor.run_once(now).await.unwrap();
        assert_eq!(report.reconciled, 2);
        assert_eq!(
            w.store.record(&records[0].id).unwrap().state,
            SessionState::Closed
        );
        assert_eq!(
            w.store.record(&records[1].id).unwrap().state,
            SessionState::Closed
        );
        assert_eq!(
            w.store.record(&records[2].id).unwrap().state,
            SessionState::Active
        );

        let (w, janitor, records) = world_with_sessions(2).await;
        w.market.close_on_chain(&records[0].id);
        w.market.close_on_chain(&records[1].id);
        FakeMarket::fail_next(
            &w.market.read_failures,
            MarketplaceError::Timeout(TimeoutPhase::Total),
        );
        let report = janitor.run_once(Utc::now()).await.unwrap();
        assert!(report.reconcile_interrupted);
        assert_eq!(report.reconciled, 0);
        assert!(
            records
                .iter()
                .all(|r| w.store.record(&r.id).unwrap().state == SessionState::Active)
        );
    }
}
