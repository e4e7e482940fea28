//! Credits: holds before requests, charges on what they used, the ledger's routes, the
//! operator's grants, reconciliation, and prices re-read on SIGHUP.

use std::sync::Arc;
use std::time::Duration;

use futures_util::StreamExt;
use morpheus_router_sim::SimConfig;
use serde_json::{Value, json};

use crate::helpers::{TestApp, error_body};
use crate::market::{MarketApp, openai_error, sim_config, spawn_market_app_on};

const MODEL: &str = "llama-3.3-70b";
/// Every request of these tests costs its output only: 1 USD per million output tokens.
const PRICES: &str = "[default]\ninput = 0\noutput = 1\n";
/// The simulator answers "Echo:" and the user's words, cut at `max_tokens`: with more words
/// than this, every answer is exactly `OUTPUT` tokens, so it costs exactly its hold.
const OUTPUT: u64 = 4;
/// 4 tokens at 1 USD per million, in 10^-8 USD.
const COST_UNITS: i64 = 400;

fn pricing_file(app_dir: &std::path::Path, text: &str) -> std::path::PathBuf {
    let path = app_dir.join(format!("prices-{}.toml", uuid::Uuid::new_v4()));
    std::fs::write(&path, text).unwrap();
    path
}

async fn billed_app(
    config: SimConfig,
    credit: &str,
    adjust: impl FnOnce(&mut morpheus_gateway::configuration::Settings),
) -> MarketApp {
    let prices = pricing_file(&std::env::temp_dir(), PRICES);
    let credit = credit.to_owned();
    spawn_market_app_on(config, move |s| {
        s.pricing_file = Some(prices);
        s.signup_credit_usd = credit;
        s.pool_max_sessions_per_model = 64;
        s.chat_shed_lateness_ms = 0;
        adjust(s);
    })
    .await
}

fn priced_ask(max_tokens: u64) -> Value {
    json!({
        "model": MODEL,
        "max_tokens": max_tokens,
        "messages": [{"role": "user", "content": "one two three four five six seven eight"}],
    })
}

async fn get(app: &TestApp, path: &str, credential: &str) -> reqwest::Response {
    app.client
        .get(app.url(path))
        .bearer_auth(credential)
        .send()
        .await
        .unwrap()
}

async fn balance(app: &TestApp, credential: &str) -> Value {
    let r = get(app, "/api/v1/billing/balance", credential).await;
    assert_eq!(r.status(), 200);
    r.json().await.unwrap()
}

