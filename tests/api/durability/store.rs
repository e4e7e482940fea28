//! Direct looks at the database under test, with the gateway stopped or running: SQLite's own
//! integrity checks, and invariants that hold only if every transaction was all-or-nothing.

use std::path::PathBuf;

use diesel::sql_types::{BigInt, Text};
use diesel::{Connection, PgConnection, QueryableByName, RunQueryDsl, SqliteConnection};

/// The database a durability check runs the gateway on.
#[derive(Debug)]
pub enum Store {
    Sqlite(PathBuf),
    Postgres(String),
}

#[derive(QueryableByName)]
struct Count {
    #[diesel(sql_type = BigInt)]
    n: i64,
}

#[derive(QueryableByName)]
struct Line {
    #[diesel(sql_type = Text)]
    line: String,
}

/// Tables whose rows only make sense together, as `(what, query counting violations)`.
/// A revocation and its log entry are one transaction; a refresh family never has two live
/// tokens (that would be a rotated token come back).
const INVARIANTS: &[(&str, &str)] = &[
    (
        "revoked keys missing from the revocation log",
        "SELECT COUNT(*) AS n FROM api_keys k WHERE NOT k.is_active AND NOT EXISTS \
         (SELECT 1 FROM api_key_revocations r WHERE r.key_prefix = k.key_prefix)",
    ),
    (
        "refresh families with more than one live token",
        "SELECT COUNT(*) AS n FROM (SELECT family_id FROM refresh_tokens \
         WHERE used_at IS NULL AND NOT revoked GROUP BY family_id HAVING COUNT(*) > 1) AS f",
    ),
];

impl Store {
    pub fn url(&self) -> String {
        match self {
            Store::Sqlite(path) => format!("sqlite://{}", path.display()),
            Store::Postgres(url) => url.clone(),
        }
    }

    fn sqlite(path: &std::path::Path) -> SqliteConnection {
        SqliteConnection::establish(&path.display().to_string()).expect("open the SQLite file")
    }

    pub fn count(&self, query: &str) -> i64 {
        let rows: Vec<Count> = match self {
            Store::Sqlite(path) => diesel::sql_query(query).load(&mut Self::sqlite(path)),
            Store::Postgres(url) => diesel::sql_query(query)
                .load(&mut PgConnection::establish(url).expect("connect to PostgreSQL")),
        }
        .unwrap_or_else(|e| panic!("{query}: {e}"));
        rows.first().map_or(0, |r| r.n)
    }

    /// Everything found wrong: SQLite's `integrity_check` and `foreign_key_check` (PostgreSQL
    /// checks its own pages), then the cross-table invariants. Empty when all is well.
    pub fn corruption(&self) -> Vec<String> {
        let mut found = Vec::new();
        if let Store::Sqlite(path) = self {
            let mut conn = Self::sqlite(path);
            let integrity: Vec<String> = diesel::sql_query("PRAGMA integrity_check")
                .load::<IntegrityLine>(&mut conn)
                .expect("integrity_check runs")
                .into_iter()
                .map(|l| l.integrity_check)
                .collect();
            if integrity != ["ok"] {
                found.extend(integrity);
            }
            let orphans: Vec<Line> = diesel::sql_query(
                "SELECT \"table\" || ' row ' || coalesce(rowid, '?') || ' → ' || parent AS line \
                 FROM pragma_foreign_key_check",
            )
            .load(&mut conn)
            .expect("foreign_key_check runs");
            found.extend(
                orphans
                    .into_iter()
                    .map(|l| format!("foreign key: {}", l.line)),
            );
        }
        for (what, query) in INVARIANTS {
            let n = self.count(query);
            if n != 0 {
                found.push(format!("{n} {what}"));
            }
        }
        found
    }
}

#[derive(QueryableByName)]
struct IntegrityLine {
    #[diesel(sql_type = Text)]
    integrity_check: String,
}
