//! Usage records leave a chat request without waiting for the database: the request queues its
//! record, and one background task writes the queue in batches.
//!
//! The queue is bounded. When it is full (the database slow or down for a while) new records
//! are dropped and counted rather than held in memory or allowed to slow requests down.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use morpheus_domain::UsageRecord;
use morpheus_domain::ports::{UsageRepository, UsageSink};
use tokio::sync::mpsc::error::TrySendError;
use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinHandle;
use tokio::time::Instant;
use tracing::Instrument;

/// How the writer queues and batches.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct UsageWriterOptions {
    /// Records (and flush requests) queued at most; beyond that new records are dropped.
    pub capacity: usize,
    /// Records written in one transaction at most.
    pub max_batch: usize,
    /// How long a queued record waits for others to share its write.
    pub max_delay: Duration,
}

impl Default for UsageWriterOptions {
    fn default() -> Self {
        Self {
            capacity: 10_000,
            max_batch: 500,
            max_delay: Duration::from_millis(200),
        }
    }
}

/// Pauses before the retries of a failed write; after the last retry fails the batch is
/// dropped. Bounded, so a database that stays down costs a few seconds per batch, not memory.
const RETRY_DELAYS: [Duration; 3] = [
    Duration::from_millis(100),
    Duration::from_millis(500),
    Duration::from_secs(2),
];

/// However fast records are dropped, at most one warning per this interval.
const DROP_WARNING_INTERVAL: Duration = Duration::from_secs(10);

enum Command {
    Record(UsageRecord),
    /// Answered once every record queued before it has been written (or given up on).
    Flush(oneshot::Sender<()>),
    /// Sent by `flush_and_stop`: close the queue, write what is in it, end.
    Stop,
}

/// The [`UsageSink`] of the gateway: queues records for the task started with it. Cloning is
/// cheap and shares the queue.
#[derive(Clone)]
pub struct BatchedUsageWriter {
    queue: mpsc::Sender<Command>,
    drops: Arc<Drops>,
}

/// The background task of a [`BatchedUsageWriter`]. Dropping it leaves the task running until
/// every writer is gone; call [`flush_and_stop`](Self::flush_and_stop) at shutdown instead.
#[must_use = "call flush_and_stop at shutdown, or the records still queued are lost"]
pub struct UsageWriterTask {
    queue: mpsc::Sender<Command>,
    handle: JoinHandle<()>,
}

impl std::fmt::Debug for BatchedUsageWriter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BatchedUsageWriter")
            .field(
                "queued",
                &(self.queue.max_capacity() - self.queue.capacity()),
            )
            .field("dropped", &self.dropped())
            .finish()
    }
}

impl std::fmt::Debug for UsageWriterTask {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("UsageWriterTask")
            .field("finished", &self.handle.is_finished())
            .finish()
    }
}

impl BatchedUsageWriter {
    /// Starts the background task on the current tokio runtime (so call it inside one).
    /// A capacity or batch size of zero is taken as one.
    pub fn start(
        repo: Arc<dyn UsageRepository>,
        options: UsageWriterOptions,
    ) -> (BatchedUsageWriter, UsageWriterTask) {
        let (sender, receiver) = mpsc::channel(options.capacity.max(1));
        let drops = Arc::new(Drops::default());
        let worker = Worker {
            repo,
            queue: receiver,
            drops: Arc::clone(&drops),
            max_batch: options.max_batch.max(1),
            max_delay: options.max_delay,
            stopping: false,
        };
        let handle = tokio::spawn(worker.run().instrument(tracing::info_span!("usage_writer")));
        let writer = BatchedUsageWriter {
            queue: sender.clone(),
            drops,
        };
        let task = UsageWriterTask {
            queue: sender,
            handle,
        };
        (writer, task)
    }

    /// Waits until every record recorded before the call has been written, or given up on
    /// after failed retries. Does not stop the writer. After a stop, waits for the final
    /// write to end.
    pub async fn flush(&self) {
        let (ack, written) = oneshot::channel();
        if self.queue.send(Command::Flush(ack)).await.is_err() {
            // Stopped: the task is writing what was queued, or has ended.
            self.queue.closed().await;
            return;
        }
        // An error means the task ended without answering; nothing more will be written then.
        let _ = written.await;
    }

