//! Admission by rate limits and budgets, before anything is spent.
//!
//! A request reserves, in one all-or-nothing take from the shared counters: one request and
//! its estimated tokens (input plus its output cap) against the key's own `rpm`/`tpm` and the
//! operator's limits for the model's group (per user, scaled by the user's multiplier), and
//! its estimated cost against each of the key's budget windows. When it ends, the tokens and
//! the cost are corrected to what it really used, or given back when nothing was served; the
//! request stays counted. So concurrent requests cannot overshoot a budget or a limit, and a
//! cut stream is not charged what it never used.
//!
//! Tested on real counters in `crates/counters/tests/rate_limiter.rs`.

use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, RwLock};
use std::time::Duration;

use chrono::{DateTime, Utc};

use super::ResolvedModel;
use crate::model::*;
use crate::ports::{CounterState, Counters, Take, Taken};

const MINUTE: Duration = Duration::from_secs(60);

/// Who asks: the key, its owner, the key's policy and the owner's multiplier.
#[derive(Debug, Clone, Copy)]
pub struct Caller<'a> {
    pub key: ApiKeyId,
    pub user: UserId,
    pub policy: &'a KeyPolicy,
    pub multiplier: LimitMultiplier,
}

/// What a request may use at most: its estimated input, its output cap, and what they cost.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Quote {
    pub price: ModelPrice,
    pub usage: TokenUsage,
    pub cost: Usd,
}

impl Quote {
    pub fn tokens(&self) -> u64 {
        u64::from(self.usage.prompt_tokens) + u64::from(self.usage.completion_tokens)
    }
}

/// What is left of a limit, for the `X-RateLimit-*` headers: the tightest counter of its kind.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Headroom {
    pub limit: u64,
    pub remaining: u64,
    /// Until the window resets (at least a second).
    pub resets_in: Duration,
}

/// The request and token limits as the admission left them; `None`: not limited (or the
/// counters could not be read and the request was let through).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct LimitStatus {
    pub requests: Option<Headroom>,
    pub tokens: Option<Headroom>,
}

/// Which limit a rate refusal hit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RateKind {
    Requests,
    Tokens,
}

/// Whose limit: the key's own, or the operator's for the user and the model's group.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LimitOwner {
    Key,
    Operator { group: String },
}

#[derive(Debug, Clone, thiserror::Error)]
pub enum LimitRefusal {
    /// The window has no room left for this request; it may pass after `retry_after`.
    #[error("{}", rate_message(*kind, owner, *limit, *retry_after))]
    RateLimited {
        kind: RateKind,
        owner: LimitOwner,
        limit: u64,
        retry_after: Duration,
        status: LimitStatus,
    },
    /// The request alone may use more tokens than the limit allows in a whole window: waiting
    /// does not help.
    #[error("{}", too_large_message(owner, *limit, *asked))]
    TokensOverLimit {
        owner: LimitOwner,
        limit: u64,
        asked: u64,
    },
    /// The budget window has too little left for what the request may cost.
    #[error(
        "This API key's budget of {} USD per {} is spent ({} USD used); it resets at {}",
        budget.limit, budget.window_text(), used, resets_at.to_rfc3339()
    )]
    BudgetExceeded {
        budget: KeyBudget,
        used: Usd,
        resets_at: DateTime<Utc>,
        retry_after: Duration,
        status: LimitStatus,
    },
    /// The request alone may cost more than the whole budget.
    #[error(
        "This request may cost up to {cost} USD, more than this API key's whole budget of {} \
         USD per {}; lower max_tokens or the input",
        budget.limit, budget.window_text()
    )]
    CostOverBudget { budget: KeyBudget, cost: Usd },
    /// The counters are unreachable and the operator chose to refuse then (fail-closed).
    #[error("The rate limits cannot be checked right now; try again shortly")]
    Unavailable { retry_after: Duration },
}

fn whose(owner: &LimitOwner) -> String {
    match owner {
        LimitOwner::Key => "this API key".to_owned(),
        LimitOwner::Operator { group } => format!("your account on the '{group}' models"),
    }
}

fn rate_message(kind: RateKind, owner: &LimitOwner, limit: u64, retry: Duration) -> String {
    let unit = match kind {
        RateKind::Requests => "requests",
        RateKind::Tokens => "tokens",
    };
    format!(
        "Rate limit reached: {limit} {unit} per minute for {}. Try again in {} s",
        whose(owner),
        retry.as_secs().max(1)
    )
}

