//! The domain's rate limiter on the in-memory counters: what it reserves, refuses, corrects
//! and gives back. (The same limiter on Redis across replicas is tested through the gateway.)

use std::num::{NonZeroU32, NonZeroU64};
use std::sync::Arc;
use std::time::Duration;

use morpheus_counters::MemoryCounters;
use morpheus_domain::ports::Counters;
use morpheus_domain::services::{
    Caller, LimitOwner, LimitRefusal, Quote, RateKind, RateLimiter, ResolvedModel,
};
use morpheus_domain::{
    ApiKeyId, KeyBudget, KeyPolicy, LimitMultiplier, ModelGroup, ModelId, ModelPrice,
    OperatorLimits, RateLimit, TokenUsage, Usd, UserId,
};

const KEY: ApiKeyId = ApiKeyId(7);
const USER: UserId = UserId(3);

fn model(name: &str) -> ResolvedModel {
    ResolvedModel {
        id: ModelId::parse(&format!("0x{:064x}", name.len())).unwrap(),
        name: name.to_owned(),
        model_type: morpheus_domain::ModelType::Llm,
    }
}

/// One dollar per million tokens in and out: a token costs 100 units (10⁻⁸ USD).
fn quote(prompt: u32, completion: u32) -> Quote {
    let price = ModelPrice {
        input_per_million: "1".parse().unwrap(),
        output_per_million: "1".parse().unwrap(),
    };
    let usage = TokenUsage {
        prompt_tokens: prompt,
        completion_tokens: completion,
    };
    Quote {
        price,
        usage,
        cost: price.cost(usage),
    }
}

fn caller(policy: &KeyPolicy) -> Caller<'_> {
    Caller {
        key: KEY,
        user: USER,
        policy,
        multiplier: LimitMultiplier::ONE,
    }
}

fn limiter(operator: OperatorLimits) -> (RateLimiter, Arc<MemoryCounters>) {
    let counters = Arc::new(MemoryCounters::new());
    (RateLimiter::new(counters.clone(), operator), counters)
}

/// Lets the spawned corrections run.
async fn settled() {
    for _ in 0..10 {
        tokio::task::yield_now().await;
    }
    tokio::time::sleep(Duration::from_millis(20)).await;
}

#[tokio::test]
async fn a_keys_rpm_admits_that_many_then_refuses_until_the_window_resets() {
    let policy = KeyPolicy {
        rpm: NonZeroU32::new(3),
        ..KeyPolicy::default()
    };
    let (limiter, _) = limiter(OperatorLimits::default());
    let m = model("m");
    let mut remaining = Vec::new();
    for _ in 0..3 {
        let admission = limiter.admit(&caller(&policy), &m, &quote(10, 10)).await;
        let status = admission.unwrap().status();
        remaining.push(status.requests.unwrap().remaining);
    }
    assert_eq!(remaining, [2, 1, 0]);
    match limiter.admit(&caller(&policy), &m, &quote(10, 10)).await {
        Err(LimitRefusal::RateLimited {
            kind: RateKind::Requests,
            owner: LimitOwner::Key,
            limit: 3,
            retry_after,
            status,
        }) => {
            assert!((1..=60).contains(&retry_after.as_secs()), "{retry_after:?}");
            assert_eq!(status.requests.unwrap().remaining, 0);
        }
        other => panic!("{other:?}"),
    }
}

#[tokio::test]
async fn tokens_are_reserved_from_the_estimate_and_corrected_to_the_real_count() {
    let policy = KeyPolicy {
        tpm: NonZeroU64::new(1000),
        ..KeyPolicy::default()
    };
    let (limiter, counters) = limiter(OperatorLimits::default());
    let m = model("m");
    let used = || async {
        counters
            .read("tpm:key:7", Duration::from_secs(60))
            .await
            .unwrap()
            .used
    };
    let admission = limiter
        .admit(&caller(&policy), &m, &quote(100, 500))
        .await
        .unwrap();
    assert_eq!(used().await, 600);
    // The provider says 100 in and 40 out.
    admission.settle(TokenUsage {
        prompt_tokens: 100,
        completion_tokens: 40,
    });
    settled().await;
    assert_eq!(used().await, 140);
    // Nothing served: every reserved token comes back.
    let admission = limiter
        .admit(&caller(&policy), &m, &quote(100, 500))
        .await
        .unwrap();
    assert_eq!(used().await, 740);
    drop(admission);
    settled().await;
    assert_eq!(used().await, 140);
    // A request that could never fit is refused as too large, not "try later".
    match limiter.admit(&caller(&policy), &m, &quote(600, 500)).await {
        Err(LimitRefusal::TokensOverLimit {
            limit: 1000,
            asked: 1100,
            ..
        }) => {}
        other => panic!("{other:?}"),
    }
}

