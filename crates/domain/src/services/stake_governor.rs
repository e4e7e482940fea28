//! The operator's caps on what the gateway stakes from the node's wallet: every session open,
//! pooled or explicit, stakes MOR (proxy-router-behaviour.md §1 row 6), so a free account could
//! otherwise spend the operator's MOR without limit.
//!
//! - a **daily stake budget** (UTC day) over all opens, counted in the shared counters (Redis
//!   with several replicas, so it is exact across them): an open reserves its estimated stake
//!   first, is settled to the stake the chain reports for its session, and gives the
//!   reservation back when it fails;
//! - a **maximum bid price** per second: no session is opened on a dearer bid;
//! - a **MOR low-water mark**: below it (the node wallet's balance, read at most every few
//!   seconds per replica, fail-open) only the operator's warm models open sessions;
//! - **per-user caps on explicit sessions**: how many a user may have active, and how long one
//!   may last.
//!
//! Every refusal happens before anything is sent to the node, so nothing is staked.

use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use super::ModelCatalogue;
use crate::model::*;
use crate::ports::*;

/// The counter of the day's stake, in nano-MOR, in windows of one UTC day.
const BUDGET_KEY: &str = "stake:day";
const DAY: Duration = Duration::from_secs(86_400);
/// Ratios (stake ÷ price × duration) are kept in millionths.
const PPM: u128 = 1_000_000;

/// The operator's caps; `None` is off.
#[derive(Debug, Clone, Default)]
pub struct StakeSettings {
    /// Most MOR (wei) all opens together may stake per UTC day.
    pub daily_budget: Option<u128>,
    /// Dearest bid (wei of MOR per second) a session is opened on.
    pub max_price_per_second: Option<u128>,
    /// Below this node-wallet MOR balance (wei), only warm models open sessions.
    pub low_water_mark: Option<u128>,
    /// Model names or ids that may open below the low-water mark.
    pub warm_models: Vec<String>,
    /// How long a balance read is reused on this replica.
    pub balance_cache: Duration,
    /// The node's stake per unit of `price × duration` before any open showed it (the chain's
    /// `supply ÷ today's budget`), in millionths; each settled open replaces it.
    pub stake_factor_ppm: u128,
    /// Most active explicit (not pooled) sessions per user.
    pub max_user_sessions: Option<u64>,
    /// Longest `sessionDuration` (seconds) of an explicit open.
    pub max_session_duration: Option<u32>,
}

/// Which cap refused an open (the metric's `limit` label and the error's subject).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum StakeLimit {
    DailyBudget,
    MaxBidPrice,
    LowWaterMark,
    UserSessions,
    SessionDuration,
}

impl StakeLimit {
    pub const ALL: [StakeLimit; 5] = [
        Self::DailyBudget,
        Self::MaxBidPrice,
        Self::LowWaterMark,
        Self::UserSessions,
        Self::SessionDuration,
    ];

    pub fn label(self) -> &'static str {
        match self {
            Self::DailyBudget => "daily_budget",
            Self::MaxBidPrice => "max_bid_price",
            Self::LowWaterMark => "low_water_mark",
            Self::UserSessions => "user_sessions",
            Self::SessionDuration => "session_duration",
        }
    }

    fn index(self) -> usize {
        self as usize
    }
}

/// Why an open was refused: nothing was sent to the node.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum StakeRefusal {
    #[error(
        "the operator's daily stake budget ({} MOR, MORPHEUS_STAKE_DAILY_BUDGET_MOR) is spent for today (UTC)",
        format_mor(*.budget)
    )]
    BudgetExhausted { budget: u128, retry_after: Duration },
    /// The budget's counters could not be read and the policy is to refuse (fail-closed).
    #[error("the daily stake budget cannot be checked now")]
    BudgetUnavailable { retry_after: Duration },
    /// `price`: the one bid asked for; `None`: every bid of the model.
    #[error("{}", price_message(*.limit, *.price))]
    BidPriceAboveLimit { limit: u128, price: Option<u128> },
    #[error(
        "the node wallet's MOR is below the operator's low-water mark ({} MOR, MORPHEUS_MOR_LOW_WATER_MARK_MOR): only warm models open new sessions",
        format_mor(*.mark)
    )]
    BelowLowWaterMark { mark: u128 },
    #[error(
        "the user has {limit} active sessions, the most allowed (MORPHEUS_MAX_SESSIONS_PER_USER); close one with POST /api/v1/session/closesession"
    )]
    TooManySessions { limit: u64 },
    #[error(
        "sessionDuration {requested} s is longer than the {max} s allowed (MORPHEUS_MAX_SESSION_DURATION_SECONDS)"
    )]
    DurationExceeded { requested: u32, max: u32 },
}

