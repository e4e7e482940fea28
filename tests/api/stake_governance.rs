//! The operator's stake caps against the simulated proxy-router: each refuses with its code
//! before anything reaches the node's open (the simulator's `sessions_opened` says so), the
//! daily budget is exact under concurrent opens and gets a failed open's reservation back, the
//! low-water mark lets warm models through, and users' explicit sessions are capped.

use morpheus_gateway::configuration::Settings;
use morpheus_router_sim::{Fault, FaultKind, FaultRoute, SimBid, SimConfig, SimModel};
use serde_json::{Value, json};

use crate::helpers::{TestApp, error_body};
use crate::market::{MarketApp, ask, openai_error, sim_config, spawn_market_app_on};

/// 1e-6 MOR per second: a 900 s session stakes 0.0009 MOR on the simulator (price × duration).
const PRICE: u128 = 1_000_000_000_000;
const DURATION: u32 = 900;
const WEI_PER_MOR: u128 = 1_000_000_000_000_000_000;

/// Opens sessions of `model-0` … `model-9` at once, by `key`, each on its own task.
fn open_ten_at_once(
    client: &reqwest::Client,
    url: impl Fn(&str) -> String,
    key: &str,
) -> Vec<tokio::task::JoinHandle<reqwest::Response>> {
    (0..10)
        .map(|n| {
            let request = client
                .post(url(&format!(
                    "/api/v1/session/modelsession?model_id=model-{n}"
                )))
                .bearer_auth(key)
                .json(&json!({ "sessionDuration": DURATION }));
            tokio::spawn(async move { request.send().await.unwrap() })
        })
        .collect()
}

fn hex(seed: u64, width: usize) -> String {
    format!("0x{seed:0width$x}")
}

/// Model `n` (`model-n`) with one bid per price, the first rated best.
fn model(n: u64, prices: &[u128]) -> SimModel {
    SimModel {
        id: hex(0x1000 + n, 64),
        name: format!("model-{n}"),
        tags: vec!["LLM".to_owned()],
        created_at: 1_735_689_600,
        is_deleted: false,
        bids: prices
            .iter()
            .enumerate()
            .map(|(i, &price_per_second)| SimBid {
                id: hex(0x2000 + n * 16 + i as u64, 64),
                provider: hex(0x3000 + n * 16 + i as u64, 40),
                price_per_second,
                score: 0.9 - i as f64 / 10.0,
            })
            .collect(),
    }
}

async fn spawn(models: Vec<SimModel>, adjust: impl FnOnce(&mut Settings)) -> MarketApp {
    let config = SimConfig {
        models,
        ..sim_config()
    };
    spawn_market_app_on(config, adjust).await
}

/// `amount` wei as a decimal MOR setting.
fn mor(amount: u128) -> String {
    let fraction = format!("{:018}", amount % WEI_PER_MOR);
    format!(
        "{}.{}",
        amount / WEI_PER_MOR,
        fraction.trim_end_matches('0').to_owned() + "0"
    )
}

async fn open_model(app: &TestApp, key: &str, model: &str, seconds: u32) -> reqwest::Response {
    app.post_with_key(
        &format!("/api/v1/session/modelsession?model_id={model}"),
        key,
        Some(&json!({ "sessionDuration": seconds })),
    )
    .await
}

async fn open_bid(app: &TestApp, key: &str, bid: &str) -> reqwest::Response {
    app.post_with_key(
        &format!("/api/v1/session/bidsession?bid_id={bid}"),
        key,
        Some(&json!({ "sessionDuration": DURATION })),
    )
    .await
}

/// A refusal on a session route: status, `code`, and the limit named in `detail`.
async fn refused(r: reqwest::Response, status: u16, code: &str) -> Value {
    let body = error_body(r, status).await;
    assert_eq!(body["code"], code, "{body}");
    body
}

