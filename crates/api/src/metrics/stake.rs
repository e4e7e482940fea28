//! The operator's stake caps, as metrics: refusals by cap, what today's opens staked, and the
//! node wallet's MOR at the last read.

use std::sync::atomic::AtomicU64;

use morpheus_domain::WEI_PER_NANO_MOR;
use morpheus_domain::services::{StakeGovernor, StakeLimit};
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;

/// The cap that refused: `daily_budget`, `max_bid_price`, `low_water_mark`, `user_sessions`,
/// `session_duration`.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct LimitLabels {
    pub limit: &'static str,
}

#[derive(Clone, Default)]
pub struct StakeMetrics {
    pub refusals: Family<LimitLabels, Counter>,
    pub committed_today: Gauge<f64, AtomicU64>,
    pub daily_budget: Gauge<f64, AtomicU64>,
    pub mor_balance: Gauge<f64, AtomicU64>,
}

impl StakeMetrics {
    pub fn register(registry: &mut Registry) -> Self {
        let metrics = Self::default();
        registry.register(
            "stake_refusals",
            "Session opens refused by one of the operator's stake caps, by cap (nothing was staked)",
            metrics.refusals.clone(),
        );
        registry.register(
            "stake_committed_today_mor",
            "MOR staked by this UTC day's session opens, reservations of opens in progress \
             included (all replicas together when the counters are shared)",
            metrics.committed_today.clone(),
        );
        registry.register(
            "stake_daily_budget_mor",
            "The daily stake budget (MORPHEUS_STAKE_DAILY_BUDGET_MOR); 0 when unset",
            metrics.daily_budget.clone(),
        );
        registry.register(
            "node_mor_balance_mor",
            "The node wallet's MOR at this replica's last read (for the low-water mark)",
            metrics.mor_balance.clone(),
        );
        metrics
    }

    /// Brings the gauges and the refusal counts up to date before an exposition.
    pub async fn refresh(&self, governor: &StakeGovernor) {
        let stats = governor.stats();
        for limit in StakeLimit::ALL {
            let counter = self.refusals.get_or_create(&LimitLabels {
                limit: limit.label(),
            });
            let total = stats.refusals(limit);
            if total > counter.get() {
                counter.inc_by(total - counter.get());
            }
        }
        let budget = governor.settings().daily_budget.unwrap_or(0);
        self.daily_budget.set(budget as f64 / 1e18);
        if let Some(nano) = governor.committed_today().await {
            self.committed_today.set(nano as f64 / 1e9);
        }
        if let Some(nano) = stats.last_balance_nano() {
            self.mor_balance
                .set((u128::from(nano) * WEI_PER_NANO_MOR) as f64 / 1e18);
        }
    }
}
