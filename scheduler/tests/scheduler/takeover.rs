//! A replica dies mid-tick: another takes the tick over within seconds and finishes it, and what
//! the dead one had done is not done twice.
//!
//! Each replica runs on a runtime of its own with its own database pool; "dying" is shutting that
//! runtime down at once, so none of its code runs again and its connections close, as when the
//! process is killed.

use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use wafleet_core::testing::{Backend, TestDb, eventually, execute};
use wafleet_core::types::Timestamp;
use wafleet_core::{Db, Settings, shutdown};
use wafleet_scheduler::{Fire, JobFuture, Scheduler};

/// Items the job's first tick works through, one at a time.
const ITEMS: i64 = 30;
const ITEM_TAKES: Duration = Duration::from_millis(100);

/// The job: its first tick records each item once (idempotently, as every job is written), slowly;
/// later ticks do nothing.
fn slow_job(runner: &'static str, first: Arc<OnceLock<i64>>) -> impl Fn(Db, Timestamp) -> JobFuture + Send + Sync {
    move |db, tick| {
        let first = first.clone();
        Box::pin(async move {
            if *first.get_or_init(|| tick.millis()) != tick.millis() {
                return Ok(());
            }
            for item in 0..ITEMS {
                execute(
                    &db,
                    "INSERT INTO takeover_items (tick, item, runner) VALUES ($1, $2, $3) ON CONFLICT DO NOTHING",
                    &[tick.millis().into(), item.into(), runner.into()],
                )
                .await;
                tokio::time::sleep(ITEM_TAKES).await;
            }
            Ok(())
        })
    }
}

/// A replica on a runtime of its own; dropping the runtime kills it.
fn replica(settings: &Settings, name: &'static str, first: Arc<OnceLock<i64>>) -> tokio::runtime::Runtime {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .expect("runtime");
    let settings = settings.clone();
    runtime.spawn(async move {
        let db = Db::connect(&settings).await.expect("connect");
        let (_keep, stop) = shutdown::channel();
        Scheduler::new(db)
            .runner(name)
            .job("slow", "* * * * * *", Fire::Once, slow_job(name, first))
            .expect("schedule")
            .run(stop)
            .await
            .expect("replica runs");
    });
    runtime
}

async fn items(db: &Db) -> Vec<(i64, String)> {
    const SQL: &str = "SELECT item, runner FROM takeover_items ORDER BY item";
    match db {
        Db::Sqlite(pool) => sqlx::query_as(SQL).fetch_all(pool).await,
        Db::Postgres(pool) => sqlx::query_as(SQL).fetch_all(pool).await,
    }
    .expect("items")
}

async fn a_dead_replicas_tick_is_finished_by_another(backend: Backend) {
    let t = TestDb::new(backend).await;
    const TABLE: &str = "CREATE TABLE takeover_items (tick BIGINT NOT NULL, item BIGINT NOT NULL, \
                         runner TEXT NOT NULL, PRIMARY KEY (tick, item))";
    execute(&t.db, TABLE, &[]).await;
    let first = Arc::new(OnceLock::new());

    let a = replica(&t.settings, "replica-a", first.clone());
    eventually(
        Duration::from_secs(30),
        "replica a is part-way through its tick",
        || async { items(&t.db).await.len() >= 5 },
    )
    .await;
    a.shutdown_background();
    let killed = Instant::now();
    let done_by_a = items(&t.db).await.len();
    assert!(done_by_a < ITEMS as usize, "a finished before it died");

    let b = replica(&t.settings, "replica-b", first.clone());
    eventually(
        Duration::from_secs(30),
        "replica b finishes the dead replica's tick",
        || async { items(&t.db).await.len() == ITEMS as usize },
    )
    .await;
    let took = killed.elapsed();
    let done = items(&t.db).await;
    assert_eq!(
        done.iter().map(|(item, _)| *item).collect::<Vec<_>>(),
        (0..ITEMS).collect::<Vec<_>>(),
        "each item once"
    );
    let by_a = done.iter().take_while(|(_, runner)| runner == "replica-a").count();
    assert!(by_a >= done_by_a, "what a did stays a's: {done:?}");
    assert!(
        done[by_a..].iter().all(|(_, runner)| runner == "replica-b"),
        "b did the rest: {done:?}"
    );
    // Seconds, not the job's next tick: the beat, a few missed ones, one look, the rest of the run.
    println!("the tick was finished {took:?} after its replica died");
    assert!(took < Duration::from_secs(25), "took {took:?}");
    let tick = *first.get().expect("the first tick ran");
    eventually(
        Duration::from_secs(10),
        "the tick is recorded as finished by b",
        || async {
            const SQL: &str = "SELECT runner, finished_at FROM cron_runs WHERE job = 'slow' AND tick_at = $1";
            let row: (String, Option<i64>) = match &t.db {
                Db::Sqlite(pool) => sqlx::query_as(SQL).bind(tick).fetch_one(pool).await,
                Db::Postgres(pool) => sqlx::query_as(SQL).bind(tick).fetch_one(pool).await,
            }
            .expect("cron run");
            row.0 == "replica-b" && row.1.is_some()
        },
    )
    .await;
    b.shutdown_background();
}

wafleet_core::testing::on_both_backends!(a_dead_replicas_tick_is_finished_by_another);
