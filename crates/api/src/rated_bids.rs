//! `GET /models/ratedbids` needs no credential, and each answer is a request to the
//! proxy-router. Answers are shared for a short while per model (concurrent callers wait for
//! the one request in flight instead of making their own) and callers are limited per client
//! address, so an anonymous flood is not passed on to the proxy-router.

use std::collections::HashMap;
use std::future::Future;
use std::net::IpAddr;
use std::num::NonZeroU32;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use governor::clock::{Clock, DefaultClock};
use governor::{DefaultKeyedRateLimiter, Quota, RateLimiter};
use morpheus_domain::ports::MarketplaceError;
use morpheus_domain::{ModelId, RatedBid};
use tokio::time::Instant;

use crate::client_address::ClientKey;

/// Models whose answer is kept at most; past that, answers are not kept (still limited per
/// client). Model ids come from anonymous callers: the map must not grow with them.
const MAX_MODELS: usize = 1024;

type Answer = Result<Arc<Vec<RatedBid>>, MarketplaceError>;

/// One model's latest answer and when it arrived; the lock is held while it is fetched.
type Entry = Arc<tokio::sync::Mutex<Option<(Instant, Answer)>>>;

/// How long answers are shared, and how many calls a client may make.
#[derive(Debug, Clone, Copy)]
pub struct RatedBidsSettings {
    pub fresh_for: Duration,
    pub per_client_burst: u32,
    pub per_client_refill: Duration,
}

impl Default for RatedBidsSettings {
    fn default() -> Self {
        Self {
            fresh_for: Duration::from_secs(2),
            per_client_burst: 20,
            per_client_refill: Duration::from_secs(1),
        }
    }
}

/// The shared answers and the per-client limit. Cloning shares them.
#[derive(Clone)]
pub struct RatedBidsCache {
    fresh_for: Duration,
    entries: Arc<Mutex<HashMap<ModelId, Entry>>>,
    clients: Arc<DefaultKeyedRateLimiter<IpAddr>>,
}

impl RatedBidsCache {
    pub fn new(settings: RatedBidsSettings) -> Self {
        let burst = NonZeroU32::new(settings.per_client_burst.max(1)).unwrap_or(NonZeroU32::MIN);
        let quota = Quota::with_period(settings.per_client_refill.max(Duration::from_millis(1)))
            .unwrap_or_else(|| Quota::per_second(NonZeroU32::MIN))
            .allow_burst(burst);
        Self {
            fresh_for: settings.fresh_for,
            entries: Arc::default(),
            clients: Arc::new(RateLimiter::keyed(quota)),
        }
    }

    /// Counts a call of `client`; `Err` with the wait when it is over its limit.
    pub fn admit(&self, client: Option<ClientKey>) -> Result<(), Duration> {
        let Some(client) = client else { return Ok(()) };
        let now = DefaultClock::default().now();
        self.clients
            .check_key(&client.ip())
            .map_err(|not_until| not_until.wait_time_from(now))?;
        if self.clients.len() > 4 * MAX_MODELS {
            self.clients.retain_recent();
        }
        Ok(())
    }

    /// The model's answer: a fresh shared one, the one being fetched, or `fetch`'s.
    pub async fn get<F>(&self, model: &ModelId, fetch: impl FnOnce() -> F) -> Answer
    where
        F: Future<Output = Result<Vec<RatedBid>, MarketplaceError>>,
    {
        let Some(entry) = self.entry(model) else {
            return fetch().await.map(Arc::new);
        };
        let mut latest = entry.lock().await;
        if let Some((at, answer)) = &*latest
            && at.elapsed() < self.fresh_for
        {
            return answer.clone();
        }
        // Failures are shared too: a failing proxy-router is not asked again by every caller.
        let answer = fetch().await.map(Arc::new);
        *latest = Some((Instant::now(), answer.clone()));
        answer
    }

    fn entry(&self, model: &ModelId) -> Option<Entry> {
        let mut entries = self.entries.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(entry) = entries.get(model) {
            return Some(entry.clone());
        }
        if entries.len() >= MAX_MODELS {
            let fresh_for = self.fresh_for;
            entries.retain(|_, entry| {
                entry.try_lock().map_or(true, |latest| {
                    latest
                        .as_ref()
                        .is_some_and(|(at, _)| at.elapsed() < fresh_for)
                })
            });
            if entries.len() >= MAX_MODELS {
                return None;
            }
        }
        Some(entries.entry(model.clone()).or_default().clone())
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};

    use super::*;
    use crate::client_address::ClientAddressRules;

    fn model(n: u8) -> ModelId {
        ModelId::parse(&format!("0x{}", format!("{n:02x}").repeat(32))).unwrap()
    }

    #[tokio::test(start_paused = true)]
    async fn callers_share_one_request_per_model_while_the_answer_is_fresh() {
        let cache = RatedBidsCache::new(RatedBidsSettings::default());
        let fetches = AtomicUsize::new(0);
        let fetch = || async {
            fetches.fetch_add(1, Ordering::SeqCst);
            tokio::time::sleep(Duration::from_millis(50)).await;
            Ok(vec![])
        };
        let one = model(1);
        let answers = futures_util::future::join_all((0..20).map(|_| cache.get(&one, fetch))).await;
        assert!(answers.iter().all(Result::is_ok));
        assert_eq!(fetches.load(Ordering::SeqCst), 1);
        cache.get(&model(2), fetch).await.unwrap();
        assert_eq!(fetches.load(Ordering::SeqCst), 2);

        tokio::time::advance(Duration::from_millis(1900)).await;
        cache.get(&model(1), fetch).await.unwrap();
        assert_eq!(fetches.load(Ordering::SeqCst), 2);
        tokio::time::advance(Duration::from_millis(200)).await;
        cache.get(&model(1), fetch).await.unwrap();
        assert_eq!(fetches.load(Ordering::SeqCst), 3);
    }

    #[tokio::test(start_paused = true)]
    async fn failures_are_shared_for_as_long() {
        let cache = RatedBidsCache::new(RatedBidsSettings::default());
        let fetches = AtomicUsize::new(0);
        let fetch = || async {
            fetches.fetch_add(1, Ordering::SeqCst);
            Err(MarketplaceError::Timeout(
                morpheus_domain::ports::TimeoutPhase::Total,
            ))
        };
        for _ in 0..5 {
            assert!(cache.get(&model(1), fetch).await.is_err());
        }
        assert_eq!(fetches.load(Ordering::SeqCst), 1);
    }

    #[test]
    fn the_map_stays_bounded_by_unknown_models() {
        let cache = RatedBidsCache::new(RatedBidsSettings::default());
        for n in 0..=u8::MAX {
            for m in 0..5u8 {
                let id = ModelId::parse(&format!("0x{n:02x}{m:02x}{}", "00".repeat(30))).unwrap();
                cache.entry(&id);
            }
        }
        assert!(cache.entries.lock().unwrap().len() <= MAX_MODELS);
    }

    #[test]
    fn calls_are_limited_per_client() {
        let cache = RatedBidsCache::new(RatedBidsSettings {
            per_client_burst: 2,
            ..Default::default()
        });
        let rules = ClientAddressRules::default();
        let a = Some(rules.key([192, 0, 2, 1].into()));
        let b = Some(rules.key([192, 0, 2, 2].into()));
        assert!(cache.admit(a).is_ok());
        assert!(cache.admit(a).is_ok());
        let wait = cache.admit(a).unwrap_err();
        assert!(
            wait > Duration::ZERO && wait <= Duration::from_secs(1),
            "{wait:?}"
        );
        assert!(cache.admit(b).is_ok());
    }
}
