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
async fn health_is_503_with_a_json_body_when_the_database_is_gone() {
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
    let r = app.client.get(app.url("/health")).send().await.unwrap();
    assert_eq!(r.status(), 503);
    let h: Value = r.json().await.unwrap();
    assert_eq!(h["database"], "unhealthy");
    assert_eq!(h["status"], "unavailable");
    assert!(
        !h.to_string().contains("postgres"),
        "no connection details: {h}"
    );

    // Other operations that need the database answer 503 too, not 500.
    let r = app
        .post_json(
            "/api/v1/auth/login",
            &serde_json::json!({"email": "a@example.com", "password": "whatever!"}),
        )
        .await;
    assert_eq!(r.status(), 503);
}