fn seconds_to_utc_midnight() -> i64 {
    let now = chrono::Utc::now().timestamp();
    86_400 - now.rem_euclid(86_400)
}

#[tokio::test]
async fn the_daily_budget_is_exact_under_concurrent_opens() {
    let models: Vec<SimModel> = (0..11).map(|n| model(n, &[PRICE])).collect();
    let one_open = PRICE * u128::from(DURATION);
    let app = spawn(models, |s| {
        s.stake_daily_budget_mor = Some(mor(3 * one_open));
        s.max_sessions_per_user = 0;
    })
    .await;
    let user = app.seed_automated_user().await;
    let opens = open_ten_at_once(&app.client, |path| app.url(path), &user.api_key);
    let (mut opened, mut exhausted) = (0, 0);
    for open in opens {
        let r = open.await.unwrap();
        match r.status().as_u16() {
            200 => opened += 1,
            503 => {
                let retry: i64 = r.headers()["retry-after"]
                    .to_str()
                    .unwrap()
                    .parse()
                    .unwrap();
                assert!(
                    (retry - seconds_to_utc_midnight()).abs() <= 5,
                    "Retry-After {retry} is not the end of the UTC day"
                );
                let body = refused(r, 503, "stake_budget_exhausted").await;
                assert!(
                    body["detail"]
                        .as_str()
                        .unwrap()
                        .contains("MORPHEUS_STAKE_DAILY_BUDGET_MOR"),
                    "{body}"
                );
                exhausted += 1;
            }
            other => panic!("unexpected status {other}"),
        }
    }
    let counted = app.sim.counters().sessions_opened;
    println!(
        "10 concurrent opens, budget for 3: {opened} opened, {exhausted} refused, simulator opened {counted}"
    );
    assert_eq!((opened, exhausted, counted), (3, 7, 3));
    // A chat that needs a pooled session is refused the same way, in OpenAI's shape.
    let r = app.chat(&user.api_key, &ask("model-10", "hi")).await;
    assert!(r.headers().contains_key("retry-after"));
    let error = openai_error(r, 503).await;
    assert_eq!(error["code"], "stake_budget_exhausted");
    assert_eq!(
        app.sim.counters().sessions_opened,
        3,
        "nothing more was staked"
    );
    assert_eq!(
        app.metric("morpheus_stake_refusals_total{limit=\"daily_budget\"}")
            .await,
        8.0
    );
    let committed = app.metric("morpheus_stake_committed_today_mor").await;
    println!("stake committed today: {committed} MOR");
    assert!((committed - 3.0 * one_open as f64 / 1e18).abs() < 1e-9);
}

#[tokio::test]
async fn a_failed_open_gives_its_reservation_back() {
    let models = vec![model(0, &[PRICE]), model(1, &[PRICE])];
    let app = spawn(models, |s| {
        s.stake_daily_budget_mor = Some(mor(PRICE * u128::from(DURATION)));
    })
    .await;
    let user = app.seed_user().await;
    app.sim.set_fault(Fault {
        route: FaultRoute::OpenSession,
        kind: FaultKind::Status {
            status: 500,
            body: r#"{"error":"no provider accepting session"}"#.into(),
            content_type: None,
        },
        times: Some(1),
    });
    let r = open_model(&app, &user.api_key, "model-0", DURATION).await;
    error_body(r, 502).await;
    // The budget holds exactly one open: it is whole again.
    let r = open_model(&app, &user.api_key, "model-0", DURATION).await;
    assert_eq!(r.status(), 200);
    let r = open_model(&app, &user.api_key, "model-1", DURATION).await;
    refused(r, 503, "stake_budget_exhausted").await;
    assert_eq!(app.sim.counters().sessions_opened, 1);
}

