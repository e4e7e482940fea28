//! What the gateway writes to disk is its owner's alone: the data directory, the generated
//! secrets, the SQLite database and its `-wal`, `-shm` and lock files.

use std::os::unix::fs::PermissionsExt;
use std::path::Path;

use crate::helpers::{PASSWORD, TestDatabase, spawn_app_with, unique_email};

fn mode(path: &Path) -> u32 {
    std::fs::metadata(path)
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
        .permissions()
        .mode()
        & 0o777
}

/// Every entry under `dir` (and `dir` itself): directories 0700, files 0600.
fn assert_owner_only(dir: &Path) -> Vec<String> {
    assert_eq!(mode(dir), 0o700, "{}", dir.display());
    let mut seen = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        let want = if path.is_dir() { 0o700 } else { 0o600 };
        assert_eq!(mode(&path), want, "{} is {:o}", path.display(), mode(&path));
        seen.push(path.file_name().unwrap().to_string_lossy().into_owned());
    }
    seen.sort();
    seen
}

#[tokio::test]
async fn the_data_directory_secrets_and_database_files_are_owner_only() {
    let root = tempfile::tempdir().unwrap();
    // With the usual umask (022), files created without a mode are readable by everyone.
    let data_dir = root.path().join("state/data");
    let db_dir = root.path().join("state/db");
    let app = spawn_app_with(|s| {
        s.data_dir = data_dir.clone();
        // Generated, so written by the gateway.
        s.jwt_secret = None;
        s.api_key_pepper = None;
        s.wallet_master_key = None;
        if !s.database_url.starts_with("postgres") {
            s.database_url = format!("sqlite://{}", db_dir.join("gateway.db").display());
        }
    })
    .await;
    // Writes, so the WAL and its index exist.
    let email = unique_email();
    assert_eq!(app.register(&email, PASSWORD).await.status(), 201);
    assert_eq!(app.login(&email, PASSWORD).await.status(), 200);

    let data = assert_owner_only(&data_dir);
    assert!(data.contains(&"secrets.json".to_owned()), "{data:?}");
    assert_eq!(mode(&root.path().join("state")), 0o700);
    if let TestDatabase::Sqlite { .. } = app.db {
        let files = assert_owner_only(&db_dir);
        for expected in ["gateway.db", "gateway.db-wal", "gateway.db-shm"] {
            assert!(files.contains(&expected.to_owned()), "{files:?}");
        }
        println!("owner-only: {files:?}");
    }
}
