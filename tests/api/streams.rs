//! Checklist D2 (mid-stream), D4, D5, B5 and G3: streamed chats against the simulator — how a
//! broken stream ends, that a slow one survives, that a client leaving stops the provider, that
//! concurrent streams never mix, and the exact SSE framing.

use std::collections::HashSet;
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures_util::StreamExt;
use morpheus_router_sim::FaultKind;
use serde_json::{Value, json};

use crate::market::{
    openai_error, sim_config, spawn_market_app, spawn_market_app_on, spawn_market_app_with,
    sse_events,
};
use crate::upstream_faults::{chat_fault, request, usage_count, warmed_user};

/// Eight words: the answer is a role chunk, `Echo: `, eight word chunks, a finish chunk and a
/// usage chunk, so a fault after 3 or 5 events always lands inside the answer.
const LONG: &str = "one two three four five six seven eight";

/// Checks a stream that broke after `chunks` events: those events (plain completion chunks),
/// then exactly one OpenAI error event with `code`, and no `[DONE]`.
fn broken_stream_problem(events: &[String], chunks: usize, code: &str) -> Option<String> {
    if events.iter().any(|e| e == "[DONE]") {
        return Some(format!("[DONE] after a failure: {events:?}"));
    }
    if events.len() != chunks + 1 {
        return Some(format!(
            "{} events, wanted {chunks} chunks and one error: {events:?}",
            events.len()
        ));
    }
    for event in &events[..chunks] {
        match serde_json::from_str::<Value>(event) {
            Ok(chunk)
                if chunk["object"] == "chat.completion.chunk" && chunk.get("error").is_none() => {}
            _ => return Some(format!("not a completion chunk: {event}")),
        }
    }
    let last: Value = match serde_json::from_str(&events[chunks]) {
        Ok(v) => v,
        Err(_) => return Some(format!("the last event is not JSON: {}", events[chunks])),
    };
    let error = &last["error"];
    if error["code"] != code
        || error["type"] != "server_error"
        || !error["message"].is_string()
        || error.get("param").is_none()
    {
        return Some(format!("wrong terminal event: {last}"));
    }
    None
}

/// Runs `REPEAT` concurrent streams that each meet `kind` and counts the ones that do not end
/// as `broken_stream_problem` wants; every one must leave an `incomplete` usage record.
async fn broken_stream_scenario(label: &str, kind: FaultKind, chunks: usize, code: &'static str) {
    const REPEAT: u32 = 20;
    let app = Arc::new(
        spawn_market_app_with(|s| {
            s.proxy_router_idle_timeout_ms = 500;
        })
        .await,
    );
    let user = warmed_user(&app).await;
    app.sim.set_fault(chat_fault(kind, Some(REPEAT)));
    let started = Instant::now();
    let runs: Vec<_> = (0..REPEAT)
        .map(|_| {
            let (app, key) = (app.clone(), user.api_key.clone());
            tokio::spawn(async move {
                let r = app.chat(&key, &request(LONG, true)).await;
                if r.status() != 200 {
                    return Some(format!("status {}", r.status()));
                }
                broken_stream_problem(&sse_events(r).await, chunks, code)
            })
        })
        .collect();
    let mut mismatches = Vec::new();
    for run in runs {
        if let Some(problem) = run.await.unwrap() {
            mismatches.push(problem);
        }
    }
    println!(
        "D4 {label}: {REPEAT} streams in {:?}, {chunks} chunks then `{code}` each, mismatches {}",
        started.elapsed(),
        mismatches.len()
    );
    assert!(mismatches.is_empty(), "{label}: {mismatches:#?}");

    let total = i64::from(REPEAT) + 1;
    assert_eq!(app.wait_for_usage(user.id, total).await, total);
    assert_eq!(
        usage_count(&app, user.id, "incomplete", 200),
        i64::from(REPEAT),
        "{}",
        app.dump_table("usage_records")
    );
}

#[tokio::test]
async fn a_stream_that_stalls_mid_answer_ends_with_one_timeout_event() {
    broken_stream_scenario(
        "stall after 5",
        FaultKind::StallAfterChunks { chunks: 5 },
        5,
        "upstream_timeout",
    )
    .await;
}

#[tokio::test]
async fn a_stream_cut_mid_answer_ends_with_one_cut_event() {
    broken_stream_scenario(
        "cut after 3",
        FaultKind::CutAfterChunks { chunks: 3 },
        3,
        "upstream_stream_cut",
    )
    .await;
}