#[tokio::test]
async fn concurrent_requests_cannot_overshoot_a_budget() {
    // 0.01 USD per hour; each request may cost 0.002 (2000 tokens at 1 USD per million).
    let budget = KeyBudget {
        window: Duration::from_secs(3600),
        limit: "0.01".parse().unwrap(),
    };
    let policy = Arc::new(KeyPolicy {
        budgets: vec![budget],
        ..KeyPolicy::default()
    });
    let (limiter, counters) = limiter(OperatorLimits::default());
    let tasks: Vec<_> = (0..40)
        .map(|_| {
            let (limiter, policy) = (limiter.clone(), policy.clone());
            tokio::spawn(async move {
                let admitted = limiter
                    .admit(&caller(&policy), &model("m"), &quote(1000, 1000))
                    .await;
                // Held until all have tried, so none gives back early.
                tokio::time::sleep(Duration::from_millis(50)).await;
                admitted
            })
        })
        .collect();
    let mut outcomes = Vec::new();
    for task in tasks {
        outcomes.push(task.await.unwrap());
    }
    let refused = outcomes.iter().filter(|o| o.is_err()).count();
    assert_eq!(refused, 35, "exactly five fit in the budget");
    for outcome in &outcomes {
        if let Err(refusal) = outcome {
            match refusal {
                LimitRefusal::BudgetExceeded {
                    resets_at, used, ..
                } => {
                    assert_eq!(*used, "0.01".parse::<Usd>().unwrap());
                    assert!(resets_at.timestamp() % 3600 == 0, "{resets_at}");
                }
                other => panic!("{other:?}"),
            }
        }
    }
    // The five used 0.0005 each in truth: the budget has 0.0075 left.
    for admission in outcomes.into_iter().flatten() {
        {
            admission.settle(TokenUsage {
                prompt_tokens: 250,
                completion_tokens: 250,
            });
        }
    }
    settled().await;
    let state = counters
        .read("budget:key:7:3600", budget.window)
        .await
        .unwrap();
    assert_eq!(state.used, 5 * 50_000);
    let uses = limiter.budget_use(KEY, &[budget]).await.unwrap();
    assert_eq!(uses[0].used, "0.0025".parse().unwrap());
    // A request that alone costs more than the whole budget is refused as such.
    match limiter
        .admit(&caller(&policy), &model("m"), &quote(10_000, 1))
        .await
    {
        Err(LimitRefusal::CostOverBudget { .. }) => {}
        other => panic!("{other:?}"),
    }
}

#[tokio::test]
async fn the_operators_limit_is_per_user_across_keys_and_scaled_by_the_multiplier() {
    let operator = OperatorLimits {
        default: RateLimit::default(),
        groups: vec![ModelGroup {
            name: "large".into(),
            models: vec!["big".into()],
            limit: RateLimit {
                rpm: NonZeroU32::new(2),
                tpm: None,
            },
        }],
    };
    let (limiter, _) = limiter(operator);
    let policy = KeyPolicy::default();
    let other_key = |multiplier| Caller {
        key: ApiKeyId(8),
        user: USER,
        policy: &policy,
        multiplier,
    };
    let big = model("big");
    assert!(
        limiter
            .admit(&caller(&policy), &big, &quote(1, 1))
            .await
            .is_ok()
    );
    assert!(
        limiter
            .admit(&other_key(LimitMultiplier::ONE), &big, &quote(1, 1))
            .await
            .is_ok()
    );
    // A third key of the same user is refused: the limit is the account's.
    match limiter
        .admit(&other_key(LimitMultiplier::ONE), &big, &quote(1, 1))
        .await
    {
        Err(LimitRefusal::RateLimited {
            owner: LimitOwner::Operator { group },
            limit: 2,
            ..
        }) => assert_eq!(group, "large"),
        other => panic!("{other:?}"),
    }
    // Models outside the group are not limited at all.
    assert!(
        limiter
            .admit(&caller(&policy), &model("small"), &quote(1, 1))
            .await
            .is_ok()
    );
    // Twice the limits: two more.
    let double: LimitMultiplier = "2".parse().unwrap();
    assert!(
        limiter
            .admit(&other_key(double), &big, &quote(1, 1))
            .await
            .is_ok()
    );
    assert!(
        limiter
            .admit(&other_key(double), &big, &quote(1, 1))
            .await
            .is_ok()
    );
    assert!(
        limiter
            .admit(&other_key(double), &big, &quote(1, 1))
            .await
            .is_err()
    );
}
