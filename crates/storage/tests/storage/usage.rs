use std::sync::Arc;
use std::time::Duration as StdDuration;

use async_trait::async_trait;
use chrono::Duration;
use morpheus_domain::ports::{UsageRepository, UsageSink};
use morpheus_domain::*;
use morpheus_storage::{BatchedUsageWriter, Database, UsageWriterOptions};
use tokio::sync::{Notify, Semaphore};

use crate::harness::{TestDb, each_backend, insert_user, now};

fn hash32(n: u64) -> String {
    format!("0x{n:064x}")
}

/// A completed, non-streamed request by `user` with key 7, `minutes_ago`.
fn record(user: UserId, minutes_ago: i64) -> UsageRecord {
    UsageRecord {
        user_id: user,
        api_key_id: ApiKeyId(7),
        model_id: Some(ModelId::parse(&hash32(1)).unwrap()),
        session_id: Some(SessionId::parse(&hash32(2)).unwrap()),
        upstream: None,
        usage: Some(TokenUsage {
            prompt_tokens: 12,
            completion_tokens: 34,
        }),
        usage_source: Some(UsageSource::UsageFromConsumer),
        outcome: UsageOutcome::Completed,
        status: 200,
        stream: false,
        latency_ms: 250,
        created_at: now() - Duration::minutes(minutes_ago),
    }
}

/// A user of their own. (A record of a user who does not exist is stored under a pseudonym:
/// `account_deletion`.)
async fn a_user(t: &TestDb) -> UserId {
    insert_user(&t.db, &format!("u{}@example.com", UserId::random()))
        .await
        .id
}

fn stored(t: &TestDb) -> i64 {
    t.count("SELECT COUNT(*) AS n FROM usage_records")
}

#[tokio::test]
async fn usage_records_round_trip_newest_first() {
    each_backend(async |t| {
        let user = a_user(t).await;
        let completed = record(user, 3);
        let mut failed = record(user, 2);
        failed.model_id = None;
        failed.session_id = None;
        failed.usage = None;
        failed.outcome = UsageOutcome::Failed;
        failed.status = 503;
        let mut incomplete = record(user, 1);
        incomplete.outcome = UsageOutcome::Incomplete;
        incomplete.stream = true;
        incomplete.usage = Some(TokenUsage::default());
        let mut closed = record(user, 0);
        closed.outcome = UsageOutcome::ClientClosed;
        closed.status = 499;
        closed.usage = None;
        let someone_else = record(a_user(t).await, 0);

        t.db.insert_usage(vec![
            completed.clone(),
            failed.clone(),
            someone_else.clone(),
        ])
        .await
        .unwrap();
        t.db.insert_usage(vec![incomplete.clone(), closed.clone()])
            .await
            .unwrap();
        t.db.insert_usage(Vec::new()).await.unwrap();

        let listed = t.db.list_usage(user, 10).await.unwrap();
        assert_eq!(
            listed,
            [closed.clone(), incomplete, failed, completed.clone()]
        );
        assert_eq!(t.db.list_usage(user, 1).await.unwrap(), [closed]);
        assert_eq!(
            t.db.list_usage(someone_else.user_id, 10).await.unwrap(),
            [someone_else]
        );
        assert_eq!(stored(t), 5);
    })
    .await;
}

#[tokio::test]
async fn values_beyond_their_columns_are_clamped() {
    each_backend(async |t| {
        let user = a_user(t).await;
        let mut huge = record(user, 0);
        huge.usage = Some(TokenUsage {
            prompt_tokens: u32::MAX,
            completion_tokens: 1 << 31,
        });
        huge.latency_ms = u32::MAX;
        huge.status = u16::MAX;
        t.db.insert_usage(vec![huge.clone()]).await.unwrap();

        let listed = t.db.list_usage(user, 10).await.unwrap();
        let max = i32::MAX.unsigned_abs();
        assert_eq!(
            listed[0].usage,
            Some(TokenUsage {
                prompt_tokens: max,
                completion_tokens: max,
            })
        );
        assert_eq!(listed[0].latency_ms, max);
        assert_eq!(listed[0].status, u16::MAX);
    })
    .await;
}