#[tokio::test]
async fn a_stream_with_a_garbled_event_ends_with_one_invalid_event_error() {
    broken_stream_scenario(
        "garbage after 3",
        FaultKind::GarbageAfterChunks { chunks: 3 },
        3,
        "upstream_invalid_event",
    )
    .await;
}

#[tokio::test]
async fn a_stream_whose_connection_is_reset_ends_with_one_connection_lost_event() {
    broken_stream_scenario(
        "reset after 3",
        FaultKind::ResetAfterChunks { chunks: 3 },
        3,
        "upstream_connection_lost",
    )
    .await;
}

#[tokio::test]
async fn a_stream_failing_before_its_first_event_is_a_plain_http_error() {
    let app = spawn_market_app_with(|s| {
        s.proxy_router_idle_timeout_ms = 500;
        s.proxy_router_first_byte_timeout_ms = 500;
    })
    .await;
    let user = warmed_user(&app).await;
    let cases = [
        (
            "cut after 0",
            FaultKind::CutAfterChunks { chunks: 0 },
            502,
            "upstream_stream_cut",
        ),
        (
            "garbage after 0",
            FaultKind::GarbageAfterChunks { chunks: 0 },
            502,
            "upstream_invalid_event",
        ),
        (
            "stall after 0",
            FaultKind::StallAfterChunks { chunks: 0 },
            504,
            "upstream_timeout",
        ),
        (
            "stall before the head",
            FaultKind::StallBeforeFirstByte,
            504,
            "upstream_timeout",
        ),
    ];
    for (label, kind, status, code) in &cases {
        app.sim.set_fault(chat_fault(kind.clone(), Some(1)));
        let started = Instant::now();
        let r = app.chat(&user.api_key, &request(LONG, true)).await;
        let ct = r
            .headers()
            .get("content-type")
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_owned();
        let error = openai_error(r, *status).await;
        println!(
            "D4 early ({label}): {status} {code} after {:?}",
            started.elapsed()
        );
        assert!(ct.starts_with("application/json"), "{label}: {ct}");
        assert_eq!(error["code"], *code, "{label}: {error}");
    }
    let total = 1 + cases.len() as i64;
    assert_eq!(app.wait_for_usage(user.id, total).await, total);
    assert_eq!(usage_count(&app, user.id, "failed", 502), 2);
    assert_eq!(usage_count(&app, user.id, "failed", 504), 2);
}

#[tokio::test]
async fn a_slow_but_steady_stream_survives_to_done() {
    let app = spawn_market_app_with(|s| {
        s.proxy_router_idle_timeout_ms = 1_500;
    })
    .await;
    let user = warmed_user(&app).await;
    app.sim
        .set_fault(chat_fault(FaultKind::DripChunks { every_ms: 700 }, Some(1)));
    // `max_tokens: 1`: role, `Echo:`, finish and usage (the gateway asks for it, the client did
    // not, so it is not relayed) — three 700 ms gaps.
    let mut body = request("drip drip drip", true);
    body["max_tokens"] = json!(1);
    let started = Instant::now();
    let r = app.chat(&user.api_key, &body).await;
    assert_eq!(r.status(), 200);
    let events = sse_events(r).await;
    let elapsed = started.elapsed();
    println!(
        "D2 drip: {} events, one every 700 ms, idle timeout 1500 ms → [DONE] after {elapsed:?}",
        events.len()
    );
    assert_eq!(
        events.last().map(String::as_str),
        Some("[DONE]"),
        "{events:?}"
    );
    assert_eq!(events.len(), 4, "{events:?}");
    assert!(elapsed >= Duration::from_millis(2_000), "{elapsed:?}");
    assert_eq!(app.wait_for_usage(user.id, 2).await, 2);
    assert_eq!(usage_count(&app, user.id, "completed", 200), 2);
}

#[tokio::test]
async fn a_quiet_stream_gets_keep_alive_comments() {
    let app = spawn_market_app_with(|s| {
        s.sse_keep_alive_seconds = 1;
        s.proxy_router_idle_timeout_ms = 3_000;
    })
    .await;
    let user = warmed_user(&app).await;
    app.sim.set_fault(chat_fault(
        FaultKind::DripChunks { every_ms: 1_300 },
        Some(1),
    ));
    let mut body = request("slow provider", true);
    body["max_tokens"] = json!(1);
    let r = app.chat(&user.api_key, &body).await;
    assert_eq!(r.status(), 200);
    let raw = r.text().await.unwrap();
    let comments = raw.matches(": keep-alive\n\n").count();
    println!("G3 keep-alive: {comments} comments over three 1.3 s gaps (interval 1 s)");
    assert!(comments >= 2, "{raw}");
    assert!(raw.ends_with("data: [DONE]\n\n"), "{raw}");
}

