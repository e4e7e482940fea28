//! F4, disk full: SQLite on a 4 MiB tmpfs filled to ENOSPC. Writes answer 503 in the documented
//! error shape, reads go on, the process lives; once space is freed the file is intact and
//! writes resume. Needs root (mount).

use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use reqwest::Client;
use serde_json::{Value, json};

use super::crash_loop::process_settings;
use super::http_client;
use super::store::Store;
use super::workload::WORKLOAD_ENV;
use crate::helpers::seed_user_at;
use crate::process::GatewayProcess;

/// A 4 MiB tmpfs, unmounted when dropped, even after a failed assertion.
struct SmallDisk {
    dir: tempfile::TempDir,
}

impl SmallDisk {
    fn mount() -> SmallDisk {
        let dir = tempfile::Builder::new()
            .prefix("durability-enospc-")
            .tempdir()
            .expect("a mount point");
        let status = Command::new("mount")
            .args(["-t", "tmpfs", "-o", "size=4m", "tmpfs"])
            .arg(dir.path())
            .status()
            .expect("mount runs");
        assert!(status.success(), "F4 needs root to mount a tmpfs");
        SmallDisk { dir }
    }

    fn path(&self) -> &Path {
        self.dir.path()
    }
}

impl Drop for SmallDisk {
    fn drop(&mut self) {
        // Lazy: a process that still has the database open must not leave the mount behind.
        let _ = Command::new("umount")
            .arg("-l")
            .arg(self.dir.path())
            .status();
    }
}

/// Writes zeros into `path` until the file system refuses: ENOSPC.
fn fill(path: &Path) {
    let mut filler = std::fs::File::create(path).expect("create the filler");
    let chunk = vec![0_u8; 16 * 1024];
    loop {
        if let Err(e) = filler.write_all(&chunk).and_then(|()| filler.sync_all()) {
            assert_eq!(e.raw_os_error(), Some(28), "expected ENOSPC, got {e}");
            break;
        }
    }
    // The last partial chunk may have fit: fill byte by byte to the very end.
    while filler
        .write_all(&[0])
        .and_then(|()| filler.sync_all())
        .is_ok()
    {}
}

/// A write that grows the WAL each time: the automation settings, through the API key.
async fn write(client: &Client, base: &str, key: &str) -> (u16, Value) {
    let r = client
        .put(format!("{base}/api/v1/automation/settings"))
        .bearer_auth(key)
        .json(&json!({"is_enabled": true}))
        .send()
        .await
        .expect("the gateway answers");
    (r.status().as_u16(), r.json().await.unwrap_or(Value::Null))
}

#[tokio::test]
#[ignore = "durability: run by .ci/durability.sh"]
async fn a_full_disk_refuses_writes_with_503_keeps_reads_and_recovers() {
    let disk = SmallDisk::mount();
    let store = Store::Sqlite(disk.path().join("gateway.db"));
    let data_dir = tempfile::tempdir().unwrap();
    let mut gateway =
        GatewayProcess::start(&process_settings(&store, data_dir.path()), WORKLOAD_ENV).await;
    let base = gateway.address.clone();
    let client = http_client();
    let user = seed_user_at(&client, &base).await;
    assert_eq!(write(&client, &base, &user.api_key).await.0, 200);

    let filler: PathBuf = disk.path().join("filler");
    fill(&filler);
    // The WAL reuses the room it already has before it must grow: write until it must.
    let mut refused = None;
    for _ in 0..5_000 {
        let (status, body) = write(&client, &base, &user.api_key).await;
        if status != 200 {
            refused = Some((status, body));
            break;
        }
    }
    let (status, body) = refused.expect("no write failed on a full disk");
    println!("F4 disk full: a write answered {status} {body}");
    assert_eq!(status, 503, "{body}");
    assert!(body["detail"].is_string(), "{body}");
    let other_write = client
        .post(format!("{base}/api/v1/auth/keys"))
        .bearer_auth(&user.access)
        .json(&json!({"name": "no room"}))
        .send()
        .await
        .unwrap();
    assert_eq!(other_write.status(), 503);

    let listed = client
        .get(format!("{base}/api/v1/auth/keys"))
        .bearer_auth(&user.access)
        .send()
        .await
        .unwrap();
    assert_eq!(listed.status(), 200, "reads go on while the disk is full");
    let health = client.get(format!("{base}/health")).send().await.unwrap();
    assert_eq!(health.status(), 200);
    assert!(
        gateway.child.try_wait().unwrap().is_none(),
        "the gateway died on a full disk"
    );

    std::fs::remove_file(&filler).unwrap();
    let freed = Instant::now();
    let mut resumed = None;
    while freed.elapsed() < Duration::from_secs(10) {
        if write(&client, &base, &user.api_key).await.0 == 200 {
            resumed = Some(freed.elapsed());
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let corrupt = store.corruption();
    println!("F4 disk freed: writes resumed after {resumed:?}; integrity problems: {corrupt:?}");
    assert!(
        resumed.is_some(),
        "writes did not resume once space was freed"
    );
    assert!(corrupt.is_empty(), "{corrupt:#?}");
    drop(gateway);
}