/// The ledger's sum and the balance row, read from the database once no hold is pending.
async fn settled_books(app: &TestApp, user: i64) -> (i64, i64, i64) {
    for _ in 0..200 {
        let pending = app.count(&format!(
            "SELECT COUNT(*) AS n FROM credit_ledger WHERE user_id = {user} AND status = 'pending'"
        ));
        if pending == 0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let ledger = app.count(&format!(
        "SELECT CAST(COALESCE(SUM(amount), 0) AS BIGINT) AS n FROM credit_ledger \
         WHERE user_id = {user} AND status = 'posted'"
    ));
    let posted = app.count(&format!(
        "SELECT posted AS n FROM credit_balances WHERE user_id = {user}"
    ));
    let held = app.count(&format!(
        "SELECT held AS n FROM credit_balances WHERE user_id = {user}"
    ));
    (ledger, posted, held)
}

fn units(decimal: &Value) -> i64 {
    decimal
        .as_str()
        .unwrap()
        .parse::<morpheus_domain::Usd>()
        .unwrap()
        .units()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_hundred_concurrent_chats_with_credit_for_fifty_serve_exactly_fifty() {
    // Credit for exactly 50 requests.
    let credit = morpheus_domain::Usd::from_units(50 * COST_UNITS).to_string();
    let app = Arc::new(billed_app(sim_config(), &credit, |_| {}).await);
    let user = app.seed_automated_user().await;
    let tasks: Vec<_> = (0..200)
        .map(|_| {
            let (app, key) = (app.clone(), user.api_key.clone());
            tokio::spawn(async move {
                let r = app.chat(&key, &priced_ask(OUTPUT)).await;
                let status = r.status().as_u16();
                (status, r.json::<Value>().await.unwrap_or_default())
            })
        })
        .collect();
    let mut served = 0;
    let mut refused = 0;
    for task in tasks {
        let (status, body) = task.await.unwrap();
        match status {
            200 => served += 1,
            402 => {
                assert_eq!(body["error"]["type"], "insufficient_balance", "{body}");
                assert_eq!(body["error"]["code"], "insufficient_balance", "{body}");
                assert!(body["error"]["available"].is_string(), "{body}");
                assert_eq!(
                    units(&body["error"]["estimated_cost"]),
                    COST_UNITS,
                    "{body}"
                );
                refused += 1;
            }
            other => panic!("{other}: {body}"),
        }
    }
    let (ledger, posted, held) = settled_books(&app, user.id).await;
    println!(
        "credits: 200 concurrent chats, credit for 50 → {served} served, {refused} × 402; \
         ledger sum {ledger}, posted {posted}, held {held} (10^-8 USD)"
    );
    assert_eq!((served, refused), (50, 150));
    assert_eq!(held, 0);
    assert_eq!(posted, ledger, "the balance is the ledger's sum");
    assert_eq!(posted, 0, "every cent was spent, none beyond");
    let shown = balance(&app, &user.api_key).await;
    assert_eq!(units(&shown["total_available"]), 0);
    // The refused requests never reached the marketplace.
    assert!(app.sim.counters().chat_requests <= 50);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn with_credit_leases_a_hundred_chats_take_a_few_ledger_writes_and_the_books_balance() {
    let app = Arc::new(billed_app(sim_config(), "10.00", |_| {}).await);
    let user = app.seed_automated_user().await;
    // Ten at a time, ten rounds.
    for _ in 0..10 {
        let tasks: Vec<_> = (0..10)
            .map(|_| {
                let (app, key) = (app.clone(), user.api_key.clone());
                tokio::spawn(async move { app.chat(&key, &priced_ask(OUTPUT)).await.status() })
            })
            .collect();
        for task in tasks {
            assert_eq!(task.await.unwrap(), 200);
        }
    }
    // The lease is returned once idle (2 s); the books are read once nothing is pending.
    let (ledger, posted, held) = settled_books(&app, user.id).await;
    let count = |condition: &str| {
        app.count(&format!(
            "SELECT COUNT(*) AS n FROM credit_ledger WHERE user_id = {} AND {condition}",
            user.id
        ))
    };
    let leases = count("idempotency_key LIKE 'lease:%'");
    let exact_holds = count("idempotency_key LIKE 'hold:%' AND entry_type = 'usage_hold'");
    let charges = count("entry_type = 'usage_charge'");
    // One flush writes its charges with one timestamp.
    let flushes = app.count(&format!(
        "SELECT COUNT(DISTINCT created_at) AS n FROM credit_ledger \
         WHERE user_id = {} AND entry_type = 'usage_charge'",
        user.id
    ));
    println!(
        "credit leases: 100 chats → {leases} lease entries, {exact_holds} exact holds, {charges} charges \
         in {flushes} flushes; ledger sum {ledger}, posted {posted}, held {held} (10^-8 USD)"
    );
    assert_eq!(charges, 100);
    assert!(leases <= 3, "{leases} leases");
    // The first request of a run places an exact hold (it is settled into a charge); the
    // rest are served from leases.
    assert!(exact_holds <= 1, "{exact_holds} exact holds");
    let leased = app
        .metric(r#"morpheus_credit_holds_total{outcome="leased"}"#)
        .await;
    assert!(leased >= 99.0, "{leased} holds served from leases");
    // The user's ledger lists the sign-up credit and the charges, never a lease.
    let listed: Value = get(
        &app,
        "/api/v1/billing/transactions?limit=100",
        &user.api_key,
    )
    .await
    .json()
    .await
    .unwrap();
    assert_eq!(listed["total"], 101, "{listed}");
    assert!(
        listed["items"]
            .as_array()
            .unwrap()
            .iter()
            .all(|entry| entry["entry_type"] != "usage_hold"),
        "{listed}"
    );
    assert!(flushes <= 20, "{flushes} flushes for 100 charges");
    assert_eq!(held, 0, "every lease was returned");
    assert_eq!(posted, ledger, "the balance is the ledger's sum");
    assert_eq!(posted, 1_000_000_000 - 100 * COST_UNITS);
    // The usage route lists one charge per request, with its tokens.
    let usage: Value = get(&app, "/api/v1/billing/usage?limit=100", &user.api_key)
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(usage["total"], 100, "{usage}");
    assert_eq!(usage["items"][0]["tokens_output"], OUTPUT, "{usage}");
    assert_eq!(usage["items"][0]["estimated"], false, "{usage}");
}

/// Reads a stream's first `events` data events, then drops the connection.
async fn cut_after(app: &TestApp, key: &str, events: usize) {
    let mut body = priced_ask(1_000);
    body["stream"] = json!(true);
    body["messages"][0]["content"] = json!("w ".repeat(40));
    let r = app.chat(key, &body).await;
    assert_eq!(r.status(), 200);
    let mut stream = r.bytes_stream();
    let mut seen = 0;
    let mut text = String::new();
    while let Some(chunk) = stream.next().await {
        text.push_str(&String::from_utf8_lossy(&chunk.unwrap()));
        seen = text.matches("data: ").count();
        if seen >= events {
            break;
        }
    }
    assert!(seen >= events, "the stream ended early: {text}");
}

async fn the_charge(app: &TestApp, user: i64) -> Value {
    for _ in 0..200 {
        let found = app.count(&format!(
            "SELECT COUNT(*) AS n FROM credit_ledger WHERE user_id = {user} AND entry_type = 'usage_charge'"
        ));
        if found > 0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let estimated = app.count(&format!(
        "SELECT CAST(CASE WHEN estimated THEN 1 ELSE 0 END AS BIGINT) AS n FROM credit_ledger \
         WHERE user_id = {user} AND entry_type = 'usage_charge'"
    ));
    let output = app.count(&format!(
        "SELECT completion_tokens AS n FROM credit_ledger WHERE user_id = {user} AND entry_type = 'usage_charge'"
    ));
    let amount = app.count(&format!(
        "SELECT amount AS n FROM credit_ledger WHERE user_id = {user} AND entry_type = 'usage_charge'"
    ));
    json!({"estimated": estimated == 1, "output": output, "amount": amount})
}

fn slow_stream() -> SimConfig {
    SimConfig {
        chunk_delay: Duration::from_millis(40),
        ..sim_config()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stream_the_client_cut_is_charged_the_providers_final_count() {
    let app = billed_app(slow_stream(), "1", |_| {}).await;
    let user = app.seed_automated_user().await;
    cut_after(&app, &user.api_key, 3).await;
    let charge = the_charge(&app, user.id).await;
    println!("credits: a stream cut after 3 events, drained → {charge}");
    // "Echo:" and the 40 words: the whole answer the provider wrote, on its own count.
    assert_eq!(charge["estimated"], false, "{charge}");
    assert_eq!(charge["output"], 41, "{charge}");
    assert_eq!(charge["amount"], -4100, "{charge}");
    let (ledger, posted, held) = settled_books(&app, user.id).await;
    assert_eq!((posted, held), (ledger, 0));
    assert_eq!(
        app.metric(r#"morpheus_stream_drains_total{outcome="drained"}"#)
            .await,
        1.0
    );
    assert_eq!(
        app.metric(r#"morpheus_credit_settlements_total{outcome="charged"}"#)
            .await,
        1.0
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_a_drain_a_cut_stream_is_charged_the_text_delivered_marked_estimated() {
    let app = billed_app(slow_stream(), "1", |s| s.stream_drains = 0).await;
    let user = app.seed_automated_user().await;
    cut_after(&app, &user.api_key, 3).await;
    let charge = the_charge(&app, user.id).await;
    println!("credits: a stream cut after 3 events, no drain → {charge}");
    assert_eq!(charge["estimated"], true, "{charge}");
    assert_eq!(
        app.metric(r#"morpheus_stream_drains_total{outcome="skipped"}"#)
            .await,
        1.0
    );
    assert_eq!(
        app.metric(r#"morpheus_credit_settlements_total{outcome="estimated"}"#)
            .await,
        1.0
    );
    let output = charge["output"].as_i64().unwrap();
    assert!(
        (1..41).contains(&output),
        "charged on what was delivered, not on the whole answer: {charge}"
    );
}

#[tokio::test]
async fn a_hold_a_dead_process_left_is_voided_by_reconciliation() {
    let app = billed_app(sim_config(), "1", |s| s.hold_max_pending_seconds = 1).await;
    let user = app.seed_user().await;
    // The user's balance row (with the sign-up credit), then a hold as a process that died
    // before settling it leaves it: pending, its credit set aside.
    let before = balance(&app, &user.api_key).await;
    assert_eq!(units(&before["total_available"]), 100_000_000);
    app.execute_sql(&format!(
        "INSERT INTO credit_ledger (id, user_id, entry_type, status, amount, held_amount, \
         estimated, created_at, updated_at) VALUES ('00000000-0000-4000-8000-000000000001', \
         {}, 'usage_hold', 'pending', -5000, 5000, FALSE, '2020-01-01 00:00:00', \
         '2020-01-01 00:00:00')",
        user.id
    ));
    app.execute_sql(&format!(
        "UPDATE credit_balances SET held = held + 5000 WHERE user_id = {}",
        user.id
    ));
    let mut voided = false;
    for _ in 0..100 {
        voided = app.count(
            "SELECT COUNT(*) AS n FROM credit_ledger \
             WHERE id = '00000000-0000-4000-8000-000000000001' AND status = 'voided'",
        ) == 1;
        if voided {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(voided, "the stale hold was not voided");
    assert_eq!(
        app.metric(r#"morpheus_credit_settlements_total{outcome="reconciled"}"#)
            .await,
        1.0
    );
    let after = balance(&app, &user.api_key).await;
    assert_eq!(after["paid"]["pending_holds"], "0.00000000");
    assert_eq!(units(&after["total_available"]), 100_000_000);
}

#[tokio::test]
async fn the_ledger_routes_show_each_user_their_own_books() {
    let app = billed_app(sim_config(), "1", |s| {
        s.admin_token = Some(morpheus_gateway::secrets::secret("operator-token-123456"));
    })
    .await;
    let user = app.seed_automated_user().await;
    let other = app.seed_automated_user().await;
    for _ in 0..3 {
        assert_eq!(
            app.chat(&user.api_key, &priced_ask(OUTPUT)).await.status(),
            200
        );
    }
    settled_books(&app, user.id).await;
    // By access token and by API key alike.
    let by_token = balance(&app, &user.access).await;
    let by_key = balance(&app, &user.api_key).await;
    assert_eq!(by_token, by_key);
    assert_eq!(by_token["currency"], "USD");
    assert_eq!(
        units(&by_token["paid"]["posted_balance"]),
        100_000_000 - 3 * COST_UNITS
    );
    let page: Value = get(&app, "/api/v1/billing/transactions?limit=2", &user.api_key)
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(page["total"], 4, "sign-up credit and three charges: {page}");
    assert_eq!(page["items"].as_array().unwrap().len(), 2);
    assert_eq!(page["has_more"], true);
    let charges: Value = get(
        &app,
        "/api/v1/billing/transactions?entry_type=usage_charge",
        &user.access,
    )
    .await
    .json()
    .await
    .unwrap();
    assert_eq!(charges["total"], 3);
    let charge = &charges["items"][0];
    assert_eq!(charge["amount_paid"], "-0.00000400");
    assert_eq!(charge["tokens_output"], OUTPUT);
    assert_eq!(charge["output_price_per_million"], "1.00000000");
    assert_eq!(charge["estimated"], false);
    let usage: Value = get(
        &app,
        &format!("/api/v1/billing/usage?model={MODEL}"),
        &user.api_key,
    )
    .await
    .json()
    .await
    .unwrap();
    assert_eq!(usage["total"], 3, "{usage}");
    let spending: Value = get(&app, "/api/v1/billing/spending", &user.api_key)
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(spending["total"], "0.00001200", "{spending}");
    assert_eq!(spending["months"][0]["transaction_count"], 3);
    // The other user's books hold only their sign-up credit.
    let theirs: Value = get(&app, "/api/v1/billing/transactions", &other.api_key)
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(theirs["total"], 1, "{theirs}");
    // Bad parameters are 422s naming the parameter.
    for (query, field) in [
        ("transactions?entry_type=gift", "entry_type"),
        ("transactions?limit=0", "limit"),
        (
            "transactions?from=2026-02-01T00:00:00Z&to=2026-01-01T00:00:00Z",
            "to",
        ),
        ("spending?mode=gross2", "mode"),
        ("spending?year=abc", "year"),
        ("spending?year=1999", "year"),
        ("usage?offset=-1", "offset"),
    ] {
        let body = error_body(
            get(&app, &format!("/api/v1/billing/{query}"), &user.api_key).await,
            422,
        )
        .await;
        assert_eq!(body["detail"][0]["loc"][1], field, "{query}: {body}");
    }
    assert_eq!(
        get(&app, "/api/v1/billing/balance", "sk-nope")
            .await
            .status(),
        401
    );

    // The operator grants credit: with the token only, once per idempotency key.
    let grant = |token: &'static str, body: Value| {
        let app = &app;
        async move {
            app.client
                .post(app.url("/api/v1/billing/credits/adjust"))
                .header("x-admin-token", token)
                .json(&body)
                .send()
                .await
                .unwrap()
        }
    };
    let body = json!({"email": user.email, "amount_usd": "2.5", "idempotency_key": "t-1"});
    assert_eq!(
        grant("wrong-token-000000000", body.clone()).await.status(),
        403
    );
    let first: Value = grant("operator-token-123456", body.clone())
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(first["duplicate"], false, "{first}");
    assert_eq!(first["entry"]["amount_paid"], "2.50000000");
    let again: Value = grant("operator-token-123456", body)
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(again["duplicate"], true);
    assert_eq!(
        units(&again["balance"]["total_available"]),
        350_000_000 - 3 * COST_UNITS
    );
    let unknown = grant(
        "operator-token-123456",
        json!({"user_id": 1, "amount_usd": "1"}),
    )
    .await;
    assert_eq!(unknown.status(), 404);
    let bad = grant(
        "operator-token-123456",
        json!({"user_id": user.id, "amount_usd": "0.000000001"}),
    )
    .await;
    assert_eq!(
        error_body(bad, 422).await["detail"][0]["loc"][1],
        "amount_usd"
    );
}

#[tokio::test]
async fn the_cli_grants_credit_once_per_idempotency_key() {
    let app = billed_app(sim_config(), "0", |_| {}).await;
    let user = app.seed_user().await;
    let run = |args: Vec<String>| {
        let settings = app.settings.clone();
        async move {
            let args: Vec<&str> = args.iter().map(String::as_str).collect();
            // The sign-up credit is the process's setting: the same as the app's here.
            crate::admin::gateway(&settings, &args, &[("MORPHEUS_SIGNUP_CREDIT_USD", "0")]).await
        }
    };
    let grant = vec![
        "credits".to_owned(),
        "grant".to_owned(),
        "--email".to_owned(),
        user.email.clone(),
        "--usd".to_owned(),
        "12.5".to_owned(),
        "--idempotency-key".to_owned(),
        "invoice-7".to_owned(),
        "--json".to_owned(),
    ];
    let out = run(grant.clone()).await;
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let first: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(first["available"], "12.50000000");
    let again: Value = serde_json::from_slice(&run(grant).await.stdout).unwrap();
    assert_eq!(again["duplicate"], true);
    assert_eq!(
        units(&balance(&app, &user.api_key).await["total_available"]),
        1_250_000_000
    );
    let refused = run(vec![
        "credits".into(),
        "grant".into(),
        "--email".into(),
        user.email.clone(),
        "--usd".into(),
        "1e3".into(),
    ])
    .await;
    assert!(!refused.status.success());
}

#[tokio::test]
async fn without_credit_nothing_reaches_the_marketplace() {
    let app = billed_app(sim_config(), "0", |_| {}).await;
    let user = app.seed_automated_user().await;
    let before = app.quiet_sim().await;
    let error = openai_error(app.chat(&user.api_key, &priced_ask(OUTPUT)).await, 402).await;
    assert_eq!(error["available"], "0.00000000");
    assert_eq!(error["estimated_cost"], "0.00000400");
    assert_eq!(
        app.sim.counters().requests,
        before,
        "no session, no chat upstream"
    );
}

#[tokio::test]
async fn sighup_re_reads_the_prices_without_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let prices = pricing_file(dir.path(), PRICES);
    let file = prices.clone();
    let app = spawn_market_app_on(sim_config(), move |s| {
        s.pricing_file = Some(file);
        s.signup_credit_usd = "0.001".into();
    })
    .await;
    let user = app.seed_automated_user().await;
    let cost = |max_tokens| {
        let (app, key) = (&app, user.api_key.clone());
        async move {
            let r = app.chat(&key, &priced_ask(max_tokens)).await;
            if r.status() == 402 {
                return units(&openai_error(r, 402).await["estimated_cost"]);
            }
            panic!("expected a 402, got {}", r.status());
        }
    };
    // A request too large for the credit shows its estimated cost without spending anything.
    assert_eq!(cost(2_000).await, 200_000);
    std::fs::write(&prices, "[default]\ninput = 0\noutput = 3\n").unwrap();
    // SAFETY: sending a signal to this process; every gateway of the test binary listens.
    unsafe { libc::kill(libc::getpid(), libc::SIGHUP) };
    let mut now = 0;
    for _ in 0..100 {
        now = cost(2_000).await;
        if now != 200_000 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(now, 600_000, "the new price applies");
    // A broken file is refused; the prices in force stay.
    std::fs::write(&prices, "[default]\ninput = -1\noutput = 3\n").unwrap();
    unsafe { libc::kill(libc::getpid(), libc::SIGHUP) };
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(cost(2_000).await, 600_000);
    // The operator's limits come from the same file, re-read the same way: a request of more
    // tokens than a minute allows is refused before its credit is even looked at.
    std::fs::write(
        &prices,
        "[default]\ninput = 0\noutput = 3\n[limits]\ntpm = 1000\n",
    )
    .unwrap();
    unsafe { libc::kill(libc::getpid(), libc::SIGHUP) };
    let mut status = 0;
    for _ in 0..100 {
        let r = app.chat(&user.api_key, &priced_ask(2_000)).await;
        status = r.status().as_u16();
        if status == 400 {
            assert_eq!(openai_error(r, 400).await["code"], "request_too_large");
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(status, 400, "the new limit applies");
}