#[tokio::test]
async fn no_session_is_opened_on_a_bid_above_the_price_cap() {
    // model-0: the best-rated bid is too dear, the second is within the cap;
    // model-1: every bid is too dear.
    let models = vec![
        model(0, &[10 * PRICE, PRICE]),
        model(1, &[2 * PRICE, 3 * PRICE]),
    ];
    let cheap_bid = models[0].bids[1].id.clone();
    let dear_bid = models[1].bids[0].id.clone();
    let app = spawn(models, |s| {
        s.max_bid_price_per_second_mor = Some(mor(PRICE));
    })
    .await;
    let user = app.seed_automated_user().await;
    let r = app.chat(&user.api_key, &ask("model-0", "hi")).await;
    assert_eq!(r.status(), 200);
    assert_eq!(
        app.count(&format!(
            "SELECT COUNT(*) AS n FROM sessions WHERE bid_id = '{cheap_bid}' AND pooled"
        )),
        1,
        "the pool skipped the dear bid"
    );
    let r = app.chat(&user.api_key, &ask("model-1", "hi")).await;
    let error = openai_error(r, 503).await;
    assert_eq!(error["code"], "bid_price_above_limit");
    assert!(
        error["message"]
            .as_str()
            .unwrap()
            .contains("MORPHEUS_MAX_BID_PRICE_PER_SECOND_MOR")
    );
    let r = open_bid(&app, &user.api_key, &dear_bid).await;
    refused(r, 503, "bid_price_above_limit").await;
    let r = open_model(&app, &user.api_key, "model-1", DURATION).await;
    refused(r, 503, "bid_price_above_limit").await;
    // By model with some bids within the cap: opened on the best of those.
    let r = open_model(&app, &user.api_key, "model-0", DURATION).await;
    assert_eq!(r.status(), 200);
    assert_eq!(
        app.count(&format!(
            "SELECT COUNT(*) AS n FROM sessions WHERE bid_id = '{cheap_bid}' AND NOT pooled"
        )),
        1
    );
    assert_eq!(app.sim.counters().sessions_opened, 2);
    assert_eq!(
        app.metric("morpheus_stake_refusals_total{limit=\"max_bid_price\"}")
            .await,
        3.0
    );
}

#[tokio::test]
async fn below_the_low_water_mark_only_warm_models_open() {
    let models = vec![model(0, &[PRICE]), model(1, &[PRICE]), model(2, &[PRICE])];
    let app = spawn(models, |s| {
        s.mor_low_water_mark_mor = Some("15000".to_owned());
        s.warm_models = Some(format!("model-0, {}", hex(0x1002, 64)));
    })
    .await;
    app.sim.set_mor_balance(14_999 * WEI_PER_MOR);
    let user = app.seed_automated_user().await;
    // Warm by name and by id.
    let r = app.chat(&user.api_key, &ask("model-0", "hi")).await;
    assert_eq!(r.status(), 200);
    let r = open_model(&app, &user.api_key, "model-2", DURATION).await;
    assert_eq!(r.status(), 200);
    let r = app.chat(&user.api_key, &ask("model-1", "hi")).await;
    let error = openai_error(r, 503).await;
    assert_eq!(error["code"], "mor_below_low_water_mark");
    let r = open_model(&app, &user.api_key, "model-1", DURATION).await;
    let body = refused(r, 503, "mor_below_low_water_mark").await;
    assert!(
        body["detail"]
            .as_str()
            .unwrap()
            .contains("MORPHEUS_MOR_LOW_WATER_MARK_MOR")
    );
    let counters = app.sim.counters();
    println!(
        "below the mark: {} opened (warm), balance read {} time(s)",
        counters.sessions_opened, counters.balance_reads
    );
    assert_eq!(counters.sessions_opened, 2);
    assert_eq!(
        counters.balance_reads, 1,
        "read once within the cache period"
    );
    assert_eq!(app.metric("morpheus_node_mor_balance_mor").await, 14_999.0);
    assert_eq!(
        app.metric("morpheus_stake_refusals_total{limit=\"low_water_mark\"}")
            .await,
        2.0
    );
}

