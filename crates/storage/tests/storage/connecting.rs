use std::time::{Duration, Instant};

use diesel::prelude::*;
use diesel::sql_types::Text;
use morpheus_domain::ports::HealthProbe;
use morpheus_storage::{AnyConnection, Database, DatabaseUrl, PoolOptions, SqliteSynchronous};

use crate::harness::each_backend;

#[tokio::test]
async fn migrations_can_run_again_without_effect() {
    each_backend(async |t| {
        // The harness migrated once already.
        t.db.migrate().await.unwrap();
        t.db.migrate().await.unwrap();
        let applied = t.count("SELECT COUNT(*) AS n FROM __diesel_schema_migrations");
        // One row per migration directory, however many there are by now.
        let migrations =
            std::fs::read_dir(concat!(env!("CARGO_MANIFEST_DIR"), "/migrations/sqlite"))
                .unwrap()
                .count();
        assert_eq!(applied, i64::try_from(migrations).unwrap());
        assert!(migrations >= 2);
        t.db.ping().await.unwrap();
    })
    .await;
}

#[tokio::test]
async fn a_sqlite_database_is_created_in_wal_mode_with_its_directory() {
    each_backend(async |t| {
        let Some(path) = t.sqlite_path() else {
            return;
        };
        assert!(path.exists());
        #[derive(QueryableByName)]
        struct Mode {
            #[diesel(sql_type = Text)]
            journal_mode: String,
        }
        let AnyConnection::Sqlite(mut raw) = t.raw() else {
            unreachable!()
        };
        let mode: Mode = diesel::sql_query("PRAGMA journal_mode")
            .get_result(&mut raw)
            .unwrap();
        assert_eq!(mode.journal_mode, "wal");
    })
    .await;
}

#[tokio::test]
async fn an_unreachable_postgres_fails_fast_with_a_redacted_url() {
    let url = DatabaseUrl::parse("postgres://gw:s3cret@127.0.0.1:1/gw").unwrap();
    let started = Instant::now();
    let options = PoolOptions {
        max_size: 2,
        connection_timeout: Duration::from_secs(2),
        sqlite_synchronous: SqliteSynchronous::Normal,
    };
    let error = Database::connect(&url, options).unwrap_err();
    assert!(started.elapsed() < Duration::from_secs(5));
    let shown = format!("{error:#}");
    assert!(shown.contains("127.0.0.1"), "{shown}");
    assert!(!shown.contains("s3cret"), "{shown}");
}
