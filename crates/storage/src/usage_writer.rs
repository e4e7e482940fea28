//! Usage records leave a chat request without waiting for the database: the request appends
//! its record to a shared buffer, and one background task writes the buffer in batches.
//!
//! The task is woken once per batch (by a batch's first record, or by a full batch), not once
//! per record: a wake-up is a context switch, and on the request path of a busy gateway those
//! cost more than the rest of the bookkeeping.
//!
//! The buffer is bounded. When it is full (the database slow or down for a while) new records
//! are dropped and counted rather than held in memory or allowed to slow requests down.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use morpheus_domain::UsageRecord;
use morpheus_domain::ports::{UsageRepository, UsageSink};
use tokio::sync::{Notify, mpsc, oneshot};
use tokio::task::JoinHandle;
use tokio::time::Instant;
use tracing::Instrument;

/// How the writer buffers and batches.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct UsageWriterOptions {
    /// Records buffered at most; beyond that new records are dropped.
    pub capacity: usize,
    /// Records written in one transaction at most.
    pub max_batch: usize,
    /// How long a buffered record waits for others to share its write.
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

/// Flushes and stops travel apart from the records: they are rare, and must not be dropped.
const CONTROL_CAPACITY: usize = 64;

enum Control {
    /// Answered once the first `n` records ever accepted have been written (or given up on).
    Flush(u64, oneshot::Sender<()>),
    /// Sent by `flush_and_stop`: refuse new records, write what is buffered, end.
    Stop,
}

/// The [`UsageSink`] of the gateway: buffers records for the task started with it. Cloning is
/// cheap and shares the buffer.
#[derive(Clone)]
pub struct BatchedUsageWriter {
    shared: Arc<Shared>,
    control: mpsc::Sender<Control>,
}

/// The background task of a [`BatchedUsageWriter`]. Dropping it leaves the task running until
/// every writer is gone; call [`flush_and_stop`](Self::flush_and_stop) at shutdown instead.
#[must_use = "call flush_and_stop at shutdown, or the records still buffered are lost"]
pub struct UsageWriterTask {
    control: mpsc::Sender<Control>,
    handle: JoinHandle<()>,
}

impl std::fmt::Debug for BatchedUsageWriter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BatchedUsageWriter")
            .field("buffered", &self.shared.buffer().records.len())
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
        let (control, commands) = mpsc::channel(CONTROL_CAPACITY);
        let shared = Arc::new(Shared {
            buffer: Mutex::new(Buffer::default()),
            wake: Notify::new(),
            drops: Drops::default(),
            capacity: options.capacity.max(1),
            max_batch: options.max_batch.max(1),
        });
        let worker = Worker {
            repo,
            shared: Arc::clone(&shared),
            commands,
            max_delay: options.max_delay,
            taken: 0,
            stopping: false,
        };
        let handle = tokio::spawn(worker.run().instrument(tracing::info_span!("usage_writer")));
        let writer = BatchedUsageWriter {
            shared,
            control: control.clone(),
        };
        (writer, UsageWriterTask { control, handle })
    }

    /// Waits until every record recorded before the call has been written, or given up on
    /// after failed retries. Does not stop the writer. After a stop, returns once the task no
    /// longer takes commands.
    pub async fn flush(&self) {
        let target = self.shared.buffer().accepted;
        let (ack, written) = oneshot::channel();
        if self
            .control
            .send(Control::Flush(target, ack))
            .await
            .is_err()
        {
            // Stopped: the task is writing what was buffered, or has ended.
            self.control.closed().await;
            return;
        }
        // An error means the task ended without answering; nothing more will be written then.
        let _ = written.await;
    }

    /// Records dropped so far: refused because the buffer was full or the writer had stopped,
    /// or given up on after their batch failed to be written.
    pub fn dropped(&self) -> u64 {
        self.shared.drops.count.load(Ordering::Relaxed)
    }
}

impl UsageSink for BatchedUsageWriter {
    fn record(&self, record: UsageRecord) {
        // Never waits (beyond a lock held for a push or a take): this runs on the request's
        // path, or in a drop at its end.
        let mut buffer = self.shared.buffer();
        let refused = if buffer.closed {
            Some("the usage writer has stopped")
        } else if buffer.records.len() >= self.shared.capacity {
            Some("the usage buffer is full")
        } else {
            None
        };
        if let Some(reason) = refused {
            drop(buffer);
            // The record is dropped here, unlogged: only the count is reported.
            self.shared.drops.refused(reason);
            return;
        }
        buffer.records.push_back(record);
        buffer.accepted += 1;
        let buffered = buffer.records.len();
        drop(buffer);
        // A batch's first record starts its clock; a full batch is written at once. Records
        // in between join silently.
        if buffered == 1 || buffered == self.shared.max_batch {
            self.shared.wake.notify_one();
        }
    }
}

impl UsageWriterTask {
    /// Refuses new records, writes every record still buffered, and waits for the task to
    /// end. For graceful shutdown: records recorded afterwards are dropped and counted.
    pub async fn flush_and_stop(self) {
        // An error means the task has ended already, with nothing left to write.
        let _ = self.control.send(Control::Stop).await;
        drop(self.control);
        if let Err(error) = self.handle.await {
            tracing::error!(%error, "the usage writer task failed; buffered usage records are lost");
        }
    }
}

