//! Allowances in front of a shared store: how many takes reach the store, and that the store
//! never counts past a limit however the replicas' allowances interleave.

use std::sync::Arc;
use std::sync::atomic::{AtomicI64, AtomicUsize, Ordering};
use std::time::Duration;

use async_trait::async_trait;
use morpheus_counters::{AllowanceCounters, MemoryCounters};
use morpheus_domain::ports::{CounterFailure, Counters, Take, Taken};

const MINUTE: Duration = Duration::from_secs(60);

/// The shared store, counting the calls that reach it.
struct Store {
    inner: MemoryCounters,
    takes: AtomicUsize,
    adjusts: AtomicUsize,
}

#[async_trait]
impl Counters for Store {
    async fn take(&self, takes: &[Take]) -> Result<Taken, CounterFailure> {
        self.takes.fetch_add(1, Ordering::Relaxed);
        self.inner.take(takes).await
    }

    async fn adjust(
        &self,
        key: &str,
        window: Duration,
        window_start: i64,
        delta: i64,
    ) -> Result<(), CounterFailure> {
        self.adjusts.fetch_add(1, Ordering::Relaxed);
        self.inner.adjust(key, window, window_start, delta).await
    }
}

struct World {
    now: Arc<AtomicI64>,
    store: Arc<Store>,
}

impl World {
    fn new() -> Self {
        let now = Arc::new(AtomicI64::new(1_800_000_000));
        let clock = now.clone();
        Self {
            store: Arc::new(Store {
                inner: MemoryCounters::with_clock(Arc::new(move || clock.load(Ordering::Relaxed))),
                takes: AtomicUsize::new(0),
                adjusts: AtomicUsize::new(0),
            }),
            now,
        }
    }

    fn replica(&self) -> AllowanceCounters {
        let clock = self.now.clone();
        AllowanceCounters::with_clock(
            self.store.clone(),
            Arc::new(move || clock.load(Ordering::Relaxed)),
        )
    }

    async fn stored(&self, key: &str) -> u64 {
        self.store.inner.read(key, MINUTE).await.unwrap().used
    }

    fn store_takes(&self) -> usize {
        self.store.takes.load(Ordering::Relaxed)
    }
}

fn one(key: &str, limit: u64) -> [Take; 1] {
    [Take::new(key, MINUTE, limit, 1)]
}

#[tokio::test]
async fn under_a_large_limit_a_thousand_takes_cost_one_store_call_and_are_all_counted() {
    let world = World::new();
    let replica = world.replica();
    for i in 0..1001 {
        let taken = replica.take(&one("rpm:key:1", 1_000_000)).await.unwrap();
        assert!(taken.allowed());
        // Shown as the takes alone, never the replica's unspent share.
        assert_eq!(taken.counters[0].used, i + 1);
    }
    assert_eq!(world.store_takes(), 1, "one take of 1 + a share of 1000");
    // The store counts the take and the share; the share not spent is given back when idle.
    assert_eq!(world.stored("rpm:key:1").await, 1001);
    assert_eq!(replica.give_back_idle(true).await.unwrap(), 0, "all spent");
    let taken = replica.take(&one("rpm:key:1", 1_000_000)).await.unwrap();
    assert_eq!(taken.counters[0].used, 1002);
    assert_eq!(world.stored("rpm:key:1").await, 2002);
    assert_eq!(replica.give_back_idle(true).await.unwrap(), 1);
    assert_eq!(
        world.stored("rpm:key:1").await,
        1002,
        "exactly what was taken"
    );
    assert_eq!(replica.held(), (0, 0));
}

#[tokio::test]
async fn a_limit_below_the_divisor_takes_no_share_every_take_is_the_stores() {
    let world = World::new();
    let replica = world.replica();
    let mut allowed = 0;
    for _ in 0..700 {
        if replica
            .take(&one("rpm:key:2", 600))
            .await
            .unwrap()
            .allowed()
        {
            allowed += 1;
        }
    }
    assert_eq!(allowed, 600);
    assert_eq!(world.store_takes(), 700);
    assert_eq!(replica.held(), (0, 0));
}

#[tokio::test]
async fn three_replicas_never_count_past_the_limit_and_fall_short_by_at_most_a_share_each() {
    let world = World::new();
    let replicas = [world.replica(), world.replica(), world.replica()];
    let limit = 10_000;
    let mut allowed = 0u64;
    let mut refused_in_a_row = 0;
    let mut i = 0;
    while refused_in_a_row < 3 {
        let replica = &replicas[i % 3];
        i += 1;
        // Takes of 1 to 7 interleaved across the replicas.
        let amount = 1 + (i as u64 * 5) % 7;
        let taken = replica
            .take(&[Take::new("tpm:key:3", MINUTE, limit, amount)])
            .await
            .unwrap();
        if taken.allowed() {
            allowed += amount;
            refused_in_a_row = 0;
        } else {
            refused_in_a_row += 1;
        }
    }
    let stored = world.stored("tpm:key:3").await;
    assert!(stored <= limit, "the store counted {stored}");
    let unspent: u64 = replicas.iter().map(|r| r.held().1).sum();
    assert_eq!(stored, allowed + unspent);
    // Refused only when what is left is below a share a replica holds plus the take.
    assert!(allowed >= limit - 3 * 10 - 7, "{allowed} of {limit}");
    for replica in &replicas {
        replica.give_back_idle(true).await.unwrap();
    }
    assert_eq!(world.stored("tpm:key:3").await, allowed);
}