    /// Records dropped so far: refused because the queue was full or the writer had stopped,
    /// or given up on after their batch failed to be written.
    pub fn dropped(&self) -> u64 {
        self.drops.count.load(Ordering::Relaxed)
    }
}

impl UsageSink for BatchedUsageWriter {
    fn record(&self, record: UsageRecord) {
        // Never waits: this runs on the request's path, or in a drop at its end.
        if let Err(error) = self.queue.try_send(Command::Record(record)) {
            // The record is dropped with the error, unlogged: only the count is reported.
            let reason = match error {
                TrySendError::Full(_) => "the usage queue is full",
                TrySendError::Closed(_) => "the usage writer has stopped",
            };
            self.drops.refused(reason);
        }
    }
}

impl UsageWriterTask {
    /// Closes the queue, writes every record still in it, and waits for the task to end. For
    /// graceful shutdown: records recorded afterwards are dropped and counted.
    pub async fn flush_and_stop(self) {
        // Queued behind every record accepted so far. An error means the task has ended
        // already, with nothing left to write.
        let _ = self.queue.send(Command::Stop).await;
        drop(self.queue);
        if let Err(error) = self.handle.await {
            tracing::error!(%error, "the usage writer task failed; queued usage records are lost");
        }
    }
}

/// The count of dropped records, and when a warning about them was last logged.
struct Drops {
    count: AtomicU64,
    /// Milliseconds since `epoch`; `NEVER` before the first warning.
    last_warning_ms: AtomicU64,
    epoch: std::time::Instant,
}

const NEVER: u64 = u64::MAX;

impl Default for Drops {
    fn default() -> Self {
        Self {
            count: AtomicU64::new(0),
            last_warning_ms: AtomicU64::new(NEVER),
            epoch: std::time::Instant::now(),
        }
    }
}

impl Drops {
    fn add(&self, records: usize) -> u64 {
        let records = u64::try_from(records).unwrap_or(u64::MAX);
        self.count
            .fetch_add(records, Ordering::Relaxed)
            .saturating_add(records)
    }

    /// Counts one record refused by the queue, warning at most once per interval: a full
    /// queue refuses records as fast as requests finish.
    fn refused(&self, reason: &'static str) {
        let total = self.add(1);
        let now = u64::try_from(self.epoch.elapsed().as_millis()).unwrap_or(NEVER - 1);
        let last = self.last_warning_ms.load(Ordering::Relaxed);
        let interval = u64::try_from(DROP_WARNING_INTERVAL.as_millis()).unwrap_or(u64::MAX);
        if last != NEVER && now.saturating_sub(last) < interval {
            return;
        }
        // Of racing callers, one warns.
        if self
            .last_warning_ms
            .compare_exchange(last, now, Ordering::Relaxed, Ordering::Relaxed)
            .is_ok()
        {
            tracing::warn!(
                reason,
                dropped_total = total,
                "usage records are being dropped"
            );
        }
    }
}

enum Next {
    /// `None` once the queue is closed and empty.
    Command(Option<Command>),
    /// The oldest record of the batch has waited long enough.
    Deadline,
}

struct Worker {
    repo: Arc<dyn UsageRepository>,
    queue: mpsc::Receiver<Command>,
    drops: Arc<Drops>,
    max_batch: usize,
    max_delay: Duration,
    /// Set by `Stop`: the queue is closed and being drained.
    stopping: bool,
}

