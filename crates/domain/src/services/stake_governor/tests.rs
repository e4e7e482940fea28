//! The caps on fake ports: estimates and what an open teaches them, the budget's exactness
//! under concurrent reservations, the low-water mark's cache and fail-open, and the pool and
//! the explicit opens refusing before anything is staked.

use std::collections::HashMap;

use async_trait::async_trait;

use super::*;
use crate::services::{ChatSessionError, OpenSessionError, SessionService};
use crate::testing::{FakeMarket, SessionWorld};

/// Counters in one process's memory, enough for these tests.
#[derive(Default)]
struct TestCounters {
    used: Mutex<HashMap<(String, i64), u64>>,
}

#[async_trait]
impl Counters for TestCounters {
    async fn take(&self, takes: &[Take]) -> Result<Taken, CounterFailure> {
        let now = chrono::Utc::now().timestamp();
        let mut used = self.used.lock().unwrap();
        let mut states = Vec::new();
        let mut refused_by = None;
        for (i, take) in takes.iter().enumerate() {
            let start = window_start(now, take.window);
            let current = *used.get(&(take.key.clone(), start)).unwrap_or(&0);
            if refused_by.is_none() && current + take.amount > take.limit {
                refused_by = Some(i);
            }
            states.push(CounterState {
                used: current,
                limit: take.limit,
                window_start: start,
                resets_at: start + window_seconds(take.window),
            });
        }
        if refused_by.is_none() {
            for (take, state) in takes.iter().zip(states.iter_mut()) {
                state.used += take.amount;
                used.insert((take.key.clone(), state.window_start), state.used);
            }
        }
        Ok(Taken {
            counters: states,
            refused_by,
            degraded: false,
            now,
        })
    }

    async fn adjust(
        &self,
        key: &str,
        _window: Duration,
        window_start: i64,
        delta: i64,
    ) -> Result<(), CounterFailure> {
        let mut used = self.used.lock().unwrap();
        let entry = used.entry((key.to_owned(), window_start)).or_default();
        *entry = entry.saturating_add_signed(delta);
        Ok(())
    }
}

const PRICE: u128 = 1_000_000_000_000; // 1e-6 MOR per second
const WARM: &str = "warm-model";

fn governor(w: &SessionWorld, settings: StakeSettings) -> (StakeGovernor, Arc<TestCounters>) {
    let counters = Arc::new(TestCounters::default());
    let governor = StakeGovernor::new(
        settings,
        counters.clone(),
        w.market.clone(),
        w.sessions.catalogue().clone(),
    );
    (governor, counters)
}

fn settings() -> StakeSettings {
    StakeSettings {
        balance_cache: Duration::from_secs(60),
        stake_factor_ppm: PPM,
        ..StakeSettings::default()
    }
}

/// One open's stake at `PRICE` for the tests' duration.
fn one_open() -> u128 {
    PRICE * u128::from(SessionWorld::terms().duration.seconds())
}

async fn used(counters: &TestCounters) -> u64 {
    counters.read(BUDGET_KEY, DAY).await.unwrap().used
}

#[tokio::test]
async fn the_estimate_follows_the_stake_the_last_open_showed() {
    let w = SessionWorld::new(true).await;
    let (g, _) = governor(&w, settings());
    let terms = SessionWorld::terms();
    assert_eq!(g.estimate(PRICE, terms), one_open());
    // The real node stakes supply ÷ budget times price × duration (338 here).
    let session = UpstreamSession {
        id: SessionId::parse(&format!("0x{:064x}", 1)).unwrap(),
        user: String::new(),
        provider: String::new(),
        model_agent_id: String::new(),
        bid_id: String::new(),
        stake: 338 * PRICE * 600,
        price_per_second: PRICE,
        opened_at: 1_000,
        ends_at: 1_600,
        closed_at: 0,
    };
    g.learn(&session);
    assert_eq!(g.estimate(PRICE, terms), 338 * one_open());
    assert_eq!(estimate_stake(3, 1_500_000), 5, "rounded up");
}