#[tokio::test]
async fn a_share_the_store_cannot_give_falls_back_to_the_exact_take() {
    let world = World::new();
    let (a, b) = (world.replica(), world.replica());
    // 999 of 1000 used elsewhere: a take of 1 with its share of 1 does not fit, 1 alone does.
    world
        .store
        .inner
        .take(&[Take::new("rpm:key:4", MINUTE, 1000, 999)])
        .await
        .unwrap();
    assert!(a.take(&one("rpm:key:4", 1000)).await.unwrap().allowed());
    assert_eq!(a.held(), (0, 0));
    assert!(!b.take(&one("rpm:key:4", 1000)).await.unwrap().allowed());
    assert_eq!(world.stored("rpm:key:4").await, 1000);
}

#[tokio::test]
async fn a_take_is_all_or_nothing_across_covered_and_store_counters() {
    let world = World::new();
    let replica = world.replica();
    // A share of the large counter, spent by a first take.
    let takes = |small: u64| {
        [
            Take::new("rpm:key:5", MINUTE, 1_000_000, 1),
            Take::new("budget:key:5", MINUTE, 3, small),
        ]
    };
    assert!(replica.take(&takes(1)).await.unwrap().allowed());
    assert_eq!(replica.held(), (1, 1000));
    // The large counter is covered here, the small one refuses: nothing is spent.
    let refused = replica.take(&takes(5)).await.unwrap();
    assert_eq!(refused.refused_by, Some(1));
    assert_eq!(replica.held(), (1, 1000));
    // Covered here, counted there.
    let taken = replica.take(&takes(2)).await.unwrap();
    assert!(taken.allowed());
    assert_eq!(taken.counters[0].used, 2);
    assert_eq!(taken.counters[1].used, 3);
    assert_eq!(replica.held(), (1, 999));
    assert_eq!(
        world.stored("rpm:key:5").await,
        1001,
        "the share is not taken twice"
    );
}

#[tokio::test]
async fn corrections_are_made_in_the_allowance_and_a_new_window_starts_from_the_store() {
    let world = World::new();
    let replica = world.replica();
    let reserve = || [Take::new("tpm:key:6", MINUTE, 1_000_000, 1000)];
    // Three requests reserve 1000 tokens each: from the store with a share (1000), from the
    // share, from the store with another share.
    let start = replica.take(&reserve()).await.unwrap().counters[0].window_start;
    for _ in 0..2 {
        assert!(replica.take(&reserve()).await.unwrap().allowed());
    }
    assert_eq!(world.store_takes(), 2);
    assert_eq!(replica.held(), (1, 1000));
    // A charge past a reservation is spent from the share, no store call.
    replica
        .adjust("tpm:key:6", MINUTE, start, 300)
        .await
        .unwrap();
    assert_eq!(replica.held(), (1, 700));
    // Give-backs are kept here up to two shares; the rest goes to the store for everyone.
    for _ in 0..3 {
        replica
            .adjust("tpm:key:6", MINUTE, start, -1000)
            .await
            .unwrap();
    }
    assert_eq!(replica.held(), (1, 2000));
    assert_eq!(world.store.adjusts.load(Ordering::Relaxed), 2);
    // The store counts what this replica used (300) and its unspent 2000.
    assert_eq!(world.stored("tpm:key:6").await, 300 + 2000);
    // The next window: the old allowance is not spent in it.
    world.now.fetch_add(60, Ordering::Relaxed);
    replica
        .take(&[Take::new("tpm:key:6", MINUTE, 1_000_000, 10)])
        .await
        .unwrap();
    assert_eq!(world.store_takes(), 3);
    assert_eq!(world.stored("tpm:key:6").await, 1010);
    assert_eq!(replica.held(), (1, 1000));
}

#[tokio::test]
async fn one_replica_alone_admits_exactly_what_the_limit_holds() {
    let world = World::new();
    let replica = world.replica();
    let mut allowed = 0;
    let mut takes = 0;
    loop {
        let take = [Take::new("budget:key:7", MINUTE, 100_000, 7)];
        takes += 1;
        if !replica.take(&take).await.unwrap().allowed() {
            break;
        }
        allowed += 7;
    }
    // 14,285 takes of 7: what is left (5) is below a take. Shares of 100 served most of them.
    assert_eq!(allowed, 99_995);
    assert!(
        world.store_takes() * 10 < takes,
        "{} store calls",
        world.store_takes()
    );
    replica.give_back_idle(true).await.unwrap();
    assert_eq!(world.stored("budget:key:7").await, 99_995);
}

#[tokio::test]
async fn a_share_smaller_than_the_take_is_never_asked_for() {
    let world = World::new();
    let replica = world.replica();
    // A budget of 2,000 units and requests of 400: a thousandth (2) would not cover one.
    for _ in 0..5 {
        let take = [Take::new("budget:key:8", MINUTE, 2_000, 400)];
        assert!(replica.take(&take).await.unwrap().allowed());
    }
    assert_eq!(replica.held(), (0, 0));
    assert_eq!(world.stored("budget:key:8").await, 2_000);
}
