//! `/` and `/health`.

use serde_json::Value;

use crate::helpers::spawn_app;

#[tokio::test]
async fn root_describes_the_service() {
    let app = spawn_app().await;
    let info: Value = app.get_public_json("/").await;
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

/// Run on PostgreSQL (CI runs the suite on both backends): SQLite is a file the process keeps
/// open, with no server whose loss could be simulated.
#[tokio::test]
async fn without_the_database_health_stays_200_and_ready_turns_503() {
    let app = spawn_app().await;
    let crate::helpers::TestDatabase::Postgres {
        admin_url, name, ..
    } = &app.db
    else {
        return;
    };
    {
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
    // Liveness holds (the process is fine); readiness does not.
    let r = app.client.get(app.url("/health")).send().await.unwrap();
    assert_eq!(r.status(), 200);
    let h: Value = r.json().await.unwrap();
    assert_eq!(h["database"], "unhealthy");
    assert_eq!(h["status"], "ok");
    assert!(
        !h.to_string().contains("postgres"),
        "no connection details: {h}"
    );
    let r = app.client.get(app.url("/ready")).send().await.unwrap();
    assert_eq!(r.status(), 503);
    let ready: Value = r.json().await.unwrap();
    assert_eq!(ready["status"], "unavailable");
    assert_eq!(ready["database"], "unhealthy");

    // Other operations that need the database answer 503 too, not 500.
    let r = app
        .post_json(
            "/api/v1/auth/login",
            &serde_json::json!({"email": "a@example.com", "password": "whatever!"}),
        )
        .await;
    assert_eq!(r.status(), 503);
}