fn too_large_message(owner: &LimitOwner, limit: u64, asked: u64) -> String {
    format!(
        "This request may use {asked} tokens, more than the {limit} tokens per minute allowed \
         for {}; lower max_tokens or the input",
        whose(owner)
    )
}

/// How admissions ended, for the metrics.
#[derive(Debug, Default)]
pub struct LimitCounters {
    pub admitted: AtomicU64,
    pub refused_requests: AtomicU64,
    pub refused_tokens: AtomicU64,
    pub refused_budget: AtomicU64,
    /// Let through uncounted: the counters were unreachable (fail-open).
    pub unchecked: AtomicU64,
    /// Refused because the counters were unreachable (fail-closed).
    pub unavailable: AtomicU64,
}

#[derive(Clone)]
pub struct RateLimiter {
    counters: Arc<dyn Counters>,
    limits: Arc<RwLock<Arc<OperatorLimits>>>,
    stats: Arc<LimitCounters>,
}

/// What one counter of a take stands for.
#[derive(Debug, Clone)]
enum Counted {
    Requests(LimitOwner),
    Tokens(LimitOwner),
    Budget(KeyBudget),
}

impl RateLimiter {
    pub fn new(counters: Arc<dyn Counters>, limits: OperatorLimits) -> Self {
        Self {
            counters,
            limits: Arc::new(RwLock::new(Arc::new(limits))),
            stats: Arc::default(),
        }
    }

    pub fn counters(&self) -> &LimitCounters {
        &self.stats
    }

    /// Puts new operator limits in force (SIGHUP); requests already admitted keep theirs.
    pub fn set_limits(&self, limits: OperatorLimits) {
        *self
            .limits
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = Arc::new(limits);
    }

    fn limits(&self) -> Arc<OperatorLimits> {
        self.limits
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone()
    }

    /// Reserves the request's share of every limit and budget that applies, or refuses it
    /// without counting anything.
    ///
    /// # Errors
    /// See [`LimitRefusal`].
    pub async fn admit(
        &self,
        caller: &Caller<'_>,
        model: &ResolvedModel,
        quote: &Quote,
    ) -> Result<Admission, LimitRefusal> {
        let planned = self.plan(caller, model, quote)?;
        if planned.is_empty() {
            return Ok(Admission::free(*quote));
        }
        let takes: Vec<Take> = planned.iter().map(|(take, _)| take.clone()).collect();
        let taken = match self.counters.take(&takes).await {
            Ok(taken) => taken,
            Err(failure) => {
                self.stats.unavailable.fetch_add(1, Relaxed);
                return Err(LimitRefusal::Unavailable {
                    retry_after: failure.retry_after,
                });
            }
        };
        if taken.degraded {
            self.stats.unchecked.fetch_add(1, Relaxed);
            return Ok(Admission::free(*quote));
        }
        let status = status_of(&planned, &taken);
        if let Some(refused) = taken.refused_by {
            return Err(self.refusal(&planned[refused].1, &taken, status));
        }
        self.stats.admitted.fetch_add(1, Relaxed);
        let reserved = planned
            .iter()
            .zip(&taken.counters)
            .filter_map(|((take, counted), state)| {
                let kind = match counted {
                    Counted::Requests(_) => return None,
                    Counted::Tokens(_) => Reserved::Tokens,
                    Counted::Budget(_) => Reserved::Cost,
                };
                Some(Reservation {
                    key: take.key.clone(),
                    window: take.window,
                    window_start: state.window_start,
                    kind,
                    amount: take.amount,
                })
            })
            .collect();
        Ok(Admission {
            counters: Some(self.counters.clone()),
            reserved,
            quote: *quote,
            status,
        })
    }