impl Worker {
    async fn run(mut self) {
        let mut batch = Vec::with_capacity(self.max_batch);
        let mut flushes = Vec::new();
        // When the oldest record of the batch has waited `max_delay`; `None` while empty.
        let mut deadline: Option<Instant> = None;
        loop {
            let next = match deadline {
                Some(at) => tokio::select! {
                    // What is queued already joins the batch before the deadline is looked at.
                    biased;
                    command = self.queue.recv() => Next::Command(command),
                    () = tokio::time::sleep_until(at) => Next::Deadline,
                },
                None => Next::Command(self.queue.recv().await),
            };
            let Next::Command(command) = next else {
                self.write(&mut batch, &mut flushes).await;
                deadline = None;
                continue;
            };
            match command {
                Some(Command::Record(record)) => {
                    if batch.is_empty() {
                        deadline = Some(Instant::now() + self.max_delay);
                    }
                    batch.push(record);
                    if batch.len() < self.max_batch {
                        continue;
                    }
                }
                Some(Command::Flush(ack)) => flushes.push(ack),
                Some(Command::Stop) => {
                    // Refuses new records from now on; those already queued still arrive.
                    self.queue.close();
                    self.stopping = true;
                    continue;
                }
                None => {
                    self.write(&mut batch, &mut flushes).await;
                    return;
                }
            }
            self.write(&mut batch, &mut flushes).await;
            deadline = None;
        }
    }

    /// Stores the batch (if any), then answers the flushes waiting for it.
    async fn write(&self, batch: &mut Vec<UsageRecord>, flushes: &mut Vec<oneshot::Sender<()>>) {
        if !batch.is_empty() {
            let records = std::mem::replace(batch, Vec::with_capacity(self.max_batch));
            self.store(records).await;
        }
        for ack in flushes.drain(..) {
            // The flusher may have stopped waiting.
            let _ = ack.send(());
        }
    }