impl StakeRefusal {
    pub fn limit(&self) -> StakeLimit {
        match self {
            Self::BudgetExhausted { .. } | Self::BudgetUnavailable { .. } => {
                StakeLimit::DailyBudget
            }
            Self::BidPriceAboveLimit { .. } => StakeLimit::MaxBidPrice,
            Self::BelowLowWaterMark { .. } => StakeLimit::LowWaterMark,
            Self::TooManySessions { .. } => StakeLimit::UserSessions,
            Self::DurationExceeded { .. } => StakeLimit::SessionDuration,
        }
    }
}

/// An open's share of the day's budget, held from before the open until it is settled or
/// given back. Dropped unsettled (an open that returned early), it is given back.
#[must_use = "a reservation is settled or given back"]
pub struct StakeReservation {
    governor: Option<StakeGovernor>,
    /// Nano-MOR counted.
    amount: u64,
    window_start: i64,
}

impl StakeReservation {
    fn none() -> Self {
        Self {
            governor: None,
            amount: 0,
            window_start: 0,
        }
    }

    /// The open succeeded: the day counts the session's real stake instead of the estimate
    /// (the estimate stays when the chain could not be read).
    pub async fn settle(mut self, session: Option<&UpstreamSession>) {
        let Some(governor) = self.governor.take() else {
            return;
        };
        let Some(session) = session else {
            return;
        };
        governor.learn(session);
        let actual = i128::from(nano_mor_ceil(session.stake));
        let delta = actual - i128::from(self.amount);
        let delta = i64::try_from(delta).unwrap_or(if delta > 0 { i64::MAX } else { i64::MIN });
        if delta != 0 {
            governor.adjust(self.window_start, delta).await;
        }
    }

    /// The open failed: nothing was staked, the day gets its reservation back.
    pub async fn release(mut self) {
        if let Some(governor) = self.governor.take() {
            governor
                .adjust(
                    self.window_start,
                    -i64::try_from(self.amount).unwrap_or(i64::MAX),
                )
                .await;
        }
    }
}

impl Drop for StakeReservation {
    fn drop(&mut self) {
        let Some(governor) = self.governor.take() else {
            return;
        };
        let (amount, window_start) = (self.amount, self.window_start);
        if let Ok(runtime) = tokio::runtime::Handle::try_current() {
            runtime.spawn(async move {
                governor
                    .adjust(window_start, -i64::try_from(amount).unwrap_or(i64::MAX))
                    .await;
            });
        }
    }
}

/// Running totals for metrics.
#[derive(Debug, Default)]
pub struct StakeStats {
    refusals: [AtomicU64; 5],
    /// The last MOR balance read (wei, saturated to u64 nano-MOR); `u64::MAX`: never read.
    last_balance_nano: AtomicU64,
}

impl StakeStats {
    pub fn refusals(&self, limit: StakeLimit) -> u64 {
        self.refusals[limit.index()].load(Relaxed)
    }

    /// The node wallet's MOR at the last read, in nano-MOR.
    pub fn last_balance_nano(&self) -> Option<u64> {
        match self.last_balance_nano.load(Relaxed) {
            u64::MAX => None,
            n => Some(n),
        }
    }
}

#[derive(Clone)]
pub struct StakeGovernor {
    inner: Arc<Inner>,
}

struct Inner {
    settings: StakeSettings,
    counters: Arc<dyn Counters>,
    market: Arc<dyn Marketplace>,
    catalogue: Arc<ModelCatalogue>,
    /// The last balance read and when.
    balance: Mutex<Option<(Instant, u128)>>,
    /// One balance read at a time per replica; the others wait for its answer.
    balance_read: tokio::sync::Mutex<()>,
    /// Stake per unit of price × duration, in millionths: the setting, then the last open's.
    factor_ppm: Mutex<u128>,
    stats: StakeStats,
}

