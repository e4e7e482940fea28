use std::path::PathBuf;
use std::time::Duration;

use chrono::{DateTime, SubsecRound, Utc};
use diesel::prelude::*;
use diesel::sql_types::BigInt;
use morpheus_domain::ports::UserRepository;
use morpheus_domain::{Email, NewUser, PasswordHash, User, UserId};
use morpheus_storage::{AnyConnection, Database, DatabaseUrl, PoolOptions, SqliteSynchronous};

/// Set to a Postgres URL to run every test against Postgres as well.
const POSTGRES_ENV: &str = "MORPHEUS_TEST_DATABASE_URL";

/// A migrated database that exists for one test.
pub struct TestDb {
    // Fields drop in order: the pool closes its connections before the database goes.
    pub db: Database,
    target: Target,
}

enum Target {
    Sqlite {
        path: PathBuf,
        _dir: tempfile::TempDir,
    },
    Postgres {
        url: String,
        _drop: DropDatabase,
    },
}

/// Drops the test database when the test ends, even by panicking.
struct DropDatabase {
    admin_url: String,
    name: String,
}

impl TestDb {
    async fn sqlite() -> TestDb {
        let dir = tempfile::tempdir().expect("a temporary directory");
        // A directory that does not exist yet: connecting must create it.
        let path = dir.path().join("nested").join("gateway.db");
        let url = DatabaseUrl::parse(path.to_str().expect("a UTF-8 temp path")).unwrap();
        Self::open(&url, Target::Sqlite { path, _dir: dir }).await
    }

    async fn postgres(admin_url: String) -> TestDb {
        let name = format!("gw_st_{}", uuid::Uuid::new_v4().simple());
        let mut admin = PgConnection::establish(&admin_url).expect("connecting to the test server");
        diesel::sql_query(format!(r#"CREATE DATABASE "{name}""#))
            .execute(&mut admin)
            .expect("creating a test database");
        let (scheme, rest) = admin_url.split_once("://").expect("a URL with a scheme");
        let authority = rest.split(['/', '?']).next().unwrap_or(rest);
        let url = format!("{scheme}://{authority}/{name}");
        let db_url = DatabaseUrl::parse(&url).unwrap();
        Self::open(
            &db_url,
            Target::Postgres {
                url,
                _drop: DropDatabase { admin_url, name },
            },
        )
        .await
    }

    async fn open(url: &DatabaseUrl, target: Target) -> TestDb {
        let options = PoolOptions {
            max_size: 4,
            connection_timeout: Duration::from_secs(2),
            sqlite_synchronous: SqliteSynchronous::Normal,
        };
        let db = Database::connect(url, options).expect("connecting to the test database");
        db.migrate().await.expect("migrating the test database");
        TestDb { db, target }
    }

    /// Another pool on the same database: what a second replica would open.
    pub fn second_replica(&self) -> Database {
        let url = match &self.target {
            Target::Sqlite { path, .. } => DatabaseUrl::Sqlite(path.clone()),
            Target::Postgres { url, .. } => DatabaseUrl::Postgres(url.clone()),
        };
        let options = PoolOptions {
            max_size: 2,
            connection_timeout: Duration::from_secs(2),
            sqlite_synchronous: SqliteSynchronous::Normal,
        };
        Database::connect(&url, options).expect("a second pool")
    }

    /// A connection outside the pool, for checks the ports do not offer.
    pub fn raw(&self) -> AnyConnection {
        match &self.target {
            Target::Sqlite { path, .. } => {
                let mut conn = SqliteConnection::establish(path.to_str().unwrap()).unwrap();
                diesel::sql_query("PRAGMA foreign_keys = ON")
                    .execute(&mut conn)
                    .unwrap();
                AnyConnection::Sqlite(conn)
            }
            Target::Postgres { url, .. } => {
                AnyConnection::Postgresql(PgConnection::establish(url).unwrap())
            }
        }
    }

    /// Runs a `SELECT COUNT(*) AS n …` on a raw connection.
    pub fn count(&self, sql: &str) -> i64 {
        #[derive(QueryableByName)]
        struct Count {
            #[diesel(sql_type = BigInt)]
            n: i64,
        }
        diesel::sql_query(sql)
            .get_result::<Count>(&mut self.raw())
            .unwrap_or_else(|e| panic!("{sql}: {e}"))
            .n
    }

    pub fn execute(&self, sql: &str) {
        diesel::sql_query(sql)
            .execute(&mut self.raw())
            .unwrap_or_else(|e| panic!("{sql}: {e}"));
    }

    pub fn is_sqlite(&self) -> bool {
        matches!(self.target, Target::Sqlite { .. })
    }

    pub fn sqlite_path(&self) -> Option<&PathBuf> {
        match &self.target {
            Target::Sqlite { path, .. } => Some(path),
            Target::Postgres { .. } => None,
        }
    }
}

impl Drop for DropDatabase {
    fn drop(&mut self) {
        // FORCE, in case a connection outlived the pool (a task still running after a panic).
        if let Ok(mut admin) = PgConnection::establish(&self.admin_url) {
            let _ = diesel::sql_query(format!(
                r#"DROP DATABASE IF EXISTS "{}" WITH (FORCE)"#,
                self.name
            ))
            .execute(&mut admin);
        }
    }
}

/// Runs `test` once per available backend, each time on a fresh database.
pub async fn each_backend(test: impl AsyncFn(&TestDb)) {
    let mut databases = vec![TestDb::sqlite().await];
    if let Ok(url) = std::env::var(POSTGRES_ENV) {
        databases.push(TestDb::postgres(url).await);
    }
    for db in databases {
        // Shown with the output of a failing test.
        println!("--- backend: {}", db.db.backend_name());
        test(&db).await;
    }
}

/// Now, truncated to what both backends store (microseconds), so round trips compare equal.
pub fn now() -> DateTime<Utc> {
    Utc::now().trunc_subsecs(6)
}

pub fn new_user(email: &str) -> NewUser {
    NewUser {
        id: UserId::random(),
        email: Email::parse(email).unwrap(),
        name: None,
        password_hash: PasswordHash("$argon2id$v=19$not-a-real-hash".into()),
        created_at: now(),
    }
}

pub async fn insert_user(db: &Database, email: &str) -> User {
    db.insert_user(new_user(email)).await.unwrap()
}
