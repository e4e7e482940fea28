//! The harness: every test gets its own server on a random port and its own database — a
//! fresh SQLite file, or, when `MORPHEUS_TEST_DATABASE_URL` points at a PostgreSQL server, a
//! fresh PostgreSQL database that is dropped afterwards.

use std::sync::OnceLock;

use diesel::{Connection, PgConnection, RunQueryDsl, SqliteConnection};
use morpheus_gateway::configuration::Settings;
use morpheus_gateway::secrets::secret;
use morpheus_gateway::startup::Application;
use reqwest::{Client, Response};
use serde_json::{Value, json};

use crate::log_capture;

pub const JWT_SECRET: &str = "test-jwt-secret-that-is-long-enough-0123456789";
pub const PEPPER: &str = "test-api-key-pepper-that-is-long-enough-012345";
pub const MASTER_KEY_HEX: &str = "000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f";
pub const PASSWORD: &str = "correct horse battery";

pub enum TestDatabase {
    Sqlite {
        path: std::path::PathBuf,
    },
    Postgres {
        admin_url: String,
        name: String,
        url: String,
    },
}

pub struct TestApp {
    pub address: String,
    /// The settings the app was started with (for running maintenance commands against it).
    pub settings: Settings,
    pub client: Client,
    pub db: TestDatabase,
    /// The separate metrics listener's port, when the settings asked for one.
    pub metrics_port: Option<u16>,
    _dir: tempfile::TempDir,
}

/// A user with an access token, a refresh token and an API key.
pub struct Seeded {
    pub email: String,
    pub id: i64,
    pub access: String,
    pub refresh: String,
    pub api_key: String,
}

pub async fn spawn_app() -> TestApp {
    spawn_app_with(|_| {}).await
}

/// Spawns the app after letting the test adjust its settings.
pub async fn spawn_app_with(adjust: impl FnOnce(&mut Settings)) -> TestApp {
    log_capture::install();
    // reqwest's rustls has no default crypto provider; an error means one is installed.
    let _ = rustls::crypto::ring::default_provider().install_default();
    let dir = tempfile::tempdir().expect("temp dir");
    let db = match std::env::var("MORPHEUS_TEST_DATABASE_URL") {
        Ok(admin_url) if !admin_url.is_empty() => create_pg_database(admin_url),
        _ => TestDatabase::Sqlite {
            path: dir.path().join("gateway.db"),
        },
    };
    let mut settings = Settings {
        bind: "127.0.0.1:0".to_owned(),
        database_url: match &db {
            TestDatabase::Sqlite { path } => format!("sqlite://{}", path.display()),
            TestDatabase::Postgres { url, .. } => url.clone(),
        },
        data_dir: dir.path().to_path_buf(),
        jwt_secret: Some(secret(JWT_SECRET)),
        api_key_pepper: Some(secret(PEPPER)),
        wallet_master_key: Some(secret(MASTER_KEY_HEX)),
        workers: 1,
        // A debug build on a busy CI machine runs late enough to shed the suite's own bursts;
        // `chat_admission` tests shedding with its own setting.
        chat_shed_lateness_ms: 0,
        db_pool_size: 4,
        ..Settings::default()
    };
    adjust(&mut settings);
    let app = Application::build(settings.clone())
        .await
        .expect("the app starts");
    let address = format!("http://127.0.0.1:{}", app.port());
    let metrics_port = app.metrics_port();
    tokio::spawn(app.run_until_stopped());
    TestApp {
        address,
        settings,
        client: Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .expect("client"),
        db,
        metrics_port,
        _dir: dir,
    }
}

fn create_pg_database(admin_url: String) -> TestDatabase {
    let name = format!("gw_test_{}", uuid::Uuid::new_v4().simple());
    let mut admin = PgConnection::establish(&admin_url).expect("connect to the PostgreSQL server");
    diesel::sql_query(format!("CREATE DATABASE \"{name}\""))
        .execute(&mut admin)
        .expect("create a test database");
    let base = admin_url
        .rsplit_once('/')
        .map(|(base, _)| base.to_owned())
        .unwrap_or(admin_url.clone());
    let url = format!("{base}/{name}");
    TestDatabase::Postgres {
        admin_url,
        name,
        url,
    }
}

impl Drop for TestApp {
    fn drop(&mut self) {
        if let TestDatabase::Postgres {
            admin_url, name, ..
        } = &self.db
            && let Ok(mut admin) = PgConnection::establish(admin_url)
        {
            let _ = diesel::sql_query(format!("DROP DATABASE IF EXISTS \"{name}\" WITH (FORCE)"))
                .execute(&mut admin);
        }
    }
}