impl StakeGovernor {
    pub fn new(
        settings: StakeSettings,
        counters: Arc<dyn Counters>,
        market: Arc<dyn Marketplace>,
        catalogue: Arc<ModelCatalogue>,
    ) -> Self {
        let stats = StakeStats::default();
        stats.last_balance_nano.store(u64::MAX, Relaxed);
        Self {
            inner: Arc::new(Inner {
                factor_ppm: Mutex::new(settings.stake_factor_ppm.max(1)),
                settings,
                counters,
                market,
                catalogue,
                balance: Mutex::default(),
                balance_read: tokio::sync::Mutex::new(()),
                stats,
            }),
        }
    }

    pub fn settings(&self) -> &StakeSettings {
        &self.inner.settings
    }

    pub fn stats(&self) -> &StakeStats {
        &self.inner.stats
    }

    /// Counts a refusal and hands it back.
    pub fn refused(&self, refusal: StakeRefusal) -> StakeRefusal {
        self.inner.stats.refusals[refusal.limit().index()].fetch_add(1, Relaxed);
        tracing::info!(limit = refusal.limit().label(), %refusal, "a session open was refused");
        refusal
    }

    /// An explicit open's duration against the cap.
    pub fn check_duration(&self, terms: SessionTerms) -> Result<(), StakeRefusal> {
        match self.inner.settings.max_session_duration {
            Some(max) if terms.duration.seconds() > max => {
                Err(self.refused(StakeRefusal::DurationExceeded {
                    requested: terms.duration.seconds(),
                    max,
                }))
            }
            _ => Ok(()),
        }
    }

    /// A user with `active` explicit sessions opening one more.
    pub fn check_user_sessions(&self, active: u64) -> Result<(), StakeRefusal> {
        match self.inner.settings.max_user_sessions {
            Some(limit) if active >= limit => {
                Err(self.refused(StakeRefusal::TooManySessions { limit }))
            }
            _ => Ok(()),
        }
    }

    pub fn limits_user_sessions(&self) -> bool {
        self.inner.settings.max_user_sessions.is_some()
    }

    /// Whether a bid's price is within the cap.
    pub fn price_allowed(&self, price_per_second: u128) -> bool {
        self.inner
            .settings
            .max_price_per_second
            .is_none_or(|limit| price_per_second <= limit)
    }

    pub fn limits_price(&self) -> bool {
        self.inner.settings.max_price_per_second.is_some()
    }

    /// The refusal for a bid above the cap (`price`), or for a model with none within it.
    pub fn price_refusal(&self, price: Option<u128>) -> StakeRefusal {
        self.refused(StakeRefusal::BidPriceAboveLimit {
            limit: self.inner.settings.max_price_per_second.unwrap_or_default(),
            price,
        })
    }

    /// Whether the operator named the model warm (by name or id, any case).
    pub fn is_warm(&self, model: &ModelId) -> bool {
        let warm = &self.inner.settings.warm_models;
        if warm.is_empty() {
            return false;
        }
        let name = self.inner.catalogue.named(model).name;
        warm.iter().any(|w| {
            w.eq_ignore_ascii_case(model.as_str())
                || (!name.is_empty() && w.eq_ignore_ascii_case(&name))
        })
    }

    /// Below the low-water mark only warm models open. The balance is read at most once per
    /// cache period on this replica; a failed read lets the open through (fail-open: the mark
    /// protects a reserve, and the node refuses an open it cannot pay for anyway).
    pub async fn check_low_water_mark(&self, model: &ModelId) -> Result<(), StakeRefusal> {
        let Some(mark) = self.inner.settings.low_water_mark else {
            return Ok(());
        };
        if self.is_warm(model) {
            return Ok(());
        }
        match self.mor_balance().await {
            Some(balance) if balance < mark => {
                Err(self.refused(StakeRefusal::BelowLowWaterMark { mark }))
            }
            _ => Ok(()),
        }
    }

    /// The node wallet's MOR (wei), from the cache when fresh; `None` when it cannot be read.
    pub async fn mor_balance(&self) -> Option<u128> {
        if let Some(fresh) = self.cached_balance() {
            return Some(fresh);
        }
        let _reading = self.inner.balance_read.lock().await;
        if let Some(fresh) = self.cached_balance() {
            return Some(fresh);
        }
        match self.inner.market.balance().await {
            Ok(balance) => {
                *self
                    .inner
                    .balance
                    .lock()
                    .unwrap_or_else(|poisoned| poisoned.into_inner()) =
                    Some((Instant::now(), balance.mor));
                self.inner
                    .stats
                    .last_balance_nano
                    .store(nano_mor_ceil(balance.mor).min(u64::MAX - 1), Relaxed);
                Some(balance.mor)
            }
            Err(error) => {
                tracing::warn!(%error, "could not read the node wallet's MOR balance; opens are not held back by the low-water mark");
                None
            }
        }
    }