/// What the writers and the task share.
struct Shared {
    buffer: Mutex<Buffer>,
    /// Wakes the task: a batch has begun, or is full.
    wake: Notify,
    drops: Drops,
    capacity: usize,
    max_batch: usize,
}

#[derive(Default)]
struct Buffer {
    records: VecDeque<UsageRecord>,
    /// Records accepted since the start: the position a flush waits for.
    accepted: u64,
    /// Set at stop: records are refused from then on.
    closed: bool,
}

impl Shared {
    fn buffer(&self) -> MutexGuard<'_, Buffer> {
        // A panic while holding the lock leaves a consistent buffer (push and drain only).
        self.buffer.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Takes up to one batch from the front, oldest first.
    fn take_batch(&self) -> Vec<UsageRecord> {
        let mut buffer = self.buffer();
        let n = buffer.records.len().min(self.max_batch);
        buffer.records.drain(..n).collect()
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

    /// Counts one record refused by the buffer, warning at most once per interval: a full
    /// buffer refuses records as fast as requests finish.
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

struct Worker {
    repo: Arc<dyn UsageRepository>,
    shared: Arc<Shared>,
    commands: mpsc::Receiver<Control>,
    max_delay: Duration,
    /// Records taken from the buffer so far (written or given up on once their write ends).
    taken: u64,
    /// Set at stop: one attempt per batch from then on.
    stopping: bool,
}

impl Worker {
    async fn run(mut self) {
        let mut flushes: Vec<(u64, oneshot::Sender<()>)> = Vec::new();
        // When the oldest buffered record has waited long enough; `None` while empty.
        let mut deadline: Option<Instant> = None;
        loop {
            let command = tokio::select! {
                biased;
                command = self.commands.recv() => Some(command),
                () = self.shared.wake.notified() => None,
                () = tokio::time::sleep_until(deadline.unwrap_or_else(Instant::now)),
                    if deadline.is_some() => None,
            };
            match command {
                Some(Some(Control::Flush(target, ack))) => flushes.push((target, ack)),
                // Stopped, or every writer and the task handle are gone.
                Some(Some(Control::Stop) | None) => break,
                None => {}
            }
            let due = deadline.is_some_and(|at| at <= Instant::now());
            let wanted = flushes.iter().map(|(target, _)| *target).max();
            self.write_what_is_due(due, wanted).await;
            let (answered, waiting) = std::mem::take(&mut flushes)
                .into_iter()
                .partition(|(target, _)| *target <= self.taken);
            flushes = waiting;
            answer(answered.into_iter().map(|(_, ack)| ack));
            let buffered = !self.shared.buffer().records.is_empty();
            deadline = match deadline {
                _ if !buffered => None,
                Some(at) if !due => Some(at),
                _ => Some(Instant::now() + self.max_delay),
            };
        }
        self.stop(flushes).await;
    }

    /// Writes the batches that should not wait: those a flush waits for, full ones, and once
    /// `due`, the oldest partial one.
    async fn write_what_is_due(&mut self, due: bool, wanted: Option<u64>) {
        let mut due = due;
        loop {
            let buffered = self.shared.buffer().records.len();
            let flushing = wanted.is_some_and(|target| target > self.taken);
            if buffered == 0 || !(flushing || due || buffered >= self.shared.max_batch) {
                return;
            }
            self.write_batch().await;
            due = false;
        }
    }

    /// Closes the buffer, writes what is in it, and answers every flush, late ones included.
    async fn stop(mut self, flushes: Vec<(u64, oneshot::Sender<()>)>) {
        self.stopping = true;
        self.shared.buffer().closed = true;
        self.commands.close();
        while self.write_batch().await {}
        let mut acks: Vec<_> = flushes.into_iter().map(|(_, ack)| ack).collect();
        while let Ok(command) = self.commands.try_recv() {
            if let Control::Flush(_, ack) = command {
                acks.push(ack);
            }
        }
        answer(acks);
    }

    /// Takes the next batch and writes it; false when there was nothing to take.
    async fn write_batch(&mut self) -> bool {
        let batch = self.shared.take_batch();
        if batch.is_empty() {
            return false;
        }
        self.taken += u64::try_from(batch.len()).unwrap_or(u64::MAX);
        self.store(batch).await;
        true
    }

    async fn store(&self, records: Vec<UsageRecord>) {
        // At shutdown one attempt per batch: a database that is down must not hold the
        // process up for the whole backoff of every buffered batch.
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
                self.shared.drops.add(records.len());
                tracing::error!(
                    error = format!("{error:#}"),
                    records = records.len(),
                    dropped_total = self.shared.drops.count.load(Ordering::Relaxed),
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

/// Tells flushers their records are written. A flusher may have stopped waiting.
fn answer(acks: impl IntoIterator<Item = oneshot::Sender<()>>) {
    for ack in acks {
        let _ = ack.send(());
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
            upstream: None,
            usage: None,
            usage_source: None,
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
        let UsageWriterTask { control, handle } = task;
        drop(control);
        writer.record(record(1));
        drop(writer);
        handle.await.unwrap();
        assert_eq!(repo.stored(), 1);
    }
}