/// Registers a user, logs in and creates an API key on the gateway at `base` (this test's app,
/// or a gateway process beside it).
pub async fn seed_user_at(client: &reqwest::Client, base: &str) -> Seeded {
    let email = unique_email();
    let credentials = json!({"email": email, "password": PASSWORD});
    let send = |path: &str| client.post(format!("{base}{path}"));
    let r = send("/api/v1/auth/register")
        .json(&credentials)
        .send()
        .await
        .expect("request");
    assert_eq!(r.status(), 201, "{}", r.text().await.unwrap_or_default());
    let user: Value = r.json().await.expect("json");
    let tokens: Value = send("/api/v1/auth/login")
        .json(&credentials)
        .send()
        .await
        .expect("request")
        .json()
        .await
        .expect("json");
    let access = tokens["access_token"].as_str().expect("access").to_owned();
    let r = send("/api/v1/auth/keys")
        .bearer_auth(&access)
        .json(&json!({"name": "default"}))
        .send()
        .await
        .expect("request");
    assert_eq!(r.status(), 200);
    let key: Value = r.json().await.expect("json");
    Seeded {
        id: user["id"].as_i64().expect("id"),
        email,
        refresh: tokens["refresh_token"]
            .as_str()
            .expect("refresh")
            .to_owned(),
        api_key: key["key"].as_str().expect("key").to_owned(),
        access,
    }
}

/// A unique address per call, so tests never collide even on a shared database server.
pub fn unique_email() -> String {
    format!("user-{}@example.com", uuid::Uuid::new_v4().simple())
}

impl TestApp {
    pub fn url(&self, path: &str) -> String {
        format!("{}{}", self.address, path)
    }

    pub async fn post_json(&self, path: &str, body: &Value) -> Response {
        self.client
            .post(self.url(path))
            .json(body)
            .send()
            .await
            .expect("request")
    }

    pub async fn register(&self, email: &str, password: &str) -> Response {
        self.post_json(
            "/api/v1/auth/register",
            &json!({"email": email, "password": password}),
        )
        .await
    }

    pub async fn login(&self, email: &str, password: &str) -> Response {
        self.post_json(
            "/api/v1/auth/login",
            &json!({"email": email, "password": password}),
        )
        .await
    }

    /// Sends a request with `Authorization: Bearer <token>`.
    pub async fn authed(
        &self,
        method: reqwest::Method,
        path: &str,
        token: &str,
        body: Option<&Value>,
    ) -> Response {
        let mut req = self
            .client
            .request(method, self.url(path))
            .bearer_auth(token);
        if let Some(body) = body {
            req = req.json(body);
        }
        req.send().await.expect("request")
    }

    /// GETs a path with a bearer credential and returns its JSON body; the status must be 2xx.
    pub async fn get_json(&self, path: &str, token: &str) -> Value {
        let r = self.authed(reqwest::Method::GET, path, token, None).await;
        assert!(r.status().is_success(), "GET {path}: {}", r.status());
        r.json().await.expect("json")
    }

    /// DELETEs a path with a bearer credential.
    pub async fn delete(&self, path: &str, token: &str) -> Response {
        self.authed(reqwest::Method::DELETE, path, token, None)
            .await
    }

    /// GETs a path without credentials and returns its JSON body.
    pub async fn get_public_json(&self, path: &str) -> Value {
        let r = self
            .client
            .get(self.url(path))
            .send()
            .await
            .expect("request");
        r.json().await.expect("json")
    }

    pub async fn create_key(&self, access: &str, name: &str) -> Value {
        let r = self
            .authed(
                reqwest::Method::POST,
                "/api/v1/auth/keys",
                access,
                Some(&json!({"name": name})),
            )
            .await;
        assert_eq!(r.status(), 200);
        r.json().await.expect("json")
    }

    /// Registers a user, logs in and creates an API key.
    pub async fn seed_user(&self) -> Seeded {
        seed_user_at(&self.client, &self.address).await
    }

    /// Runs a statement directly against the app's database.
    pub fn execute_sql(&self, statement: &str) -> usize {
        match &self.db {
            TestDatabase::Sqlite { path } => {
                let mut c =
                    SqliteConnection::establish(&path.display().to_string()).expect("sqlite");
                diesel::sql_query(statement).execute(&mut c).expect("sql")
            }
            TestDatabase::Postgres { url, .. } => {
                let mut c = PgConnection::establish(url).expect("postgres");
                diesel::sql_query(statement).execute(&mut c).expect("sql")
            }
        }
    }