    /// The takes a request needs, or a refusal when it could never fit.
    fn plan(
        &self,
        caller: &Caller<'_>,
        model: &ResolvedModel,
        quote: &Quote,
    ) -> Result<Vec<(Take, Counted)>, LimitRefusal> {
        let limits = self.limits();
        let (group, operator) = limits.of(&model.name, model.id.as_str());
        let operator_owner = LimitOwner::Operator {
            group: group.to_owned(),
        };
        let tokens = quote.tokens();
        let (key, user) = (caller.key, caller.user);
        let mut planned = Vec::new();
        if let Some(rpm) = caller.policy.rpm {
            let take = Take::new(format!("rpm:key:{key}"), MINUTE, rpm.get().into(), 1);
            planned.push((take, Counted::Requests(LimitOwner::Key)));
        }
        if let Some(rpm) = operator.rpm {
            let limit = caller.multiplier.scale(rpm.get().into());
            let take = Take::new(format!("rpm:user:{user}:{group}"), MINUTE, limit, 1);
            planned.push((take, Counted::Requests(operator_owner.clone())));
        }
        let mut token_limit = |limit: u64, counter: String, owner: LimitOwner| {
            if tokens > limit {
                self.stats.refused_tokens.fetch_add(1, Relaxed);
                return Err(LimitRefusal::TokensOverLimit {
                    owner,
                    limit,
                    asked: tokens,
                });
            }
            planned.push((
                Take::new(counter, MINUTE, limit, tokens),
                Counted::Tokens(owner),
            ));
            Ok(())
        };
        if let Some(tpm) = caller.policy.tpm {
            token_limit(tpm.get(), format!("tpm:key:{key}"), LimitOwner::Key)?;
        }
        if let Some(tpm) = operator.tpm {
            let limit = caller.multiplier.scale(tpm.get());
            token_limit(limit, format!("tpm:user:{user}:{group}"), operator_owner)?;
        }
        let cost = units(quote.cost);
        for budget in &caller.policy.budgets {
            if cost > units(budget.limit) {
                self.stats.refused_budget.fetch_add(1, Relaxed);
                return Err(LimitRefusal::CostOverBudget {
                    budget: *budget,
                    cost: quote.cost,
                });
            }
            let counter = format!("budget:key:{key}:{}", budget.window.as_secs());
            planned.push((
                Take::new(counter, budget.window, units(budget.limit), cost),
                Counted::Budget(*budget),
            ));
        }
        Ok(planned)
    }

    fn refusal(&self, counted: &Counted, taken: &Taken, status: LimitStatus) -> LimitRefusal {
        let state = taken.refusal().copied().unwrap_or(CounterState {
            used: 0,
            limit: 0,
            window_start: taken.now,
            resets_at: taken.now + 1,
        });
        let retry_after = taken.retry_after().unwrap_or(Duration::from_secs(1));
        match counted {
            Counted::Requests(owner) | Counted::Tokens(owner) => {
                let kind = if matches!(counted, Counted::Requests(_)) {
                    self.stats.refused_requests.fetch_add(1, Relaxed);
                    RateKind::Requests
                } else {
                    self.stats.refused_tokens.fetch_add(1, Relaxed);
                    RateKind::Tokens
                };
                LimitRefusal::RateLimited {
                    kind,
                    owner: owner.clone(),
                    limit: state.limit,
                    retry_after,
                    status,
                }
            }
            Counted::Budget(budget) => {
                self.stats.refused_budget.fetch_add(1, Relaxed);
                LimitRefusal::BudgetExceeded {
                    budget: *budget,
                    used: Usd::from_units(i64::try_from(state.used).unwrap_or(i64::MAX)),
                    resets_at: DateTime::from_timestamp(state.resets_at, 0).unwrap_or_default(),
                    retry_after,
                    status,
                }
            }
        }
    }

    /// What each of the key's budget windows has counted now; `None` when the counters
    /// cannot be read (or run degraded).
    pub async fn budget_use(&self, key: ApiKeyId, budgets: &[KeyBudget]) -> Option<Vec<BudgetUse>> {
        if budgets.is_empty() {
            return Some(Vec::new());
        }
        let takes: Vec<Take> = budgets
            .iter()
            .map(|b| {
                let counter = format!("budget:key:{key}:{}", b.window.as_secs());
                Take::new(counter, b.window, units(b.limit), 0)
            })
            .collect();
        let taken = self.counters.take(&takes).await.ok()?;
        if taken.degraded {
            return None;
        }
        Some(
            budgets
                .iter()
                .zip(&taken.counters)
                .map(|(budget, state)| BudgetUse {
                    budget: *budget,
                    used: Usd::from_units(i64::try_from(state.used).unwrap_or(i64::MAX)),
                    resets_at: DateTime::from_timestamp(state.resets_at, 0).unwrap_or_default(),
                })
                .collect(),
        )
    }
}