#[tokio::test]
async fn a_batch_longer_than_one_statement_is_stored_whole() {
    each_backend(async |t| {
        let user = a_user(t).await;
        let records: Vec<_> = (0..5_000)
            .map(|n| {
                let mut r = record(user, 0);
                r.latency_ms = n;
                r
            })
            .collect();
        t.db.insert_usage(records).await.unwrap();
        assert_eq!(stored(t), 5_000);
        // Same instant: the insertion order decides, newest first.
        let latest = t.db.list_usage(user, 3).await.unwrap();
        let latencies: Vec<_> = latest.iter().map(|r| r.latency_ms).collect();
        assert_eq!(latencies, [4_999, 4_998, 4_997]);
    })
    .await;
}

fn writer_options() -> UsageWriterOptions {
    UsageWriterOptions {
        capacity: 10_000,
        max_batch: 100,
        max_delay: StdDuration::from_millis(20),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_writer_stores_every_record_from_many_tasks() {
    each_backend(async |t| {
        let (writer, task) = BatchedUsageWriter::start(Arc::new(t.db.clone()), writer_options());
        let mut users = Vec::new();
        for _ in 0..8 {
            users.push(a_user(t).await);
        }
        let producers: Vec<_> = users
            .iter()
            .map(|&user| {
                let writer = writer.clone();
                tokio::spawn(async move {
                    for n in 0..125 {
                        let mut r = record(user, 0);
                        r.latency_ms = n;
                        writer.record(r);
                        if n % 25 == 0 {
                            tokio::task::yield_now().await;
                        }
                    }
                })
            })
            .collect();
        for producer in producers {
            producer.await.unwrap();
        }
        writer.flush().await;
        assert_eq!(stored(t), 1_000);
        assert_eq!(writer.dropped(), 0);
        for user in users {
            let listed = t.db.list_usage(user, 1_000).await.unwrap();
            assert_eq!(listed.len(), 125);
        }
        task.flush_and_stop().await;
    })
    .await;
}

#[tokio::test]
async fn flush_and_stop_writes_what_is_still_queued() {
    each_backend(async |t| {
        let options = UsageWriterOptions {
            capacity: 1_000,
            max_batch: 1_000,
            max_delay: StdDuration::from_secs(3600),
        };
        let (writer, task) = BatchedUsageWriter::start(Arc::new(t.db.clone()), options);
        let user = a_user(t).await;
        for _ in 0..300 {
            writer.record(record(user, 0));
        }
        tokio::task::yield_now().await;
        // Neither full nor due: nothing written yet.
        assert_eq!(stored(t), 0);

        task.flush_and_stop().await;
        assert_eq!(stored(t), 300);
        // After the stop, records are refused and counted.
        writer.record(record(user, 0));
        assert_eq!(writer.dropped(), 1);
        writer.flush().await;
        assert_eq!(stored(t), 300);
    })
    .await;
}

/// Holds every write until `open` is called, after telling `started`.
struct Gated {
    db: Database,
    started: Notify,
    gate: Semaphore,
}

impl Gated {
    fn open(&self) {
        self.gate.add_permits(1);
    }
}

#[async_trait]
impl UsageRepository for Gated {
    async fn insert_usage(&self, records: Vec<UsageRecord>) -> anyhow::Result<()> {
        self.started.notify_one();
        let _permit = self.gate.acquire().await?;
        self.db.insert_usage(records).await
    }

    async fn list_usage(&self, user: UserId, limit: u32) -> anyhow::Result<Vec<UsageRecord>> {
        self.db.list_usage(user, limit).await
    }
}

#[tokio::test]
async fn a_full_queue_drops_records_and_counts_them() {
    each_backend(async |t| {
        let repo = Arc::new(Gated {
            db: t.db.clone(),
            started: Notify::new(),
            gate: Semaphore::new(0),
        });
        let options = UsageWriterOptions {
            capacity: 4,
            max_batch: 1,
            max_delay: StdDuration::from_secs(3600),
        };
        let (writer, task) = BatchedUsageWriter::start(repo.clone(), options);
        let user = a_user(t).await;
        writer.record(record(user, 0));
        // The task holds that record in a write that cannot finish yet, so the queue is empty.
        repo.started.notified().await;
        for _ in 0..7 {
            writer.record(record(user, 0));
        }
        assert_eq!(writer.dropped(), 3);

        repo.open();
        writer.flush().await;
        assert_eq!(stored(t), 5);
        assert_eq!(writer.dropped(), 3);
        task.flush_and_stop().await;
    })
    .await;
}
