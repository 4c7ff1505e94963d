//! Fixtures for tests of any crate (feature `testing`): a database of its own per test, on SQLite
//! or PostgreSQL, removed when dropped; an S3 server ([`s3`]); Python programs ([`python`]).

pub mod python;
pub mod s3;

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
    _media: tempfile::TempDir,
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
        // Files of received messages go to a directory of the test's own, never `./data`.
        let media = tempfile::tempdir().expect("temporary media directory");
        settings.media_dir = Some(media.path().to_owned());
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
            _media: media,
        }
    }
}

/// A value bound to a test's own SQL ([`execute`], [`fetch_optional`]).
#[derive(Clone, Copy, Debug)]
pub enum Param<'a> {
    /// An integer (ids, times in ms).
    Int(i64),
    /// A text.
    Text(&'a str),
}

impl From<i64> for Param<'_> {
    fn from(value: i64) -> Self {
        Param::Int(value)
    }
}

impl<'a> From<&'a str> for Param<'a> {
    fn from(value: &'a str) -> Self {
        Param::Text(value)
    }
}

/// `query` with `params` bound as `$1`, `$2`, … in order.
fn bound<'q, DB>(
    mut query: sqlx::query::Query<'q, DB, DB::Arguments>,
    params: &[Param<'_>],
) -> sqlx::query::Query<'q, DB, DB::Arguments>
where
    DB: sqlx::Database,
    for<'e> i64: sqlx::Encode<'e, DB> + sqlx::Type<DB>,
    for<'e> String: sqlx::Encode<'e, DB> + sqlx::Type<DB>,
{
    for param in params {
        query = match *param {
            Param::Int(value) => query.bind(value),
            Param::Text(value) => query.bind(value.to_owned()),
        };
    }
    query
}

/// Runs a test's own statement (standing in for a worker, WhatsApp or time passing) on either
/// backend; the rows it changed. Fails the test, naming the statement, if it fails.
pub async fn execute(db: &Db, sql: &'static str, params: &[Param<'_>]) -> u64 {
    match db {
        Db::Sqlite(pool) => bound(sqlx::query(sql), params)
            .execute(pool)
            .await
            .map(|r| r.rows_affected()),
        Db::Postgres(pool) => bound(sqlx::query(sql), params)
            .execute(pool)
            .await
            .map(|r| r.rows_affected()),
    }
    .unwrap_or_else(|e| panic!("{sql}: {e}"))
}

/// The first column of the first row a test's own query answers, on either backend; `None`
/// when it answers no row. Fails the test, naming the query, if it fails.
pub async fn fetch_optional<T>(db: &Db, sql: &'static str, params: &[Param<'_>]) -> Option<T>
where
    T: for<'r> sqlx::Decode<'r, sqlx::Sqlite> + sqlx::Type<sqlx::Sqlite>,
    T: for<'r> sqlx::Decode<'r, sqlx::Postgres> + sqlx::Type<sqlx::Postgres>,
{
    use sqlx::Row;
    match db {
        Db::Sqlite(pool) => bound(sqlx::query(sql), params)
            .fetch_optional(pool)
            .await
            .and_then(|row| row.map(|r| r.try_get(0)).transpose()),
        Db::Postgres(pool) => bound(sqlx::query(sql), params)
            .fetch_optional(pool)
            .await
            .and_then(|row| row.map(|r| r.try_get(0)).transpose()),
    }
    .unwrap_or_else(|e| panic!("{sql}: {e}"))
}

/// An account and its device written with the columns of the first migration only, for tests of
/// what a later migration does to rows already there (after [`TestDb::migrated_to`]; the current
/// `Db::create_user` reads columns added later).
pub async fn bare_account_and_device(db: &Db) -> (crate::types::UserId, crate::types::DeviceId) {
    let user: i64 = fetch_optional(
        db,
        "INSERT INTO users (email, password_hash, is_admin, created_at) \
         VALUES ('owner@example.com', 'unused', TRUE, 1) RETURNING id",
        &[],
    )
    .await
    .expect("the account");
    let device: i64 = fetch_optional(
        db,
        "INSERT INTO devices (user_id, name, created_at, updated_at) VALUES ($1, 'Shop', 1, 1) RETURNING id",
        &[user.into()],
    )
    .await
    .expect("the device");
    (crate::types::UserId(user), crate::types::DeviceId(device))
}

