//! `/` and `/health`.

use serde_json::Value;

use crate::helpers::spawn_app;

#[tokio::test]
async fn root_describes_the_service() {
    let app = spawn_app().await;
    let info: Value = app
        .client
        .get(app.url("/"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(info["name"], "Morpheus API Gateway");
    assert_eq!(info["documentation"]["swagger_ui"], "/docs");
}

#[tokio::test]
async fn health_reports_the_database() {
    let app = spawn_app().await;
    let r = app.client.get(app.url("/health")).send().await.unwrap();
    assert_eq!(r.status(), 200);
    let h: Value = r.json().await.unwrap();
    assert_eq!(h["status"], "ok");
    assert_eq!(h["database"], "healthy");
}

#[tokio::test]
async fn health_is_503_with_a_json_body_when_the_database_is_gone() {
    let app = spawn_app().await;
    // Make every query fail: on SQLite remove the schema's tables is not enough for SELECT 1,
    // so point at a database whose connections are refused instead.
    match &app.db {
        crate::helpers::TestDatabase::Sqlite { path } => {
            // A directory where the file was: new connections cannot open it.
            std::fs::remove_file(path).ok();
            std::fs::create_dir_all(path).unwrap();
        }
        crate::helpers::TestDatabase::Postgres {
            admin_url, name, ..
        } => {
            use diesel::{Connection, RunQueryDsl};
            let mut admin = diesel::PgConnection::establish(admin_url).unwrap();
            diesel::sql_query(format!("ALTER DATABASE \"{name}\" ALLOW_CONNECTIONS false"))
                .execute(&mut admin)
                .unwrap();
            diesel::sql_query(format!(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = '{name}'"
            ))
            .execute(&mut admin)
            .unwrap();
        }
    }
    let r = app.client.get(app.url("/health")).send().await.unwrap();
    if r.status() == 200 {
        // SQLite keeps already-open connections working on the unlinked file; this case is
        // only meaningful where connections are really lost.
        assert!(!app.is_postgres());
        return;
    }
    assert_eq!(r.status(), 503);
    let h: Value = r.json().await.unwrap();
    assert_eq!(h["database"], "unhealthy");
    assert_eq!(h["status"], "unavailable");
    assert!(
        !h.to_string().contains("password"),
        "no connection details: {h}"
    );
}