#[tokio::test]
async fn a_balance_that_cannot_be_read_does_not_hold_opens_back() {
    let app = spawn(vec![model(0, &[PRICE])], |s| {
        s.mor_low_water_mark_mor = Some("15000".to_owned());
        s.mor_balance_cache_seconds = 0;
    })
    .await;
    // Over the simulator's control surface this time.
    let r = app
        .client
        .post(format!("{}/__sim/balance", app.sim.base_url()))
        .json(&json!({ "mor": "0" }))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let user = app.seed_user().await;
    let r = open_model(&app, &user.api_key, "model-0", DURATION).await;
    refused(r, 503, "mor_below_low_water_mark").await;
    app.sim.set_fault(Fault {
        route: FaultRoute::Balance,
        kind: FaultKind::Status {
            status: 500,
            body: r#"{"error":"rpc timeout"}"#.into(),
            content_type: None,
        },
        times: Some(1),
    });
    let r = open_model(&app, &user.api_key, "model-0", DURATION).await;
    assert_eq!(r.status(), 200, "fail-open");
    assert_eq!(app.sim.counters().sessions_opened, 1);
}

#[tokio::test]
async fn a_budget_that_cannot_be_counted_opens_uncounted_or_refuses_as_the_operator_chose() {
    let one_open = PRICE * u128::from(DURATION);
    let open = spawn(vec![model(0, &[PRICE]), model(1, &[PRICE])], |s| {
        s.stake_daily_budget_mor = Some(mor(3 * one_open));
        // Nothing listens on port 1: every count fails.
        s.redis_url = Some("redis://127.0.0.1:1".to_owned());
    })
    .await;
    // Registered before the replica that fails closed starts: registration is throttled
    // through the same counters, so it would refuse.
    let user = open.seed_user().await;
    let r = open_model(&open, &user.api_key, "model-0", DURATION).await;
    assert_eq!(r.status(), 200, "fail-open: the open goes ahead, uncounted");
    assert_eq!(open.sim.counters().sessions_opened, 1);

    // A replica of the same gateway that fails closed refuses before anything is staked.
    let mut settings = open.settings.clone();
    settings.limits_fail_closed = true;
    let closed = morpheus_gateway::startup::Application::build(settings)
        .await
        .expect("the replica starts");
    let url = format!(
        "http://127.0.0.1:{}/api/v1/session/modelsession?model_id=model-1",
        closed.port()
    );
    tokio::spawn(closed.run_until_stopped());
    let r = open
        .client
        .post(url)
        .bearer_auth(&user.api_key)
        .json(&json!({ "sessionDuration": DURATION }))
        .send()
        .await
        .unwrap();
    assert!(r.headers().contains_key("retry-after"), "{:?}", r.headers());
    let body = refused(r, 503, "stake_budget_unavailable").await;
    println!("stake budget uncountable, fail-closed: {body}");
    assert_eq!(
        open.sim.counters().sessions_opened,
        1,
        "nothing more staked"
    );
}