#[tokio::test]
async fn concurrent_reservations_never_pass_the_budget_and_failed_opens_give_theirs_back() {
    let w = SessionWorld::new(true).await;
    let (g, counters) = governor(
        &w,
        StakeSettings {
            daily_budget: Some(3 * one_open()),
            ..settings()
        },
    );
    let terms = SessionWorld::terms();
    let attempts = (0..10).map(|_| {
        let g = g.clone();
        tokio::spawn(async move { g.reserve(PRICE, terms).await })
    });
    let mut held = Vec::new();
    let mut refused = 0;
    for attempt in attempts {
        match attempt.await.unwrap() {
            Ok(reservation) => held.push(reservation),
            Err(StakeRefusal::BudgetExhausted { retry_after, .. }) => {
                assert!(retry_after <= DAY && retry_after >= Duration::from_secs(1));
                refused += 1;
            }
            Err(other) => panic!("{other:?}"),
        }
    }
    println!("reserved {} of 10, refused {refused}", held.len());
    assert_eq!((held.len(), refused), (3, 7));
    assert_eq!(g.stats().refusals(StakeLimit::DailyBudget), 7);
    assert_eq!(
        u128::from(used(&counters).await),
        3 * one_open() / WEI_PER_NANO_MOR
    );
    // A failed open gives its share back; a dropped reservation too.
    held.pop().unwrap().release().await;
    drop(held.pop());
    tokio::time::sleep(Duration::from_millis(50)).await;
    assert_eq!(
        u128::from(used(&counters).await),
        one_open() / WEI_PER_NANO_MOR
    );
    assert!(g.reserve(PRICE, terms).await.is_ok());
    // Settled to a smaller real stake: the difference comes back.
    let mut session = w.market.chain.lock().unwrap().values().next().cloned();
    assert!(session.is_none(), "nothing was opened on the fake chain");
    session = Some(UpstreamSession {
        id: SessionId::parse(&format!("0x{:064x}", 9)).unwrap(),
        user: String::new(),
        provider: String::new(),
        model_agent_id: String::new(),
        bid_id: String::new(),
        stake: one_open() / 2,
        price_per_second: PRICE / 2,
        opened_at: 0,
        ends_at: u64::from(terms.duration.seconds()),
        closed_at: 0,
    });
    held.pop().unwrap().settle(session.as_ref()).await;
    assert_eq!(
        u128::from(used(&counters).await),
        (one_open() + one_open() / 2) / WEI_PER_NANO_MOR
    );
}

#[tokio::test]
async fn below_the_low_water_mark_only_warm_models_open_and_a_failed_read_lets_them_through() {
    let w = SessionWorld::new(true).await;
    let mark = 15_000 * WEI_PER_MOR;
    let (g, _) = governor(
        &w,
        StakeSettings {
            low_water_mark: Some(mark),
            warm_models: vec![WARM.to_owned(), SessionWorld::MODEL_NAME.to_uppercase()],
            ..settings()
        },
    );
    *w.market.mor_balance.lock().unwrap() = mark - 1;
    let cold = ModelId::parse(&format!("0x{:064x}", 0xc01d)).unwrap();
    assert!(g.is_warm(&w.model), "warm by name, any case");
    assert_eq!(g.check_low_water_mark(&w.model).await, Ok(()));
    assert_eq!(
        g.check_low_water_mark(&cold).await,
        Err(StakeRefusal::BelowLowWaterMark { mark })
    );
    assert_eq!(g.stats().last_balance_nano(), Some(nano_mor_ceil(mark - 1)));
    // Read once per cache period.
    *w.market.mor_balance.lock().unwrap() = mark;
    assert!(g.check_low_water_mark(&cold).await.is_err());
    assert_eq!(w.market.balance_reads.load(Relaxed), 1);

    let (fresh, _) = governor(
        &w,
        StakeSettings {
            low_water_mark: Some(mark),
            ..settings()
        },
    );
    FakeMarket::fail_next(
        &w.market.balance_failures,
        MarketplaceError::Unreachable("down".to_owned()),
    );
    assert_eq!(fresh.check_low_water_mark(&cold).await, Ok(()), "fail-open");
}

