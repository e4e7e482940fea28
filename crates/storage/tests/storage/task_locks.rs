use morpheus_storage::TaskLocks;

use crate::harness::each_backend;

#[tokio::test]
async fn a_task_s_lock_is_held_by_one_replica_at_a_time() {
    each_backend(async |t| {
        let (here, there) = (t.db.task_locks(), t.second_replica().task_locks());
        let sweep = here.try_acquire("session_sweep").await.unwrap();
        assert!(sweep.is_some());
        assert!(there.try_acquire("session_sweep").await.unwrap().is_none());
        // Other tasks' locks are their own.
        let other = there.try_acquire("reconcile").await.unwrap();
        assert!(other.is_some());
        assert!(here.try_acquire("reconcile").await.unwrap().is_none());

        sweep.unwrap().release().await;
        let taken_over = there.try_acquire("session_sweep").await.unwrap();
        assert!(taken_over.is_some(), "released for the other replica");
        drop(taken_over);
        drop(other);
        // A guard dropped without `release` (a cancelled run) gives its lock back too, soon.
        assert!(soon_acquired(&here, "session_sweep").await);
        assert!(soon_acquired(&here, "reconcile").await);
    })
    .await;
}

async fn soon_acquired(locks: &TaskLocks, task: &str) -> bool {
    for _ in 0..100 {
        if let Some(guard) = locks.try_acquire(task).await.unwrap() {
            guard.release().await;
            return true;
        }
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
    false
}

/// PostgreSQL's advisory locks are reentrant within one connection: one replica asking twice
/// (two runs of its own overlapping) must not get the lock twice.
#[tokio::test]
async fn a_replica_does_not_take_a_lock_it_holds_twice() {
    each_backend(async |t| {
        let locks = t.db.task_locks();
        let first = locks.try_acquire("session_sweep").await.unwrap();
        assert!(first.is_some());
        assert!(locks.try_acquire("session_sweep").await.unwrap().is_none());
    })
    .await;
}
