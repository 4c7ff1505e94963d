//! Rolling upgrades: a process of the previous release starts against a schema that a newer
//! release already migrated, and must run instead of refusing the versions it does not know.

use wafleet_core::Db;
use wafleet_core::testing::{Backend, TestDb};

async fn an_older_binary_accepts_a_newer_schema(backend: Backend) {
    let test = TestDb::new(backend).await;
    let db = &test.db;
    // What a newer release's migration leaves in sqlx's bookkeeping.
    const SQL: &str = "INSERT INTO _sqlx_migrations (version, description, success, checksum, execution_time) \
                       VALUES (99990101000000, 'from a newer release', TRUE, $1, 0)";
    let checksum = vec![0_u8; 48];
    match db {
        Db::Sqlite(pool) => sqlx::query(SQL).bind(checksum).execute(pool).await.map(drop),
        Db::Postgres(pool) => sqlx::query(SQL).bind(checksum).execute(pool).await.map(drop),
    }
    .unwrap();

    db.migrate()
        .await
        .expect("a schema one release ahead must not stop this binary");
    db.ping().await.unwrap();
}

wafleet_core::testing::on_both_backends!(an_older_binary_accepts_a_newer_schema);