    fn cached_balance(&self) -> Option<u128> {
        let cached = *self
            .inner
            .balance
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        cached
            .filter(|(at, _)| at.elapsed() < self.inner.settings.balance_cache)
            .map(|(_, mor)| mor)
    }

    /// The stake an open on a bid of `price_per_second` for `terms` will ask, in wei: the
    /// node's `supply × price × duration ÷ today's budget` (`blockchainapi/service.go:1260-1267`)
    /// with the ratio the last open showed.
    pub fn estimate(&self, price_per_second: u128, terms: SessionTerms) -> u128 {
        let cost = price_per_second.saturating_mul(u128::from(terms.duration.seconds()));
        let factor = *self
            .inner
            .factor_ppm
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        estimate_stake(cost, factor)
    }

    /// Reserves the estimated stake of an open from the day's budget.
    pub async fn reserve(
        &self,
        price_per_second: u128,
        terms: SessionTerms,
    ) -> Result<StakeReservation, StakeRefusal> {
        let Some(budget) = self.inner.settings.daily_budget else {
            return Ok(StakeReservation::none());
        };
        let amount = nano_mor_ceil(self.estimate(price_per_second, terms));
        let limit = nano_mor_floor(budget);
        let take = Take::new(BUDGET_KEY, DAY, limit, amount);
        match self.inner.counters.take(std::slice::from_ref(&take)).await {
            Ok(taken) if taken.degraded => Ok(StakeReservation::none()),
            Ok(taken) => match taken.refused_by {
                None => Ok(StakeReservation {
                    governor: Some(self.clone()),
                    amount,
                    window_start: taken.counters.first().map_or(0, |c| c.window_start),
                }),
                Some(_) => Err(self.refused(StakeRefusal::BudgetExhausted {
                    budget,
                    retry_after: taken.retry_after().unwrap_or(Duration::from_secs(1)),
                })),
            },
            Err(failure) => Err(self.refused(StakeRefusal::BudgetUnavailable {
                retry_after: failure.retry_after,
            })),
        }
    }

    /// What today's opens have staked (nano-MOR), reservations in flight included; `None`
    /// without a budget or when the counters cannot be read.
    pub async fn committed_today(&self) -> Option<u64> {
        self.inner.settings.daily_budget?;
        self.inner
            .counters
            .read(BUDGET_KEY, DAY)
            .await
            .ok()
            .map(|c| c.used)
    }

    async fn adjust(&self, window_start: i64, delta: i64) {
        if let Err(error) = self
            .inner
            .counters
            .adjust(BUDGET_KEY, DAY, window_start, delta)
            .await
        {
            tracing::warn!(%error, delta, "could not settle a stake reservation");
        }
    }

    /// Keeps the ratio an open's real stake showed for the next estimates.
    fn learn(&self, session: &UpstreamSession) {
        let seconds = session.ends_at.saturating_sub(session.opened_at);
        let cost = session.price_per_second.saturating_mul(u128::from(seconds));
        if cost == 0 || session.stake == 0 {
            return;
        }
        let ratio = session.stake.saturating_mul(PPM).div_ceil(cost).max(1);
        *self
            .inner
            .factor_ppm
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner()) = ratio;
    }
}

fn price_message(limit: u128, price: Option<u128>) -> String {
    let what = match price {
        Some(price) => format!("the bid asks {} MOR per second,", format_mor(price)),
        None => "every bid of the model asks".to_owned(),
    };
    format!(
        "{what} more than the operator's limit of {} MOR per second \
         (MORPHEUS_MAX_BID_PRICE_PER_SECOND_MOR)",
        format_mor(limit)
    )
}

/// `cost × factor ÷ 1e6`, rounded up, saturating.
fn estimate_stake(cost: u128, factor_ppm: u128) -> u128 {
    cost.saturating_mul(factor_ppm).div_ceil(PPM)
}

/// Wei in whole nano-MOR, rounded down (a budget never counts more than it was set to).
fn nano_mor_floor(wei: u128) -> u64 {
    u64::try_from(wei / WEI_PER_NANO_MOR).unwrap_or(u64::MAX)
}

#[cfg(test)]
mod tests;
