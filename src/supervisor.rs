//! One supervisor for the gateway's periodic background work.
//!
//! Every task runs in the same loop: a run, then a pause of its interval ±10 % (replicas
//! started together drift apart instead of hitting the database in step), until the server
//! stops. Each run is measured: `morpheus_task_last_success_timestamp_seconds`,
//! `morpheus_task_failures_total`, `morpheus_task_duration_seconds` and, for singleton tasks,
//! `morpheus_task_skipped_total`, labelled by task. A failing task is logged once when it
//! starts failing and once when it works again, not at every run.
//!
//! A singleton task (`.on_one_replica()`) takes its lock for each run ([`TaskLocks`]: a
//! PostgreSQL advisory lock, or a file lock beside the SQLite database) and skips the run
//! while another replica holds it, so two replicas never run it at once.
//!
//! To add a task:
//!
//! ```ignore
//! supervisor
//!     .every("pool_refill", Duration::from_secs(10))
//!     .on_one_replica() // when replicas must not run it at once
//!     .spawn(move || {
//!         let pool = pool.clone();
//!         async move { pool.refill().await }
//!     });
//! ```
//!
//! At shutdown ([`Supervisor::shutdown`]) the loops stop (a run in progress gets
//! [`RUN_GRACE`] to finish), then the hooks given to [`Supervisor::at_shutdown`] run, in
//! order (final flushes).

use std::future::Future;
use std::pin::Pin;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use morpheus_api::metrics::{Metrics, TaskLabels};
use morpheus_storage::TaskLocks;
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tokio::time::Instant;

/// How long a run in progress at shutdown may take before it is abandoned.
pub const RUN_GRACE: Duration = Duration::from_secs(5);

/// The share of its interval by which a task's pauses vary, either way.
const JITTER: f64 = 0.1;

type BoxFuture = Pin<Box<dyn Future<Output = ()> + Send>>;

/// Runs the periodic tasks; see the module's documentation.
pub struct Supervisor {
    metrics: Metrics,
    locks: TaskLocks,
    stop: watch::Sender<bool>,
    tasks: Vec<(&'static str, JoinHandle<()>)>,
    at_shutdown: Vec<(&'static str, BoxFuture)>,
}

/// A task being declared: [`Supervisor::every`], then options, then [`TaskBuilder::spawn`].
#[must_use = "a task runs only once spawned"]
pub struct TaskBuilder<'a> {
    supervisor: &'a mut Supervisor,
    spec: Spec,
}

#[derive(Clone, Copy)]
struct Spec {
    name: &'static str,
    every: Duration,
    one_replica: bool,
    first_run_now: bool,
}

impl Supervisor {
    pub fn new(metrics: Metrics, locks: TaskLocks) -> Self {
        Self {
            metrics,
            locks,
            stop: watch::Sender::new(false),
            tasks: Vec::new(),
            at_shutdown: Vec::new(),
        }
    }

    /// Declares a task named `name` (its metrics' label; `snake_case`) that runs every `every`,
    /// first at once.
    pub fn every(&mut self, name: &'static str, every: Duration) -> TaskBuilder<'_> {
        assert!(
            self.tasks.iter().all(|(n, _)| *n != name),
            "two background tasks named {name}"
        );
        TaskBuilder {
            supervisor: self,
            spec: Spec {
                name,
                every,
                one_replica: false,
                first_run_now: true,
            },
        }
    }

    /// Runs `hook` at shutdown, after the tasks have stopped (hooks run in the order given).
    pub fn at_shutdown(
        &mut self,
        name: &'static str,
        hook: impl Future<Output = ()> + Send + 'static,
    ) {
        self.at_shutdown.push((name, Box::pin(hook)));
    }

    /// The names of the tasks running.
    pub fn task_names(&self) -> Vec<&'static str> {
        self.tasks.iter().map(|(name, _)| *name).collect()
    }

    /// Stops every task (a run in progress gets [`RUN_GRACE`]), then runs the shutdown hooks.
    pub async fn shutdown(self) {
        self.stop.send_replace(true);
        let deadline = Instant::now() + RUN_GRACE;
        for (name, mut task) in self.tasks {
            if tokio::time::timeout_at(deadline, &mut task).await.is_err() {
                tracing::warn!(
                    task = name,
                    "a background task did not stop in time; abandoned"
                );
                task.abort();
            }
        }
        for (name, hook) in self.at_shutdown {
            tracing::debug!(hook = name, "running a shutdown hook");
            hook.await;
        }
    }
}

impl TaskBuilder<'_> {
    /// Never runs on two replicas at once (skipped while another replica runs it).
    pub fn on_one_replica(mut self) -> Self {
        self.spec.one_replica = true;
        self
    }