    async fn store(&self, records: Vec<UsageRecord>) {
        // At shutdown one attempt per batch: a database that is down must not hold the
        // process up for the whole backoff of every queued batch.
        let retries = if self.stopping {
            &[][..]
        } else {
            &RETRY_DELAYS[..]
        };
        let mut retries = retries.iter();
        loop {
            let error = match self.repo.insert_usage(records.clone()).await {
                Ok(()) => return,
                Err(error) => error,
            };
            let Some(&delay) = retries.next() else {
                self.drops.add(records.len());
                tracing::error!(
                    error = format!("{error:#}"),
                    records = records.len(),
                    dropped_total = self.drops.count.load(Ordering::Relaxed),
                    "writing usage records failed; the batch is dropped"
                );
                return;
            };
            tracing::warn!(
                error = format!("{error:#}"),
                records = records.len(),
                retry_in_ms = u64::try_from(delay.as_millis()).unwrap_or(u64::MAX),
                "writing usage records failed; retrying"
            );
            tokio::time::sleep(delay).await;
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Mutex;
    use std::sync::atomic::AtomicUsize;

    use async_trait::async_trait;
    use chrono::Utc;
    use morpheus_domain::{ApiKeyId, UsageOutcome, UserId};

    use super::*;

    /// Fails its first `failures` writes, then stores in memory.
    #[derive(Default)]
    struct Memory {
        failures: AtomicUsize,
        attempts: AtomicUsize,
        batches: Mutex<Vec<Vec<UsageRecord>>>,
    }

    impl Memory {
        fn failing(failures: usize) -> Arc<Memory> {
            Arc::new(Memory {
                failures: AtomicUsize::new(failures),
                ..Memory::default()
            })
        }

        fn batch_sizes(&self) -> Vec<usize> {
            self.batches.lock().unwrap().iter().map(Vec::len).collect()
        }

        fn stored(&self) -> usize {
            self.batch_sizes().iter().sum()
        }
    }

    #[async_trait]
    impl UsageRepository for Memory {
        async fn insert_usage(&self, records: Vec<UsageRecord>) -> anyhow::Result<()> {
            self.attempts.fetch_add(1, Ordering::SeqCst);
            let failing = self
                .failures
                .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
                .is_ok();
            if failing {
                anyhow::bail!("the database is down");
            }
            self.batches.lock().unwrap().push(records);
            Ok(())
        }

        async fn list_usage(&self, _: UserId, _: u32) -> anyhow::Result<Vec<UsageRecord>> {
            unreachable!("the writer never reads")
        }
    }

    fn record(latency_ms: u32) -> UsageRecord {
        UsageRecord {
            user_id: UserId(1),
            api_key_id: ApiKeyId(2),
            model_id: None,
            session_id: None,
            usage: None,
            outcome: UsageOutcome::Completed,
            status: 200,
            stream: false,
            latency_ms,
            created_at: Utc::now(),
        }
    }

    fn options(max_batch: usize, max_delay: Duration) -> UsageWriterOptions {
        UsageWriterOptions {
            capacity: 10_000,
            max_batch,
            max_delay,
        }
    }

    #[tokio::test]
    async fn batches_are_cut_at_max_batch() {
        let repo = Memory::failing(0);
        let (writer, task) =
            BatchedUsageWriter::start(repo.clone(), options(500, Duration::from_secs(3600)));
        for n in 0..1_200 {
            writer.record(record(n));
        }
        writer.flush().await;
        assert_eq!(repo.batch_sizes(), [500, 500, 200]);
        // Order is kept within and across batches.
        let latencies: Vec<u32> = repo
            .batches
            .lock()
            .unwrap()
            .iter()
            .flatten()
            .map(|r| r.latency_ms)
            .collect();
        assert_eq!(latencies, (0..1_200).collect::<Vec<_>>());
        task.flush_and_stop().await;
    }

    #[tokio::test(start_paused = true)]
    async fn a_partial_batch_is_written_after_max_delay_without_a_flush() {
        let repo = Memory::failing(0);
        let (writer, task) =
            BatchedUsageWriter::start(repo.clone(), options(500, Duration::from_millis(200)));
        writer.record(record(1));
        writer.record(record(2));
        tokio::time::sleep(Duration::from_millis(150)).await;
        assert_eq!(repo.stored(), 0);
        tokio::time::sleep(Duration::from_millis(100)).await;
        assert_eq!(repo.batch_sizes(), [2]);
        task.flush_and_stop().await;
    }

    #[tokio::test(start_paused = true)]
    async fn a_failed_write_is_retried_with_the_same_batch() {
        let repo = Memory::failing(2);
        let (writer, task) =
            BatchedUsageWriter::start(repo.clone(), options(500, Duration::from_secs(3600)));
        for n in 0..3 {
            writer.record(record(n));
        }
        writer.flush().await;
        assert_eq!(repo.attempts.load(Ordering::SeqCst), 3);
        assert_eq!(repo.batch_sizes(), [3]);
        assert_eq!(writer.dropped(), 0);
        task.flush_and_stop().await;
    }

    #[tokio::test(start_paused = true)]
    async fn a_batch_that_keeps_failing_is_dropped_and_counted() {
        let repo = Memory::failing(usize::MAX);
        let (writer, task) =
            BatchedUsageWriter::start(repo.clone(), options(500, Duration::from_secs(3600)));
        for n in 0..4 {
            writer.record(record(n));
        }
        writer.flush().await;
        assert_eq!(repo.attempts.load(Ordering::SeqCst), 1 + RETRY_DELAYS.len());
        assert_eq!(repo.stored(), 0);
        assert_eq!(writer.dropped(), 4);
        task.flush_and_stop().await;
    }

    #[tokio::test]
    async fn after_a_stop_records_are_refused_and_flush_returns() {
        let repo = Memory::failing(0);
        let (writer, task) =
            BatchedUsageWriter::start(repo.clone(), options(500, Duration::from_secs(3600)));
        writer.record(record(1));
        task.flush_and_stop().await;
        assert_eq!(repo.stored(), 1);
        writer.record(record(2));
        writer.flush().await;
        assert_eq!(repo.stored(), 1);
        assert_eq!(writer.dropped(), 1);
    }

    #[tokio::test]
    async fn the_task_ends_once_every_handle_is_gone() {
        let repo = Memory::failing(0);
        let (writer, task) =
            BatchedUsageWriter::start(repo.clone(), options(500, Duration::from_secs(3600)));
        let UsageWriterTask { queue, handle } = task;
        drop(queue);
        writer.record(record(1));
        drop(writer);
        handle.await.unwrap();
        assert_eq!(repo.stored(), 1);
    }
}