/// How often the waits below probe.
const POLL_EVERY: std::time::Duration = std::time::Duration::from_millis(50);

/// Polls `probe` every 50 ms until it answers `Some`, and returns that; `None` once `limit` has
/// passed. The one poll loop of the tests: waits that look at something particular (a page, an
/// API resource, a process) are probes given to it, and say themselves what they last saw.
pub async fn poll_for<T>(limit: std::time::Duration, mut probe: impl AsyncFnMut() -> Option<T>) -> Option<T> {
    let deadline = tokio::time::Instant::now() + limit;
    loop {
        if let Some(found) = probe().await {
            return Some(found);
        }
        if tokio::time::Instant::now() >= deadline {
            return None;
        }
        tokio::time::sleep(POLL_EVERY).await;
    }
}

/// Polls `probe` until it holds; fails the test naming `what` after `limit`.
pub async fn eventually(limit: std::time::Duration, what: &str, mut probe: impl AsyncFnMut() -> bool) {
    eventually_some(limit, what, async || probe().await.then_some(())).await
}

/// Polls `probe` until it answers `Some`, and returns that; fails the test naming `what` after
/// `limit`.
pub async fn eventually_some<T>(limit: std::time::Duration, what: &str, probe: impl AsyncFnMut() -> Option<T>) -> T {
    poll_for(limit, probe)
        .await
        .unwrap_or_else(|| panic!("{what}: not so after {limit:?}"))
}

/// Declares each named test body as two tests, `sqlite::NAME` and `postgres::NAME`, in the
/// module it is called from, so the same suite runs on both storages (PostgreSQL with Redis).
///
/// - `on_both_backends!(first, second)`: each `async fn NAME(backend: Backend)` of the calling
///   module, given [`Backend::Sqlite`] in one test and [`Backend::Postgres`] in the other.
/// - `on_both_backends!(given crate::helpers::spawn_app => first, second; third)`: the names
///   before `;` take what `spawn_app(backend).await` returns (a running app, say); those after it
///   take the `Backend`. The setup is named by a path that resolves from any module (`crate::…`).
///
/// Tests run on a multi-threaded runtime with two workers. Call it once per module (it declares
/// the modules `sqlite` and `postgres`).
///
/// A macro and not a function: a function cannot declare tests, and each backend has to be a
/// test of its own so that it is listed, filtered and run separately (CI runs the PostgreSQL
/// ones too, and a failure names the backend).
#[doc(hidden)]
#[macro_export]
macro_rules! __on_both_backends {
    (@mod $module:ident, $backend:ident, $setup:path, [$($given:ident),*], [$($name:ident),*]) => {
        mod $module {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $given() {
                    super::$given($setup($crate::testing::Backend::$backend).await).await
                }
            )*
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    super::$name($crate::testing::Backend::$backend).await
                }
            )*
        }
    };
    (given $setup:path => $($given:ident),+ $(,)? $(; $($name:ident),+ $(,)?)?) => {
        $crate::__on_both_backends!(@mod sqlite, Sqlite, $setup, [$($given),+], [$($($name),+)?]);
        $crate::__on_both_backends!(@mod postgres, Postgres, $setup, [$($given),+], [$($($name),+)?]);
    };
    ($($name:ident),+ $(,)?) => {
        $crate::__on_both_backends!(@mod sqlite, Sqlite, $crate::testing::Backend, [], [$($name),+]);
        $crate::__on_both_backends!(@mod postgres, Postgres, $crate::testing::Backend, [], [$($name),+]);
    };
}
pub use crate::__on_both_backends as on_both_backends;