    /// The first run waits one interval (for work already done at start-up).
    pub fn first_run_after_interval(mut self) -> Self {
        self.spec.first_run_now = false;
        self
    }

    /// Starts the loop; `run` makes each run's future.
    pub fn spawn<F, Fut>(self, run: F)
    where
        F: FnMut() -> Fut + Send + 'static,
        Fut: Future<Output = anyhow::Result<()>> + Send + 'static,
    {
        let Self { supervisor, spec } = self;
        let task = Loop {
            spec,
            metrics: supervisor.metrics.clone(),
            locks: supervisor.locks.clone(),
            failing: false,
        };
        let handle = tokio::spawn(task.run(run, supervisor.stop.subscribe()));
        supervisor.tasks.push((spec.name, handle));
    }
}

struct Loop {
    spec: Spec,
    metrics: Metrics,
    locks: TaskLocks,
    /// Whether the last run failed (failures are logged when they start and end).
    failing: bool,
}

impl Loop {
    async fn run<F, Fut>(mut self, mut run: F, mut stop: watch::Receiver<bool>)
    where
        F: FnMut() -> Fut,
        Fut: Future<Output = anyhow::Result<()>>,
    {
        let mut next = if self.spec.first_run_now {
            Instant::now()
        } else {
            Instant::now() + jittered(self.spec.every)
        };
        loop {
            tokio::select! {
                _ = tokio::time::sleep_until(next) => {}
                _ = stop.wait_for(|stopped| *stopped) => return,
            }
            next = Instant::now() + jittered(self.spec.every);
            self.once(&mut run).await;
        }
    }

    async fn once<F, Fut>(&mut self, run: &mut F)
    where
        F: FnMut() -> Fut,
        Fut: Future<Output = anyhow::Result<()>>,
    {
        let labels = TaskLabels {
            task: self.spec.name,
        };
        let guard = if self.spec.one_replica {
            match self.locks.try_acquire(self.spec.name).await {
                Ok(Some(guard)) => Some(guard),
                Ok(None) => {
                    self.metrics.task_skipped.get_or_create(&labels).inc();
                    return;
                }
                Err(error) => {
                    self.failed(&labels, &error.context("taking the task's lock"));
                    return;
                }
            }
        } else {
            None
        };
        let (started, started_at) = (Instant::now(), unix_micros());
        let result = run().await;
        let finished_at = unix_micros();
        if let Some(guard) = guard {
            guard.release().await;
        }
        self.metrics
            .task_duration
            .get_or_create(&labels)
            .observe(started.elapsed().as_secs_f64());
        // What a test checks to see that runs never overlap across replicas.
        tracing::trace!(
            task = self.spec.name,
            started_at,
            finished_at,
            ok = result.is_ok(),
            "background task ran"
        );
        match result {
            Ok(()) => {
                if std::mem::take(&mut self.failing) {
                    tracing::info!(task = self.spec.name, "a background task works again");
                }
                self.metrics
                    .task_last_success
                    .get_or_create(&labels)
                    .set(finished_at as f64 / 1e6);
            }
            Err(error) => self.failed(&labels, &error),
        }
    }

    fn failed(&mut self, labels: &TaskLabels, error: &anyhow::Error) {
        self.metrics.task_failures.get_or_create(labels).inc();
        if !std::mem::replace(&mut self.failing, true) {
            tracing::warn!(
                task = self.spec.name,
                error.cause_chain = ?error,
                "a background task failed; retrying at its next run (logged again once it works)"
            );
        } else {
            tracing::debug!(task = self.spec.name, error.cause_chain = ?error, "a background task failed again");
        }
    }
}

/// `every` ±[`JITTER`].
fn jittered(every: Duration) -> Duration {
    every.mul_f64(1.0 + rand::random_range(-JITTER..=JITTER))
}

fn unix_micros() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_micros() as u64)
}

#[cfg(test)]
mod tests;
