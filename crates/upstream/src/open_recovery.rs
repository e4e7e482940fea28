//! Opening a session, and what to do when we cannot tell whether it opened.
//!
//! Why this exists: an open makes the node approve a stake and send an on-chain transaction
//! from the operator's wallet. If the answer is lost (timeout, reset, an unreadable success, a
//! 5xx from something in between), sending the open again could pay for a second session while
//! the first one sits unused until it expires. So an open is sent exactly once; when its outcome
//! is ambiguous we ask the node for its wallet's newest sessions and adopt one that matches what
//! we asked for, opened since shortly before we sent the request, still open, and not already
//! handed out by this process. Only if none exists is the original error returned (and then the
//! caller may decide to try again, knowing no session came of the first attempt).

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use morpheus_domain::ports::MarketplaceError;
use morpheus_domain::{BidId, ModelId, SessionId, SessionTerms, UpstreamSession};
use reqwest::header::DATE;

use crate::client::{ProxyRouterClient, decode};
use crate::transport::Limits;
use crate::wire;

/// How far before our send time an adopted session may have opened: covers clock skew
/// between us and the node's chain, and block timestamps that lag the wall clock.
const OPENED_SLACK: Duration = Duration::from_secs(30);

#[derive(Debug, Clone, Copy)]
pub(crate) enum OpenTarget<'a> {
    Model(&'a ModelId),
    Bid(&'a BidId),
}

impl OpenTarget<'_> {
    fn matches(&self, s: &UpstreamSession) -> bool {
        match self {
            Self::Model(m) => s.model_agent_id.eq_ignore_ascii_case(m.as_str()),
            Self::Bid(b) => s.bid_id.eq_ignore_ascii_case(b.as_str()),
        }
    }
}

impl ProxyRouterClient {
    pub(crate) async fn open_session(
        &self,
        target: OpenTarget<'_>,
        terms: SessionTerms,
    ) -> Result<SessionId, MarketplaceError> {
        let (path, body) = match target {
            OpenTarget::Model(m) => (
                format!("/blockchain/models/{}/session", m.as_str()),
                wire::open_model_body(terms),
            ),
            OpenTarget::Bid(b) => (
                format!("/blockchain/bids/{}/session", b.as_str()),
                wire::open_bid_body(terms),
            ),
        };
        let sent_at = SystemTime::now();
        let c = &self.inner.config;
        let limits = Limits {
            // The node answers only when both transactions are mined.
            first_byte: c.open_timeout,
            total: c.open_timeout,
            ..self.admin_limits()
        };
        let outcome = match self.post_within(&path, Some(body), limits).await {
            Ok(answer) => decode(&answer, wire::session_opened),
            Err(f) => Err(f),
        };
        match outcome {
            Ok(id) => {
                self.claim(&id);
                Ok(id)
            }
            Err(f) if f.ambiguous || after_the_money_moved(&f.error) => {
                tracing::warn!(error = %f.error, ?target, "session open outcome unknown; looking for the session");
                match self.watch_for_opened(target, sent_at).await {
                    Some(id) => {
                        tracing::info!(session = %id, "adopted the session the ambiguous open created");
                        Ok(id)
                    }
                    None => Err(f.error),
                }
            }
            Err(f) => Err(f.error),
        }
    }

    /// [`Self::find_opened`], asked again with growing pauses for the recovery window: the
    /// session of a transaction mined late, or read from a lagging RPC node, shows up later.
    async fn watch_for_opened(
        &self,
        target: OpenTarget<'_>,
        sent_at: SystemTime,
    ) -> Option<SessionId> {
        let deadline = tokio::time::Instant::now() + self.inner.config.open_recovery_window;
        let mut pause = Duration::from_millis(250);
        loop {
            if let Some(id) = self.find_opened(target, sent_at).await {
                return Some(id);
            }
            let left = deadline.saturating_duration_since(tokio::time::Instant::now());
            if left.is_zero() {
                return None;
            }
            tokio::time::sleep(pause.min(left)).await;
            pause = (pause * 2).min(Duration::from_secs(10));
        }
    }

    /// The session an ambiguous open created, if the node lists one.
    async fn find_opened(&self, target: OpenTarget<'_>, sent_at: SystemTime) -> Option<SessionId> {
        let (wallet, answer) = match self.wallet().await {
            Ok(found) => found,
            Err(f) => {
                tracing::warn!(error = %f.error, "cannot read the node's wallet to check an open");
                return None;
            }
        };
        // Compare in the node's clock when it tells us its time: its sessions carry its
        // chain's timestamps, not ours.
        let skew = upstream_skew(&answer.headers);
        let sent_secs = unix_secs(sent_at) as i64 + skew;
        let not_before = sent_secs - OPENED_SLACK.as_secs() as i64;
        let sessions = match self.user_sessions(&wallet).await {
            Ok(s) => s,
            Err(f) => {
                tracing::warn!(error = %f.error, "cannot list the node's sessions to check an open");
                return None;
            }
        };
        let mut candidates: Vec<UpstreamSession> = sessions
            .into_iter()
            .filter(|s| target.matches(s) && !s.is_closed() && s.opened_at as i64 >= not_before)
            .collect();
        candidates.sort_by_key(|s| std::cmp::Reverse(s.opened_at));
        // `claim` is atomic, so two concurrent recoveries never adopt the same session.
        candidates
            .into_iter()
            .map(|s| s.id)
            .find(|id| self.claim(id))
    }
}

/// Texts the node returns after the open transaction was sent (and mined, or mined later), so
/// the session exists or will although the answer is an error (proxy-router-behaviour.md §2.1:
/// `blockchainapi/service.go:406-441`; the last is `dev`'s).
const AFTER_THE_MONEY_MOVED: [&str; 5] = [
    "parse session receipt failed",
    "failed to get session",
    "failed to store session",
    "not mined after all escalation attempts",
    "created on-chain (tx mined) but not yet visible",
];

/// Whether an open's failure may hide a session: one of those texts, or `session not found`,
/// which an open can only mean of the session it just created.
fn after_the_money_moved(error: &MarketplaceError) -> bool {
    match error {
        MarketplaceError::SessionGone(morpheus_domain::ports::SessionGone::NotFound) => true,
        MarketplaceError::Rejected { message, .. } => {
            let lower = message.to_ascii_lowercase();
            AFTER_THE_MONEY_MOVED
                .iter()
                .any(|text| lower.contains(text))
        }
        _ => false,
    }
}

fn unix_secs(t: SystemTime) -> u64 {
    t.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs())
}

/// Upstream clock minus ours, in seconds, from a response's `Date` header (0 without one).
fn upstream_skew(headers: &reqwest::header::HeaderMap) -> i64 {
    headers
        .get(DATE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| httpdate::parse_http_date(v).ok())
        .map_or(0, |theirs| {
            unix_secs(theirs) as i64 - unix_secs(SystemTime::now()) as i64
        })
}