fn governed(w: &SessionWorld, settings: StakeSettings) -> (SessionService, Arc<TestCounters>) {
    let (g, counters) = governor(w, settings);
    (w.sessions.clone().with_governor(g), counters)
}

fn bids(w: &SessionWorld) -> Vec<BidId> {
    w.market.bids.lock().unwrap().keys().cloned().collect()
}

#[tokio::test]
async fn the_pool_skips_bids_above_the_price_cap_and_refuses_when_none_is_left() {
    let w = SessionWorld::new(true).await;
    let [first, second] = <[BidId; 2]>::try_from(bids(&w)).unwrap();
    // The best-rated bid is the dear one.
    w.market.set_price(&first, 10 * PRICE);
    w.market.set_price(&second, PRICE);
    let (sessions, counters) = governed(
        &w,
        StakeSettings {
            max_price_per_second: Some(PRICE),
            daily_budget: Some(10 * one_open()),
            ..settings()
        },
    );
    let lease = sessions
        .pool()
        .claim(&w.model, SessionWorld::terms(), w.owner)
        .await
        .unwrap();
    assert_eq!(lease.session().bid_id.as_ref(), Some(&second));
    assert_eq!(
        u128::from(used(&counters).await),
        one_open() / WEI_PER_NANO_MOR,
        "settled to the real stake"
    );
    drop(lease);

    let w = SessionWorld::new(true).await;
    for bid in bids(&w) {
        w.market.set_price(&bid, 2 * PRICE);
    }
    let (sessions, _) = governed(
        &w,
        StakeSettings {
            max_price_per_second: Some(PRICE),
            ..settings()
        },
    );
    let got = sessions
        .pool()
        .claim(&w.model, SessionWorld::terms(), w.owner)
        .await;
    assert!(
        matches!(
            got,
            Err(ChatSessionError::Stake(
                StakeRefusal::BidPriceAboveLimit { .. }
            ))
        ),
        "{got:?}"
    );
    assert_eq!(w.market.opens(), 0, "nothing was staked");
}

#[tokio::test]
async fn explicit_opens_are_capped_per_user_in_number_and_duration() {
    let w = SessionWorld::new(false).await;
    let (sessions, _) = governed(
        &w,
        StakeSettings {
            max_user_sessions: Some(1),
            max_session_duration: Some(1800),
            ..settings()
        },
    );
    let policy = KeyPolicy::default();
    let long = SessionTerms {
        duration: SessionDuration::parse(3600).unwrap(),
        ..SessionWorld::terms()
    };
    let got = sessions
        .open_for_model(w.owner, SessionWorld::MODEL_NAME, long, &policy)
        .await;
    assert!(
        matches!(
            got,
            Err(OpenSessionError::Stake(StakeRefusal::DurationExceeded {
                requested: 3600,
                max: 1800
            }))
        ),
        "{got:?}"
    );
    let short = SessionTerms {
        duration: SessionDuration::parse(900).unwrap(),
        ..SessionWorld::terms()
    };
    sessions
        .open_for_model(w.owner, SessionWorld::MODEL_NAME, short, &policy)
        .await
        .unwrap();
    // Asking again returns the same session: not a new one, not refused.
    let again = sessions
        .open_for_model(w.owner, SessionWorld::MODEL_NAME, short, &policy)
        .await
        .unwrap();
    assert!(!again.created);
    // Another key of the same user would be a second session.
    let other_key = crate::services::SessionOwner {
        key: ApiKeyId::random(),
        ..w.owner
    };
    let got = sessions
        .open_for_model(other_key, SessionWorld::MODEL_NAME, short, &policy)
        .await;
    assert!(
        matches!(
            got,
            Err(OpenSessionError::Stake(StakeRefusal::TooManySessions {
                limit: 1
            }))
        ),
        "{got:?}"
    );
    // A bid session replacing the key's own session does not add one.
    let bid = bids(&w).remove(0);
    sessions
        .open_for_bid(w.owner, &bid, short, &policy)
        .await
        .unwrap();
    assert_eq!(w.market.opens(), 2);
}
