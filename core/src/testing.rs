//! Fixtures for tests of any crate (feature `testing`): a database of its own per test, on SQLite
//! or PostgreSQL, removed when dropped.

use std::sync::atomic::{AtomicU32, Ordering};

use crate::{Db, Settings};

/// Which storage a test runs on.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Backend {
    /// A fresh SQLite file in a temporary directory (the embedded default).
    Sqlite,
    /// A fresh database on the PostgreSQL server of `WAFLEET_TEST_POSTGRES_URL`
    /// (default `postgres://postgres@127.0.0.1:5432/postgres`).
    Postgres,
}

/// A migrated database of a test's own, and the settings that point at it.
pub struct TestDb {
    /// The pool.
    pub db: Db,
    /// Defaults, with `database_url` set to this database and `wa_keys_secret` to a random key
    /// of the test's own (so processes a test starts can be given it).
    pub settings: Settings,
    /// The ring of that key, for links and stores the test makes. Not registered in the
    /// database: tests of start-up call [`crate::keys::registry::startup`] themselves.
    pub keys: crate::keys::KeyRing,
    _storage: Storage,
}

enum Storage {
    Sqlite(#[allow(dead_code)] tempfile::TempDir),
    /// A database on the server, and the Redis key namespace of the test's queues.
    Postgres {
        admin_url: String,
        name: String,
    },
}

impl Drop for Storage {
    fn drop(&mut self) {
        if let Storage::Postgres { admin_url, name } = self {
            let (admin_url, name) = (admin_url.clone(), name.clone());
            // Drop may run inside a runtime; the database is dropped from a thread of its own.
            let _ = std::thread::spawn(move || {
                let rt = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                    .expect("runtime");
                rt.block_on(async {
                    if let Ok(pool) = sqlx::PgPool::connect(&admin_url).await {
                        let sql = format!("DROP DATABASE IF EXISTS \"{name}\" WITH (FORCE)");
                        let _ = sqlx::query(sqlx::AssertSqlSafe(sql)).execute(&pool).await;
                    }
                    let _ = forget_redis_keys(&name).await;
                });
            })
            .join();
        }
    }
}

/// The PostgreSQL server tests create their databases on.
pub fn postgres_admin_url() -> String {
    std::env::var("WAFLEET_TEST_POSTGRES_URL").unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".into())
}

/// The Redis server tests keep their queues on (`WAFLEET_TEST_REDIS_URL`, default local).
pub fn redis_url() -> String {
    std::env::var("WAFLEET_TEST_REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379".into())
}

/// Deletes the keys of a test's queue namespace.
async fn forget_redis_keys(namespace: &str) -> redis::RedisResult<()> {
    let client = redis::Client::open(redis_url())?;
    let mut conn = client.get_multiplexed_async_connection().await?;
    let keys: Vec<String> = redis::cmd("KEYS")
        .arg(format!("{namespace}:*"))
        .query_async(&mut conn)
        .await?;
    if !keys.is_empty() {
        let _: () = redis::cmd("DEL").arg(keys).query_async(&mut conn).await?;
    }
    Ok(())
}

static COUNTER: AtomicU32 = AtomicU32::new(0);

fn unique_name() -> String {
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or(0);
    format!("wafleet_test_{}_{n}_{nanos}", std::process::id())
}

impl TestDb {
    /// The job queues of this test's settings (Redis for PostgreSQL, the SQLite file otherwise).
    pub async fn queues(&self) -> crate::queue::Queues {
        crate::queue::Queues::connect(&self.settings, &self.db)
            .await
            .expect("Redis must run for the PostgreSQL tests")
    }

    /// A new, migrated database on `backend`. Panics with a clear message when PostgreSQL is down.
    pub async fn new(backend: Backend) -> TestDb {
        Self::with_settings(backend, |_| {}).await
    }

    /// Like [`TestDb::new`], with settings adjusted by `configure` before connecting.
    pub async fn with_settings(backend: Backend, configure: impl FnOnce(&mut Settings)) -> TestDb {
        let test = Self::unmigrated(backend, configure).await;
        test.db.migrate().await.expect("migrate the test database");
        test
    }

    /// A new database on `backend` with the migrations up to `version` applied, to test what a
    /// later one does to existing rows; [`Db::migrate`] then applies the rest.
    pub async fn migrated_to(backend: Backend, version: i64) -> TestDb {
        let test = Self::unmigrated(backend, |_| {}).await;
        let migrator = test.db.migrator();
        let run = match &test.db {
            Db::Sqlite(pool) => migrator.run_to(version, pool).await,
            Db::Postgres(pool) => migrator.run_to(version, pool).await,
        };
        run.expect("migrate the test database");
        test
    }

    async fn unmigrated(backend: Backend, configure: impl FnOnce(&mut Settings)) -> TestDb {
        let mut settings = Settings::defaults();
        let storage = match backend {
            Backend::Sqlite => {
                let dir = tempfile::tempdir().expect("temporary directory");
                settings.database_url = Some(format!("sqlite://{}/wafleet.db", dir.path().display()).as_str().into());
                Storage::Sqlite(dir)
            }
            Backend::Postgres => {
                let admin_url = postgres_admin_url();
                let name = unique_name();
                let admin = sqlx::PgPool::connect(&admin_url)
                    .await
                    .unwrap_or_else(|e| panic!("PostgreSQL must run for the tests ({admin_url}): {e}"));
                sqlx::query(sqlx::AssertSqlSafe(format!("CREATE DATABASE \"{name}\"")))
                    .execute(&admin)
                    .await
                    .expect("create test database");
                admin.close().await;
                let base = admin_url.rsplit_once('/').map_or(admin_url.as_str(), |(base, _)| base);
                settings.database_url = Some(format!("{base}/{name}").as_str().into());
                // Scale-out mode: queues in Redis, under a namespace of the test's own.
                settings.redis_url = Some(redis_url().as_str().into());
                settings.queue_namespace = name.clone();
                Storage::Postgres { admin_url, name }
            }
        };
        settings.database_max_connections = 5;
        let secret = crate::keys::source::random_secret();
        settings.wa_keys_secret = Some(crate::keys::source::encode_secret(&secret).as_str().into());
        configure(&mut settings);
        let keys = crate::keys::source::configured(&settings)
            .expect("valid test keys")
            .unwrap_or_else(|| crate::keys::KeyRing::new(&secret, None));
        let db = Db::connect(&settings).await.expect("connect to the test database");
        TestDb {
            db,
            settings,
            keys,
            _storage: storage,
        }
    }
}

/// Polls `probe` every 50 ms until it holds; fails the test naming `what` after `limit`.
pub async fn eventually<F, Fut>(limit: std::time::Duration, what: &str, mut probe: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = tokio::time::Instant::now() + limit;
    while !probe().await {
        assert!(tokio::time::Instant::now() < deadline, "{what}: not so after {limit:?}");
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
}