/// One budget window's use.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BudgetUse {
    pub budget: KeyBudget,
    pub used: Usd,
    pub resets_at: DateTime<Utc>,
}

/// Dollars as counter units (10⁻⁸ USD); a negative amount counts nothing.
fn units(usd: Usd) -> u64 {
    u64::try_from(usd.units()).unwrap_or(0)
}

/// The tightest request counter and the tightest token counter, for the headers.
fn status_of(planned: &[(Take, Counted)], taken: &Taken) -> LimitStatus {
    let mut status = LimitStatus::default();
    for ((_, counted), state) in planned.iter().zip(&taken.counters) {
        let slot = match counted {
            Counted::Requests(_) => &mut status.requests,
            Counted::Tokens(_) => &mut status.tokens,
            Counted::Budget(_) => continue,
        };
        let headroom = Headroom {
            limit: state.limit,
            remaining: state.remaining(),
            resets_in: Duration::from_secs((state.resets_at - taken.now).max(1).unsigned_abs()),
        };
        if slot.is_none_or(|h| headroom.remaining < h.remaining) {
            *slot = Some(headroom);
        }
    }
    status
}

#[derive(Debug, Clone, Copy)]
enum Reserved {
    Tokens,
    Cost,
}

#[derive(Debug)]
struct Reservation {
    key: String,
    window: Duration,
    window_start: i64,
    kind: Reserved,
    amount: u64,
}

/// An admitted request's reservations. Settle it with what the request used; dropped
/// unsettled, its tokens and cost are given back (nothing was served).
pub struct Admission {
    /// `None` once settled, or when nothing was reserved.
    counters: Option<Arc<dyn Counters>>,
    reserved: Vec<Reservation>,
    quote: Quote,
    status: LimitStatus,
}

impl std::fmt::Debug for Admission {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Admission")
            .field("reserved", &self.reserved)
            .finish_non_exhaustive()
    }
}

impl Admission {
    /// An admission that reserved nothing (no limit applies, or the counters were skipped).
    fn free(quote: Quote) -> Self {
        Self {
            counters: None,
            reserved: Vec::new(),
            quote,
            status: LimitStatus::default(),
        }
    }

    pub fn status(&self) -> LimitStatus {
        self.status
    }

    /// Corrects the reservations to the provider's count.
    pub fn settle(mut self, usage: TokenUsage) {
        let cost = self.quote.price.cost(usage);
        let tokens = u64::from(usage.prompt_tokens) + u64::from(usage.completion_tokens);
        self.correct(tokens, units(cost));
    }

    /// Corrects the reservations to the estimated input and the output delivered: the
    /// provider's count never came.
    pub fn settle_estimated(self, delivered_output_tokens: u32) {
        let usage = TokenUsage {
            prompt_tokens: self.quote.usage.prompt_tokens,
            completion_tokens: delivered_output_tokens,
        };
        self.settle(usage);
    }

    /// Gives the tokens and the cost back: nothing was served. The request stays counted.
    pub fn release(mut self) {
        self.correct(0, 0);
    }

    fn correct(&mut self, tokens: u64, cost: u64) {
        let Some(counters) = self.counters.take() else {
            return;
        };
        let corrections: Vec<(Reservation, i64)> = std::mem::take(&mut self.reserved)
            .into_iter()
            .filter_map(|r| {
                let used = match r.kind {
                    Reserved::Tokens => tokens,
                    Reserved::Cost => cost,
                };
                let delta = i128::from(used) - i128::from(r.amount);
                let delta =
                    i64::try_from(delta).unwrap_or(if delta < 0 { i64::MIN } else { i64::MAX });
                (delta != 0).then_some((r, delta))
            })
            .collect();
        if corrections.is_empty() {
            return;
        }
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            tracing::warn!(
                "no runtime to correct rate-limit reservations on; they stand until their windows end"
            );
            return;
        };
        runtime.spawn(async move {
            for (r, delta) in corrections {
                if let Err(error) = counters.adjust(&r.key, r.window, r.window_start, delta).await {
                    tracing::warn!(counter = %r.key, %error, "a rate-limit reservation could not be corrected; it stands until its window ends");
                }
            }
        });
    }
}

impl Drop for Admission {
    fn drop(&mut self) {
        self.correct(0, 0);
    }
}
