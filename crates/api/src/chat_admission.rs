//! Load shedding for `POST /api/v1/chat/completions`: when the worker thread serving a chat
//! is running late — its ready tasks wait longer than `max_lateness` before they run — the
//! chat is answered 503 `gateway_overloaded` with `Retry-After` at once, instead of joining a
//! queue it would leave too late to be useful.
//!
//! Why lateness and not a count of requests in flight: requests waiting for a provider are
//! cheap and may rightly number in the thousands (answers take seconds), while a saturated
//! CPU shows up everywhere at once — in requests not yet parsed, in answers that arrived but
//! were not relayed yet. How late a worker's timer fires measures exactly the wait that every
//! request on that worker is about to get, whatever it is waiting for.
//!
//! Each worker measures itself: a probe task sleeps [`PROBE_EVERY`] and records how much
//! later than asked it woke up, and how much of that time the worker thread spent running
//! (from `/proc/thread-self/schedstat`), both smoothed. A worker sheds only when it is late
//! *and* busy with its own work: lateness alone also comes from other processes taking the
//! core, which shedding would not cure. The probe runs only while chats arrive, so an idle
//! gateway does not wake up for it.

use std::cell::Cell;
use std::time::{Duration, Instant};

use actix_web::body::{EitherBody, MessageBody};
use actix_web::dev::{ServiceRequest, ServiceResponse};
use actix_web::http::StatusCode;
use actix_web::middleware::Next;
use actix_web::{Error, ResponseError, web};

use crate::AppState;
use crate::error::OpenAiError;

/// How many seconds an overloaded gateway asks the client to wait.
const RETRY_AFTER_SECONDS: u64 = 1;
/// How often a busy worker measures its lateness.
const PROBE_EVERY: Duration = Duration::from_millis(10);
/// The probe stops after this long without a chat.
const PROBE_IDLE_STOP: Duration = Duration::from_secs(2);
/// A worker is busy with its own work when it ran at least this share of the time (‰).
const BUSY_PERMILLE: u64 = 500;

/// When a worker is too late to take more chats.
#[derive(Debug, Clone, Copy)]
pub struct ChatAdmission {
    /// `None`: never shed.
    max_lateness: Option<Duration>,
}

impl ChatAdmission {
    /// `max_lateness` zero turns shedding off.
    pub fn new(max_lateness: Duration) -> Self {
        Self {
            max_lateness: (!max_lateness.is_zero()).then_some(max_lateness),
        }
    }
}

/// The lateness of the current worker thread, smoothed, and its probe's state.
struct Worker {
    lateness_us: Cell<u64>,
    /// Share of the time the thread was running, in ‰.
    busy_permille: Cell<u64>,
    probing: Cell<bool>,
    last_chat: Cell<Instant>,
}

thread_local! {
    static WORKER: Worker = Worker {
        lateness_us: Cell::new(0),
        busy_permille: Cell::new(0),
        probing: Cell::new(false),
        last_chat: Cell::new(Instant::now()),
    };
}

/// Whether the current worker is overloaded: later than `max` and busy with its own work.
/// Starts its probe when it is not running.
fn worker_overloaded(max: Duration) -> bool {
    WORKER.with(|w| {
        w.last_chat.set(Instant::now());
        if !w.probing.replace(true) {
            actix_web::rt::spawn(probe());
        }
        Duration::from_micros(w.lateness_us.get()) > max && w.busy_permille.get() >= BUSY_PERMILLE
    })
}

async fn probe() {
    let mut ran = thread_run_time();
    loop {
        let asked = Instant::now();
        tokio::time::sleep(PROBE_EVERY).await;
        let wall = asked.elapsed();
        let late = wall.saturating_sub(PROBE_EVERY);
        let now_ran = thread_run_time();
        let busy = match (ran, now_ran) {
            (Some(before), Some(after)) => {
                let permille =
                    after.saturating_sub(before).as_micros() * 1000 / wall.as_micros().max(1);
                u64::try_from(permille).unwrap_or(u64::MAX).min(1000)
            }
            // Without schedstat, lateness alone decides.
            _ => 1000,
        };
        ran = now_ran;
        let idle = WORKER.with(|w| {
            w.lateness_us
                .set(smoothed(w.lateness_us.get(), micros(late)));
            w.busy_permille.set(smoothed(w.busy_permille.get(), busy));
            w.last_chat.get().elapsed() > PROBE_IDLE_STOP
        });
        if idle {
            WORKER.with(|w| {
                w.lateness_us.set(0);
                w.busy_permille.set(0);
                w.probing.set(false);
            });
            return;
        }
    }
}

fn micros(d: Duration) -> u64 {
    u64::try_from(d.as_micros()).unwrap_or(u64::MAX)
}

/// How long the calling thread has run on a CPU (the first field of its schedstat).
fn thread_run_time() -> Option<Duration> {
    let stat = std::fs::read_to_string("/proc/thread-self/schedstat").ok()?;
    let ns = stat.split_whitespace().next()?.parse().ok()?;
    Some(Duration::from_nanos(ns))
}

/// An exponential average over about four probes (40 ms): one slow wake-up does not shed, a
/// queue that keeps growing does within tens of milliseconds.
fn smoothed(previous: u64, sample: u64) -> u64 {
    (previous.saturating_mul(3) / 4).saturating_add(sample / 4)
}

/// The middleware on the chat scope (`actix_web::middleware::from_fn(chat_admission::admit)`).
pub async fn admit(
    req: ServiceRequest,
    next: Next<impl MessageBody>,
) -> Result<ServiceResponse<EitherBody<impl MessageBody>>, Error> {
    let max_lateness = req
        .app_data::<web::Data<AppState>>()
        .and_then(|state| state.chat_admission.max_lateness);
    if let Some(max) = max_lateness
        && worker_overloaded(max)
    {
        let response = overloaded().error_response();
        return Ok(req.into_response(response).map_into_right_body());
    }
    next.call(req)
        .await
        .map(ServiceResponse::map_into_left_body)
}

fn overloaded() -> OpenAiError {
    let mut error = OpenAiError::new(
        StatusCode::SERVICE_UNAVAILABLE,
        "server_error",
        "gateway_overloaded",
        None,
        "The gateway is overloaded; retry shortly",
    );
    error.retry_after = Some(RETRY_AFTER_SECONDS);
    error
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_late_wake_up_moves_the_average_a_quarter() {
        assert_eq!(smoothed(0, 40_000), 10_000);
        assert_eq!(smoothed(10_000, 0), 7_500);
        let mut avg = 0;
        for _ in 0..20 {
            avg = smoothed(avg, 100_000);
        }
        assert!(avg > 99_000, "a lasting delay is followed: {avg}");
    }

    #[test]
    fn this_thread_has_a_run_time() {
        // Linux with schedstat, as on our machines; elsewhere lateness alone decides.
        if std::path::Path::new("/proc/thread-self/schedstat").exists() {
            assert!(thread_run_time().is_some());
        }
    }

    #[test]
    fn zero_turns_shedding_off() {
        assert!(ChatAdmission::new(Duration::ZERO).max_lateness.is_none());
        assert_eq!(
            ChatAdmission::new(Duration::from_millis(20)).max_lateness,
            Some(Duration::from_millis(20))
        );
    }
}