#[tokio::test]
async fn explicit_sessions_are_capped_per_user_in_number_and_duration() {
    let models: Vec<SimModel> = (0..3).map(|n| model(n, &[PRICE])).collect();
    let bid_of_0 = models[0].bids[0].id.clone();
    let app = spawn(models, |s| s.max_sessions_per_user = 2).await;
    let user = app.seed_user().await;
    // The default cap on duration: 3600 s.
    let r = open_model(&app, &user.api_key, "model-0", 7200).await;
    let body = error_body(r, 422).await;
    assert_eq!(body["detail"][0]["loc"], json!(["body", "sessionDuration"]));
    assert_eq!(body["detail"][0]["type"], "session_duration_exceeded");
    assert!(
        body["detail"][0]["msg"]
            .as_str()
            .unwrap()
            .contains("MORPHEUS_MAX_SESSION_DURATION_SECONDS")
    );
    for n in 0..2 {
        let r = open_model(&app, &user.api_key, &format!("model-{n}"), 3600).await;
        assert_eq!(r.status(), 200);
    }
    let r = open_model(&app, &user.api_key, "model-2", DURATION).await;
    let body = refused(r, 429, "too_many_sessions").await;
    assert!(
        body["detail"]
            .as_str()
            .unwrap()
            .contains("MORPHEUS_MAX_SESSIONS_PER_USER")
    );
    // Every key of the user counts.
    let other = app.create_key(&user.access, "second").await;
    let other = other["key"].as_str().unwrap().to_owned();
    let r = open_model(&app, &other, "model-2", DURATION).await;
    refused(r, 429, "too_many_sessions").await;
    // The key's own session comes back as it is; a bid session replacing it adds none.
    let r = open_model(&app, &user.api_key, "model-0", DURATION).await;
    assert_eq!(r.status(), 200);
    let r = open_bid(&app, &user.api_key, &bid_of_0).await;
    assert_eq!(r.status(), 200);
    // Once one is closed there is room again.
    let r = app.close_session(&user.api_key, None).await;
    assert_eq!(r.status(), 200);
    let r = open_model(&app, &other, "model-2", DURATION).await;
    assert_eq!(r.status(), 200);
    assert_eq!(app.sim.counters().sessions_opened, 4);
    assert_eq!(
        app.metric("morpheus_stake_refusals_total{limit=\"user_sessions\"}")
            .await,
        2.0
    );
    assert_eq!(
        app.metric("morpheus_stake_refusals_total{limit=\"session_duration\"}")
            .await,
        1.0
    );
}

/// Three replicas behind nginx, on one PostgreSQL database and one Redis: the budget is the
/// deployment's, not each replica's. Runs when the suite is on PostgreSQL and
/// `MORPHEUS_TEST_REDIS_URL` names a Redis (`.ci/run` sets both).
#[tokio::test]
async fn the_daily_budget_is_exact_across_replicas_on_one_redis() {
    let redis = std::env::var("MORPHEUS_TEST_REDIS_URL")
        .ok()
        .filter(|u| !u.is_empty());
    let models: Vec<SimModel> = (0..10).map(|n| model(n, &[PRICE])).collect();
    let app = spawn(models, |_| {}).await;
    let (Some(redis), true) = (redis, app.is_postgres()) else {
        eprintln!("skipped: needs PostgreSQL and MORPHEUS_TEST_REDIS_URL");
        return;
    };
    let prefix = format!("morpheus-test:{}:", uuid::Uuid::new_v4().simple());
    let budget = mor(3 * PRICE * u128::from(DURATION));
    let replicas = crate::replicas::Replicas::start(
        &app.settings,
        3,
        &[
            ("MORPHEUS_REDIS_URL", &redis),
            ("MORPHEUS_REDIS_KEY_PREFIX", &prefix),
            ("MORPHEUS_STAKE_DAILY_BUDGET_MOR", &budget),
            ("MORPHEUS_MAX_SESSIONS_PER_USER", "0"),
        ],
    )
    .await;
    let base = replicas.url("");
    let user = crate::helpers::seed_user_at(&app.client, base.trim_end_matches('/')).await;
    let opens = open_ten_at_once(&app.client, |path| replicas.url(path), &user.api_key);
    let mut statuses = Vec::new();
    for open in opens {
        statuses.push(open.await.unwrap().status().as_u16());
    }
    let opened = statuses.iter().filter(|s| **s == 200).count();
    let refused = statuses.iter().filter(|s| **s == 503).count();
    let counted = app.sim.counters().sessions_opened;
    println!(
        "3 replicas, 10 concurrent opens, budget for 3: {opened} opened, {refused} refused, simulator opened {counted}"
    );
    crate::shared_counters::forget(&redis, &prefix).await;
    assert_eq!((opened, refused, counted), (3, 7, 3), "{statuses:?}");
}
