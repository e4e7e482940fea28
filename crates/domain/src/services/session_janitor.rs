//! Background care of sessions: close them once the chain's end has passed, keep the
//! records in line with the chain, and take care of orphans (sessions of the node's wallet the
//! database does not know: an open answered by an error or a timeout after its transaction was
//! mined, once the upstream client's own recovery gave up).

use std::sync::Arc;

use chrono::{DateTime, Utc};

use crate::model::*;
use crate::ports::*;
use crate::services::ModelCatalogue;

/// How many records one pass looks at, so a pass stays short.
const PAGE: u32 = 100;

/// An orphan this close to its end is closed rather than adopted: the pool would hardly use it
/// (it keeps the same margin before an end), and closing after the end returns the stake.
const ORPHAN_END_MARGIN: chrono::Duration = chrono::Duration::seconds(30);

/// The gateway's own key and user on an adopted orphan's record: no key opened it (its open
/// failed as far as the caller knew), so it belongs to the shared pool. Real ids are random
/// and never 0; deleted accounts' pseudonyms are negative.
const GATEWAY_KEY: ApiKeyId = ApiKeyId(0);
const GATEWAY_USER: UserId = UserId(0);

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
    /// Open sessions of the node's wallet that the database did not know.
    pub orphans_found: u32,
    /// Orphans recorded as active pooled sessions.
    pub orphans_adopted: u32,
    /// Orphans closed on chain (ended, or of a model the gateway does not list).
    pub orphans_closed: u32,
    /// Orphans left for a later pass (a failed close, or no model list loaded yet).
    pub orphans_left: u32,
    /// The wallet's sessions could not be listed.
    pub orphans_interrupted: bool,
}

impl JanitorReport {
    /// Whether the pass changed anything or met a failure (worth a log line).
    pub fn eventful(&self) -> bool {
        self.closed + self.close_failures + self.reconciled + self.orphans_found > 0
            || self.reconcile_interrupted
            || self.orphans_interrupted
    }
}

/// What the janitor needs to adopt orphans.
#[derive(Clone)]
struct Adoption {
    catalogue: Arc<ModelCatalogue>,
    grace: chrono::Duration,
}

#[derive(Clone)]
pub struct SessionJanitor {
    sessions: Arc<dyn SessionRepository>,
    market: Arc<dyn Marketplace>,
    adoption: Option<Adoption>,
}

impl SessionJanitor {
    pub fn new(sessions: Arc<dyn SessionRepository>, market: Arc<dyn Marketplace>) -> Self {
        Self {
            sessions,
            market,
            adoption: None,
        }
    }

    /// Also looks for orphans on every pass. `catalogue` says which models the pool serves;
    /// `grace` is how long after its chain opening a session may still be on its way into the
    /// database (an open's whole time limit and its recovery window, with room): a younger
    /// session is left alone, so an open in progress never races the janitor for its record.
    pub fn adopting_orphans(
        mut self,
        catalogue: Arc<ModelCatalogue>,
        grace: std::time::Duration,
    ) -> Self {
        self.adoption = Some(Adoption {
            catalogue,
            grace: chrono::Duration::from_std(grace).unwrap_or(chrono::Duration::MAX),
        });
        self
    }

    pub async fn run_once(&self, now: DateTime<Utc>) -> anyhow::Result<JanitorReport> {
        let mut report = JanitorReport::default();
        self.close_ended(now, &mut report).await?;
        self.reconcile(now, &mut report).await?;
        self.adopt_orphans(now, &mut report).await?;
        Ok(report)
    }