    /// Everything stored in a table, as text (for "the secret is not in the database" checks).
    pub fn dump_table(&self, table: &str) -> String {
        #[derive(diesel::QueryableByName)]
        struct Row {
            #[diesel(sql_type = diesel::sql_types::Text)]
            text: String,
        }
        let rows: Vec<Row> = match &self.db {
            TestDatabase::Sqlite { path } => {
                let mut c =
                    SqliteConnection::establish(&path.display().to_string()).expect("sqlite");
                let cols: Vec<String> = pragma_columns(&mut c, table);
                let concat = cols
                    .iter()
                    .map(|c| format!("coalesce(quote({c}),'')"))
                    .collect::<Vec<_>>()
                    .join(" || '|' || ");
                diesel::sql_query(format!("SELECT {concat} AS text FROM {table}"))
                    .load(&mut c)
                    .expect("dump")
            }
            TestDatabase::Postgres { url, .. } => {
                let mut c = PgConnection::establish(url).expect("postgres");
                diesel::sql_query(format!(
                    "SELECT row_to_json(t)::text AS text FROM {table} t"
                ))
                .load(&mut c)
                .expect("dump")
            }
        };
        rows.into_iter()
            .map(|r| r.text)
            .collect::<Vec<_>>()
            .join("\n")
    }

    /// The value of one sample of `GET /metrics`, e.g.
    /// `morpheus_credit_holds_total{outcome="placed"}` (0 when absent).
    pub async fn metric(&self, sample: &str) -> f64 {
        let text = self
            .client
            .get(self.url("/metrics"))
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        text.lines()
            .find_map(|line| line.strip_prefix(sample)?.trim().parse().ok())
            .unwrap_or(0.0)
    }

    /// Counts the rows a query returns (`SELECT … AS n`).
    pub fn count(&self, query: &str) -> i64 {
        #[derive(diesel::QueryableByName)]
        struct N {
            #[diesel(sql_type = diesel::sql_types::BigInt)]
            n: i64,
        }
        let rows: Vec<N> = match &self.db {
            TestDatabase::Sqlite { path } => {
                let mut c =
                    SqliteConnection::establish(&path.display().to_string()).expect("sqlite");
                diesel::sql_query(query).load(&mut c).expect("count")
            }
            TestDatabase::Postgres { url, .. } => {
                let mut c = PgConnection::establish(url).expect("postgres");
                diesel::sql_query(query).load(&mut c).expect("count")
            }
        };
        rows.first().map(|r| r.n).unwrap_or(0)
    }

    pub fn is_postgres(&self) -> bool {
        matches!(self.db, TestDatabase::Postgres { .. })
    }
}

fn pragma_columns(c: &mut SqliteConnection, table: &str) -> Vec<String> {
    #[derive(diesel::QueryableByName)]
    struct Col {
        #[diesel(sql_type = diesel::sql_types::Text)]
        name: String,
    }
    let cols: Vec<Col> =
        diesel::sql_query(format!("SELECT name FROM pragma_table_info('{table}')"))
            .load(c)
            .expect("columns");
    cols.into_iter().map(|c| c.name).collect()
}

/// Asserts an error response has the documented JSON shape and returns its body.
pub async fn error_body(r: Response, status: u16) -> Value {
    assert_eq!(r.status(), status, "unexpected status");
    let ct = r
        .headers()
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_owned();
    assert!(ct.starts_with("application/json"), "content-type {ct:?}");
    let body: Value = r.json().await.expect("JSON error body");
    assert!(body.get("detail").is_some(), "no detail in {body}");
    body
}

/// The contract as JSON (generated from openapi.yaml by build.rs).
pub fn contract() -> &'static Value {
    static CONTRACT: OnceLock<Value> = OnceLock::new();
    CONTRACT.get_or_init(|| {
        serde_json::from_str(include_str!(concat!(env!("OUT_DIR"), "/openapi.json")))
            .expect("contract JSON")
    })
}

/// A client whose connections come from `127.0.0.<last>` (another client address).
pub fn client_from(last: u8) -> Client {
    Client::builder()
        .local_address(std::net::IpAddr::from([127, 0, 0, last]))
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .expect("client")
}
