//! F4: every migration's `down.sql` undoes its `up.sql` — what `diesel migration redo` checks,
//! for all of them at once, on each backend.

use diesel::prelude::*;
use diesel::sql_types::Text;
use diesel_migrations::{EmbeddedMigrations, MigrationHarness, embed_migrations};
use morpheus_domain::ports::UserRepository;
use morpheus_storage::AnyConnection;

use crate::harness::{TestDb, each_backend, new_user};

const SQLITE: EmbeddedMigrations = embed_migrations!("migrations/sqlite");
const POSTGRES: EmbeddedMigrations = embed_migrations!("migrations/postgres");

#[derive(QueryableByName, Debug, PartialEq, Eq)]
struct Column {
    #[diesel(sql_type = Text)]
    described: String,
}

/// Every table's columns with their types and constraints, in a stable order.
fn schema_of(t: &TestDb) -> Vec<Column> {
    let query = if t.is_sqlite() {
        // The statements SQLite keeps for tables and indexes: types, defaults and keys included.
        "SELECT type || ' ' || name || ': ' || coalesce(sql, '') AS described FROM sqlite_master \
         WHERE name NOT LIKE 'sqlite_%' ORDER BY type, name"
    } else {
        "SELECT described FROM (\
         SELECT table_name || '.' || column_name || ' ' || data_type || ' ' || is_nullable || \
         ' ' || coalesce(column_default, '') AS described FROM information_schema.columns \
         WHERE table_schema = 'public' \
         UNION ALL SELECT indexdef FROM pg_indexes WHERE schemaname = 'public' \
         UNION ALL SELECT conrelid::regclass || ': ' || pg_get_constraintdef(oid) \
         FROM pg_constraint WHERE connamespace = 'public'::regnamespace) AS schema \
         ORDER BY described"
    };
    diesel::sql_query(query).load(&mut t.raw()).unwrap()
}

#[tokio::test]
async fn reverting_every_migration_and_running_them_again_gives_the_same_working_schema() {
    each_backend(async |t| {
        let before = schema_of(t);
        let mut raw = t.raw();
        let (reverted, reapplied) = match &mut raw {
            AnyConnection::Sqlite(c) => (
                c.revert_all_migrations(SQLITE).unwrap().len(),
                c.run_pending_migrations(SQLITE).unwrap().len(),
            ),
            AnyConnection::Postgresql(c) => (
                c.revert_all_migrations(POSTGRES).unwrap().len(),
                c.run_pending_migrations(POSTGRES).unwrap().len(),
            ),
        };
        assert!(reverted >= 3, "{reverted} migrations reverted");
        assert_eq!(reapplied, reverted);
        assert_eq!(schema_of(t), before);

        // The pool's connections work on the recreated tables.
        let user = new_user("after-redo@example.com");
        t.db.insert_user(user.clone()).await.unwrap();
        let found = t.db.find_user_by_email(&user.email).await.unwrap();
        assert_eq!(found.map(|u| u.id), Some(user.id));
    })
    .await;
}

#[tokio::test]
async fn reverting_every_migration_leaves_no_table_behind() {
    each_backend(async |t| {
        let mut raw = t.raw();
        match &mut raw {
            AnyConnection::Sqlite(c) => drop(c.revert_all_migrations(SQLITE).unwrap()),
            AnyConnection::Postgresql(c) => drop(c.revert_all_migrations(POSTGRES).unwrap()),
        }
        let left: Vec<String> = schema_of(t)
            .into_iter()
            .map(|c| c.described)
            .filter(|d| !d.contains("__diesel_schema_migrations"))
            .collect();
        assert!(left.is_empty(), "{left:#?}");
    })
    .await;
}