    /// Sessions of the node's wallet that are open on chain but unknown to the database: paid
    /// for, yet no record means no sweep would ever close them and no request would use them.
    /// One still running joins the shared pool; one at (or near) its end, or of a model the
    /// gateway does not list, is closed (after the end that returns the whole stake). A record
    /// in any state means the session is not an orphan, and closed sessions are never adopted.
    async fn adopt_orphans(
        &self,
        now: DateTime<Utc>,
        report: &mut JanitorReport,
    ) -> anyhow::Result<()> {
        let Some(adoption) = &self.adoption else {
            return Ok(());
        };
        let wallet = match self.market.wallet_sessions().await {
            Ok(sessions) => sessions,
            Err(error) => {
                tracing::warn!(%error, "looking for orphaned sessions stopped: the proxy-router failed");
                report.orphans_interrupted = true;
                return Ok(());
            }
        };
        let catalogue = adoption.catalogue.snapshot();
        for upstream in wallet {
            if upstream.is_closed() {
                continue;
            }
            let opened = DateTime::from_timestamp(upstream.opened_at as i64, 0)
                .unwrap_or(DateTime::<Utc>::MAX_UTC);
            if opened + adoption.grace > now {
                // Perhaps an open still on its way into the database.
                continue;
            }
            if self.sessions.find_session(&upstream.id).await?.is_some() {
                continue;
            }
            report.orphans_found += 1;
            let ends_at = upstream.ends_at_utc();
            let model = ModelId::parse(&upstream.model_agent_id)
                .ok()
                .filter(|m| catalogue.listed.iter().any(|listed| &listed.id == m));
            let ended = ends_at <= now + ORPHAN_END_MARGIN;
            match model {
                Some(model) if !ended => {
                    let record = SessionRecord {
                        id: upstream.id.clone(),
                        api_key_id: GATEWAY_KEY,
                        user_id: GATEWAY_USER,
                        model_id: model,
                        bid_id: BidId::parse(&upstream.bid_id).ok(),
                        origin: SessionOrigin::Automated,
                        state: SessionState::Active,
                        opened_at: opened,
                        ends_at,
                        closed_at: None,
                        pooled: true,
                    };
                    match self.sessions.insert_session(record).await {
                        Ok(()) => {
                            tracing::info!(session = %upstream.id, "adopted an orphaned session into the pool");
                            report.orphans_adopted += 1;
                        }
                        // Recorded meanwhile by someone else: not an orphan after all.
                        Err(InsertSessionError::Duplicate) => report.orphans_found -= 1,
                        Err(error) => return Err(error.into()),
                    }
                }
                // Without a model list, an unlisted model cannot be told from a list not
                // loaded yet: a session still running waits for a later pass.
                None if !ended && !catalogue.is_loaded() => report.orphans_left += 1,
                _ => match self.market.close_session(&upstream.id).await {
                    Ok(_) | Err(MarketplaceError::SessionGone(_)) => {
                        tracing::info!(session = %upstream.id, ended, "closed an orphaned session");
                        report.orphans_closed += 1;
                    }
                    Err(error) => {
                        tracing::warn!(session = %upstream.id, %error, "closing an orphaned session failed");
                        report.orphans_left += 1;
                    }
                },
            }
        }
        Ok(())
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
            let terms = SessionWorld::terms();
            records.push(
                w.sessions
                    .open_for_model(owner, &w.resolved().name, terms, &KeyPolicy::default())
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

    fn orphan_id(n: u64) -> SessionId {
        SessionId::parse(&format!("0x{:064x}", 0xdead_0000 + n)).unwrap()
    }

    fn adopting(w: &SessionWorld, grace: std::time::Duration) -> SessionJanitor {
        SessionJanitor::new(w.store.clone(), w.market.clone())
            .adopting_orphans(w.sessions.catalogue().clone(), grace)
    }

    #[tokio::test]
    async fn a_running_orphan_joins_the_pool_and_known_sessions_are_left_alone() {
        let (w, _, records) = world_with_sessions(1).await;
        let janitor = adopting(&w, std::time::Duration::ZERO);
        let end = Utc::now() + chrono::Duration::hours(1);
        w.market.add_session(&orphan_id(1), &w.model, end);
        let report = janitor.run_once(Utc::now()).await.unwrap();
        assert_eq!(
            (
                report.orphans_found,
                report.orphans_adopted,
                report.orphans_closed
            ),
            (1, 1, 0)
        );
        let adopted = w.store.record(&orphan_id(1)).unwrap();
        assert!(adopted.pooled);
        assert_eq!(adopted.state, SessionState::Active);
        assert_eq!(adopted.origin, SessionOrigin::Automated);
        assert_eq!(
            (adopted.api_key_id, adopted.user_id),
            (ApiKeyId(0), UserId(0))
        );
        assert_eq!(adopted.model_id, w.model);
        assert_eq!(adopted.ends_at.timestamp(), end.timestamp());
        // The session the database knew is untouched, and nothing is closed on chain.
        assert_eq!(w.store.record(&records[0].id).unwrap(), records[0]);
        assert!(w.market.closes.lock().unwrap().is_empty());
        // The pool hands the adopted session out: no open.
        let terms = SessionWorld::terms();
        let lease = w
            .sessions
            .pool()
            .claim(&w.model, terms, w.owner)
            .await
            .unwrap();
        assert_eq!(lease.session().id, orphan_id(1));
        assert_eq!(w.market.opened.load(std::sync::atomic::Ordering::SeqCst), 1);
        drop(lease);
        // A second pass finds nothing left.
        let report = janitor.run_once(Utc::now()).await.unwrap();
        assert_eq!(report.orphans_found, 0);
    }

    #[tokio::test]
    async fn ended_and_unlisted_orphans_are_closed_and_a_failed_close_is_tried_again() {
        let w = SessionWorld::new(true).await;
        let janitor = adopting(&w, std::time::Duration::ZERO);
        let now = Utc::now();
        // At its end (within the margin), past it, and of a model the gateway does not list.
        w.market
            .add_session(&orphan_id(1), &w.model, now + chrono::Duration::seconds(10));
        w.market
            .add_session(&orphan_id(2), &w.model, now - chrono::Duration::hours(1));
        let unlisted = ModelId::parse(&format!("0x{:064x}", 0xfff)).unwrap();
        w.market
            .add_session(&orphan_id(3), &unlisted, now + chrono::Duration::hours(1));
        // Closed on chain already: never adopted, never closed again.
        w.market
            .add_session(&orphan_id(4), &w.model, now + chrono::Duration::hours(1));
        w.market.close_on_chain(&orphan_id(4));
        FakeMarket::fail_next(
            &w.market.close_failures,
            MarketplaceError::Unreachable("refused".to_owned()),
        );
        let report = janitor.run_once(now).await.unwrap();
        assert_eq!(
            (
                report.orphans_found,
                report.orphans_closed,
                report.orphans_left
            ),
            (3, 2, 1)
        );
        let report = janitor.run_once(now).await.unwrap();
        assert_eq!(
            (
                report.orphans_found,
                report.orphans_closed,
                report.orphans_left
            ),
            (1, 1, 0)
        );
        assert_eq!(report.orphans_adopted, 0);
        for n in 1..=4 {
            assert!(
                w.store.record(&orphan_id(n)).is_none(),
                "orphan {n} recorded"
            );
            assert!(w.market.session(&orphan_id(n)).await.unwrap().is_closed());
        }
        assert!(!w.market.closes.lock().unwrap().contains(&orphan_id(4)));
        assert_eq!(janitor.run_once(now).await.unwrap().orphans_found, 0);
    }

    #[tokio::test]
    async fn young_sessions_waiting_models_and_a_failing_node_leave_orphans_for_later() {
        let w = SessionWorld::new(true).await;
        let end = Utc::now() + chrono::Duration::hours(1);
        w.market.add_session(&orphan_id(1), &w.model, end);
        // Opened moments ago: perhaps an open on its way into the database.
        let patient = adopting(&w, std::time::Duration::from_secs(600));
        let report = patient.run_once(Utc::now()).await.unwrap();
        assert_eq!(report, JanitorReport::default());

        let janitor = adopting(&w, std::time::Duration::ZERO);
        FakeMarket::fail_next(
            &w.market.read_failures,
            MarketplaceError::Timeout(TimeoutPhase::Total),
        );
        let report = janitor.run_once(Utc::now()).await.unwrap();
        assert!(report.orphans_interrupted);
        assert_eq!(report.orphans_found, 0);

        // No model list loaded yet: a running orphan's model cannot be judged.
        let unloaded = SessionJanitor::new(w.store.clone(), w.market.clone()).adopting_orphans(
            Arc::new(crate::services::ModelCatalogue::new(
                crate::services::CatalogueOptions {
                    default_model: None,
                    aliases: Vec::new(),
                    provided: Vec::new(),
                },
            )),
            std::time::Duration::ZERO,
        );
        let report = unloaded.run_once(Utc::now()).await.unwrap();
        assert_eq!((report.orphans_found, report.orphans_left), (1, 1));
        assert!(w.market.closes.lock().unwrap().is_empty());
        assert!(w.store.record(&orphan_id(1)).is_none());

        assert_eq!(
            janitor.run_once(Utc::now()).await.unwrap().orphans_adopted,
            1
        );
    }
}