// ---------------------------------------------------------------------------------------------
// D5: a client that leaves stops the upstream
// ---------------------------------------------------------------------------------------------

#[tokio::test]
async fn a_client_that_leaves_mid_stream_closes_the_upstream_within_a_second() {
    const REPEAT: usize = 20;
    // Without a drain: with one, a billed stream is read on to its final usage (billing.rs).
    let app = spawn_market_app_with(|s| s.stream_drains = 0).await;
    let user = warmed_user(&app).await;
    app.sim.set_chunk_delay(Duration::from_millis(50));
    // Forty words: about two seconds of stream, far more than the three events read.
    let text = (0..40)
        .map(|i| format!("w{i}"))
        .collect::<Vec<_>>()
        .join(" ");
    let mut waits = Vec::with_capacity(REPEAT);
    for _ in 0..REPEAT {
        let before = app.sim.counters().streams_cancelled;
        let r = app.chat(&user.api_key, &request(&text, true)).await;
        assert_eq!(r.status(), 200);
        let mut body = r.bytes_stream();
        let mut seen = Vec::new();
        while seen.windows(2).filter(|w| w == b"\n\n").count() < 3 {
            let chunk = body.next().await.expect("three events").expect("bytes");
            seen.extend_from_slice(&chunk);
        }
        drop(body);
        let dropped = Instant::now();
        loop {
            if app.sim.counters().streams_cancelled > before {
                break;
            }
            assert!(
                dropped.elapsed() < Duration::from_secs(2),
                "the upstream stream was not cancelled"
            );
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
        waits.push(dropped.elapsed());
    }
    waits.sort();
    let p50 = waits[REPEAT / 2];
    let max = waits[REPEAT - 1];
    println!("D5 disconnect: {REPEAT} drops, upstream closed after p50 {p50:?}, max {max:?}");
    assert!(max <= Duration::from_secs(1), "{waits:?}");

    let settle = Instant::now();
    while app.sim.counters().streams_active != 0 && settle.elapsed() < Duration::from_secs(2) {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let counters = app.sim.counters();
    assert_eq!(counters.streams_active, 0, "{counters:?}");
    assert_eq!(counters.streams_cancelled, REPEAT as u64, "{counters:?}");

    let total = REPEAT as i64 + 1;
    assert_eq!(app.wait_for_usage(user.id, total).await, total);
    assert_eq!(
        usage_count(&app, user.id, "client_closed", 200),
        REPEAT as i64,
        "{}",
        app.dump_table("usage_records")
    );
}

// ---------------------------------------------------------------------------------------------
// B5: no cross-talk between concurrent streams
// ---------------------------------------------------------------------------------------------

#[tokio::test]
async fn a_hundred_concurrent_streams_of_two_users_never_mix() {
    const PER_USER: usize = 50;
    let app = Arc::new(spawn_market_app().await);
    let alice = app.seed_automated_user().await;
    let bob = app.seed_automated_user().await;
    // Alice's messages have three words and Bob's five, so a usage record booked to the wrong
    // user shows in its token counts.
    let runs: Vec<_> = (0..2 * PER_USER)
        .map(|i| {
            let app = app.clone();
            let (key, filler) = if i % 2 == 0 {
                (alice.api_key.clone(), "from alice")
            } else {
                (bob.api_key.clone(), "from bob right now")
            };
            let nonce = format!("nonce-{}", uuid::Uuid::new_v4().simple());
            tokio::spawn(async move {
                let r = app
                    .chat(&key, &request(&format!("{nonce} {filler}"), true))
                    .await;
                assert_eq!(r.status(), 200);
                (nonce, sse_events(r).await)
            })
        })
        .collect();
    let mut results = Vec::new();
    for run in runs {
        results.push(run.await.unwrap());
    }
    let nonces: HashSet<&str> = results.iter().map(|(n, _)| n.as_str()).collect();
    assert_eq!(nonces.len(), 2 * PER_USER);
    let (mut chunks, mut mismatches) = (0, Vec::new());
    for (nonce, events) in &results {
        if events.last().map(String::as_str) != Some("[DONE]") {
            mismatches.push(format!("{nonce}: no [DONE]"));
            continue;
        }
        let mut ids = HashSet::new();
        let mut text = String::new();
        for event in &events[..events.len() - 1] {
            chunks += 1;
            let chunk: Value = serde_json::from_str(event).expect("a JSON chunk");
            ids.insert(chunk["id"].as_str().unwrap_or_default().to_owned());
            if let Some(piece) = chunk["choices"][0]["delta"]["content"].as_str() {
                text.push_str(piece);
            }
            let others = nonces
                .iter()
                .filter(|n| **n != nonce.as_str() && event.contains(**n))
                .count();
            if others > 0 {
                mismatches.push(format!("{nonce}: a chunk names another request: {event}"));
            }
        }
        if ids.len() != 1 {
            mismatches.push(format!("{nonce}: {} ids in one stream", ids.len()));
        }
        if !text.contains(nonce.as_str()) || text.matches("nonce-").count() != 1 {
            mismatches.push(format!("{nonce}: reassembled {text:?}"));
        }
    }
    println!(
        "B5: {} streams, {chunks} chunks checked, mismatches {}",
        results.len(),
        mismatches.len()
    );
    assert!(mismatches.is_empty(), "{mismatches:#?}");

    for (user, words) in [(&alice, 3), (&bob, 5)] {
        assert_eq!(
            app.wait_for_usage(user.id, PER_USER as i64).await,
            PER_USER as i64
        );
        let right = app.count(&format!(
            "SELECT COUNT(*) AS n FROM usage_records u JOIN sessions s ON s.id = u.session_id \
             WHERE u.user_id = {id} AND u.outcome = 'completed' \
             AND u.status = 200 AND u.stream AND u.prompt_tokens = {words} \
             AND u.completion_tokens = {answer}",
            id = user.id,
            answer = words + 1,
        ));
        assert_eq!(
            right,
            PER_USER as i64,
            "user {}: {}",
            user.id,
            app.dump_table("usage_records")
        );
    }
    assert_eq!(
        app.count("SELECT COUNT(*) AS n FROM usage_records"),
        2 * PER_USER as i64
    );
    println!("B5: usage records alice {PER_USER}, bob {PER_USER}, misattributed 0");
}

// ---------------------------------------------------------------------------------------------
// G3: SSE framing
// ---------------------------------------------------------------------------------------------

/// Checks the body byte by byte: `data: <one-line JSON>\n\n` frames, then `data: [DONE]\n\n`
/// and nothing after it. Returns the number of JSON frames.
fn check_framing(body: &[u8]) -> usize {
    let text = std::str::from_utf8(body).expect("UTF-8");
    assert!(text.ends_with("data: [DONE]\n\n"), "{text:?}");
    let frames: Vec<&str> = text.split_inclusive("\n\n").collect();
    assert_eq!(frames.concat(), text);
    let (last, chunks) = frames.split_last().unwrap();
    assert_eq!(*last, "data: [DONE]\n\n");
    for frame in chunks {
        let payload = frame
            .strip_prefix("data: ")
            .and_then(|f| f.strip_suffix("\n\n"))
            .unwrap_or_else(|| panic!("not a data frame: {frame:?}"));
        assert!(!payload.contains('\n'), "a multi-line frame: {frame:?}");
        assert!(!payload.contains("[DONE]"), "{frame:?}");
        let chunk: Value =
            serde_json::from_str(payload).unwrap_or_else(|_| panic!("not JSON: {frame:?}"));
        assert_eq!(chunk["object"], "chat.completion.chunk", "{frame:?}");
    }
    chunks.len()
}

#[tokio::test]
async fn streams_are_framed_exactly_and_never_compressed() {
    // A node older than 2025-11-19, which sends no `[DONE]`: the gateway adds it.
    let app = spawn_market_app_on(
        morpheus_router_sim::SimConfig {
            done_marker: false,
            ..sim_config()
        },
        |_| {},
    )
    .await;
    let user = warmed_user(&app).await;
    for gzip in [false, true] {
        let mut req = app
            .client
            .post(app.url("/api/v1/chat/completions"))
            .bearer_auth(&user.api_key)
            .json(&request("frame me exactly", true));
        if gzip {
            req = req.header("accept-encoding", "gzip, deflate, br");
        }
        let r = req.send().await.unwrap();
        assert_eq!(r.status(), 200);
        let headers = r.headers().clone();
        assert_eq!(headers["content-type"], "text/event-stream");
        assert_eq!(headers["cache-control"], "no-cache");
        assert!(headers.get("content-length").is_none(), "{headers:?}");
        assert!(headers.get("content-encoding").is_none(), "{headers:?}");
        let body = r.bytes().await.unwrap();
        let frames = check_framing(&body);
        println!(
            "G3 (accept-encoding gzip: {gzip}): {frames} JSON frames + [DONE], {} bytes, \
             no content-length, no content-encoding",
            body.len()
        );
        // Role, `Echo: ` and three words, finish (the usage chunk only for clients that ask).
        assert_eq!(frames, 6);
    }
}

#[tokio::test]
async fn events_are_relayed_as_they_arrive() {
    let app = spawn_market_app().await;
    let user = warmed_user(&app).await;
    app.sim.set_chunk_delay(Duration::from_millis(100));
    // Eight events (role, `Echo: `, four words, finish, usage): seven 100 ms gaps.
    let started = Instant::now();
    let r = app
        .chat(&user.api_key, &request("one two three four", true))
        .await;
    assert_eq!(r.status(), 200);
    let mut body = r.bytes_stream();
    body.next().await.expect("a first event").expect("bytes");
    let first_at = started.elapsed();
    while body.next().await.is_some() {}
    let all_at = started.elapsed();
    println!("G3 relay: first event after {first_at:?}, whole stream after {all_at:?}");
    assert!(
        all_at.saturating_sub(first_at) >= Duration::from_millis(500),
        "the first event waited for the rest: first {first_at:?}, all {all_at:?}"
    );
}

#[tokio::test]
async fn an_upstream_that_sends_done_itself_gets_exactly_one() {
    // Today's node relays the backend's `[DONE]`.
    let app = spawn_market_app().await;
    let sim = app.sim.clone();
    let user = warmed_user(&app).await;
    let r = app
        .chat(&user.api_key, &request("frame me exactly", true))
        .await;
    assert_eq!(r.status(), 200);
    let body = r.bytes().await.unwrap();
    assert_eq!(check_framing(&body), 6);
    let text = std::str::from_utf8(&body).unwrap();
    assert_eq!(text.matches("[DONE]").count(), 1, "{text}");
    println!("G3 (upstream sends [DONE]): 7 JSON frames + one [DONE]");
    assert_eq!(sim.counters().streams_completed, 1);
}

#[tokio::test]
async fn a_client_that_leaves_while_the_provider_is_quiet_closes_the_upstream_within_a_second() {
    // Without a drain: with one, a billed stream is read on to its final usage (billing.rs).
    let app = spawn_market_app_with(|s| s.stream_drains = 0).await;
    let user = warmed_user(&app).await;
    // Three seconds between chunks: nothing is written to the client after the first event,
    // so only the closed connection itself can tell the gateway the client left.
    app.sim.set_chunk_delay(Duration::from_millis(3_000));
    let before = app.sim.counters().streams_cancelled;
    let r = app
        .chat(&user.api_key, &request("a slow thinker", true))
        .await;
    assert_eq!(r.status(), 200);
    let mut body = r.bytes_stream();
    body.next().await.expect("the first event").expect("bytes");
    drop(body);
    let dropped = Instant::now();
    while app.sim.counters().streams_cancelled == before {
        assert!(
            dropped.elapsed() < Duration::from_secs(1),
            "the upstream stream was not cancelled within a second"
        );
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    println!(
        "D5 disconnect with a quiet provider: upstream closed after {:?}",
        dropped.elapsed()
    );
    assert_eq!(app.wait_for_usage(user.id, 2).await, 2);
    assert_eq!(usage_count(&app, user.id, "client_closed", 200), 1);
}

#[tokio::test]
async fn a_client_that_leaves_a_whole_answer_early_stops_the_request_too() {
    let app = spawn_market_app().await;
    let user = warmed_user(&app).await;
    // The provider takes four seconds; the client gives up after 300 ms.
    app.sim
        .set_fault(chat_fault(FaultKind::Latency { ms: 4_000 }, Some(1)));
    let impatient = reqwest::Client::builder()
        .timeout(Duration::from_millis(300))
        .build()
        .unwrap();
    let started = Instant::now();
    let r = impatient
        .post(app.url("/api/v1/chat/completions"))
        .bearer_auth(&user.api_key)
        .json(&request("take your time", false))
        .send()
        .await;
    assert!(r.is_err(), "the client timed out");
    // The request's work (and its upstream call) is dropped with the connection: the usage
    // record says so long before the provider would have answered.
    let query = format!(
        "SELECT COUNT(*) AS n FROM usage_records WHERE user_id = {} AND outcome = 'client_closed' \
         AND status = 499",
        user.id
    );
    while app.count(&query) == 0 {
        assert!(
            started.elapsed() < Duration::from_millis(2_000),
            "the request kept running after its client left"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    println!(
        "D5 non-streaming: request dropped, recorded after {:?} (client left at 300 ms)",
        started.elapsed()
    );
}
