//! Two scheduler replicas on one database: apalis-cron fires every tick on both, and each tick of a
//! [`Fire::Once`] job runs exactly once.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use wafleet_core::media_store::MediaStore;

use wafleet_core::Db;
use wafleet_core::cache::{Invalidations, ReadCache};
use wafleet_core::shutdown;
use wafleet_core::testing::{Backend, TestDb};
use wafleet_core::types::Timestamp;
use wafleet_scheduler::{Fire, JobFuture, Scheduler};

/// Runs per tick, keyed by tick time in milliseconds.
type Counts = Arc<Mutex<BTreeMap<i64, u32>>>;

fn counter(counts: &Counts) -> impl Fn(Db, Timestamp) -> JobFuture + Send + Sync + 'static {
    let counts = counts.clone();
    move |_db, tick| {
        let counts = counts.clone();
        Box::pin(async move {
            *counts.lock().expect("counts").entry(tick.millis()).or_default() += 1;
            Ok(())
        })
    }
}

fn replica(db: &Db, name: &str, once: &Counts, every: &Counts) -> Scheduler {
    Scheduler::new(db.clone())
        .runner(name)
        .job("counted", "* * * * * *", Fire::Once, counter(once))
        .expect("schedule")
        .job("counted_everywhere", "* * * * * *", Fire::EveryReplica, counter(every))
        .expect("schedule")
}

async fn each_tick_runs_once(backend: Backend) {
    let t = TestDb::new(backend).await;
    let (once, every) = (Counts::default(), Counts::default());
    let (trigger, stop) = shutdown::channel();
    let a = tokio::spawn(replica(&t.db, "replica-a", &once, &every).run(stop.clone()));
    let b = tokio::spawn(replica(&t.db, "replica-b", &once, &every).run(stop));
    tokio::time::sleep(Duration::from_millis(5500)).await;
    trigger.trigger();
    for replica in [a, b] {
        tokio::time::timeout(Duration::from_secs(40), replica)
            .await
            .expect("replica stops after shutdown")
            .expect("join")
            .expect("replica ran cleanly");
    }

    let once = once.lock().expect("counts").clone();
    let every = every.lock().expect("counts").clone();
    // Generous: a tick a second for five and a half seconds.
    assert!(once.len() >= 3, "ticks ran: {once:?}");
    assert!(once.values().all(|&runs| runs == 1), "each tick ran once: {once:?}");
    // Without the claim both replicas run a tick: the ticks really reached both.
    assert!(every.values().any(|&runs| runs == 2), "both replicas fired: {every:?}");
    assert!(
        every.values().all(|&runs| runs <= 2),
        "one firing per replica: {every:?}"
    );

    let rows = claimed_ticks(&t.db).await;
    assert_eq!(
        rows.keys().copied().collect::<Vec<_>>(),
        once.keys().copied().collect::<Vec<_>>()
    );
    assert!(
        rows.keys().all(|tick| tick % 1000 == 0),
        "ticks are whole seconds: {rows:?}"
    );
    assert!(
        rows.values().all(|finished| *finished),
        "every claimed tick finished: {rows:?}"
    );
}

/// `cron_runs` of the counted job: tick time and whether the run finished.
async fn claimed_ticks(db: &Db) -> BTreeMap<i64, bool> {
    const SQL: &str = "SELECT tick_at, finished_at FROM cron_runs WHERE job = 'counted'";
    let rows: Vec<(i64, Option<i64>)> = match db {
        Db::Sqlite(pool) => sqlx::query_as(SQL).fetch_all(pool).await,
        Db::Postgres(pool) => sqlx::query_as(SQL).fetch_all(pool).await,
    }
    .expect("cron_runs");
    rows.into_iter()
        .map(|(tick, finished)| (tick, finished.is_some()))
        .collect()
}

async fn standard_jobs_stop_on_shutdown(backend: Backend) {
    let t = TestDb::new(backend).await;
    let (trigger, stop) = shutdown::channel();
    let context = wafleet_scheduler::Context {
        invalidations: Invalidations::Local(ReadCache::off()),
        live_worker: Duration::from_secs(15),
        queues: t.queues().await,
        webhook_keep: Duration::from_secs(7 * 24 * 3600),
        media: MediaStore::from_settings(&t.settings).expect("media store"),
    };
    let run = tokio::spawn(wafleet_scheduler::run(t.db.clone(), context, stop));
    tokio::time::sleep(Duration::from_millis(300)).await;
    trigger.trigger();
    tokio::time::timeout(Duration::from_secs(40), run)
        .await
        .expect("scheduler stops after shutdown")
        .expect("join")
        .expect("scheduler ran cleanly");
}

#[tokio::test]
async fn analytics_rollup_is_a_standard_job() {
    let t = TestDb::new(Backend::Sqlite).await;
    let context = wafleet_scheduler::Context {
        invalidations: Invalidations::Local(ReadCache::off()),
        live_worker: Duration::from_secs(15),
        queues: t.queues().await,
        webhook_keep: Duration::from_secs(7 * 24 * 3600),
        media: MediaStore::from_settings(&t.settings).expect("media store"),
    };
    let scheduler = wafleet_scheduler::jobs::standard(Scheduler::new(t.db.clone()), context).expect("schedules");
    assert!(scheduler.job_names().contains(&"analytics_rollup"));
    // The job itself runs against a fresh database.
    wafleet_scheduler::jobs::analytics_rollup(&t.db, &Invalidations::Local(ReadCache::off()))
        .await
        .expect("roll-up");
    // So does retention (the schedule parses, and a run with nothing to delete succeeds).
    assert!(scheduler.job_names().contains(&"retention"));
    wafleet_scheduler::jobs::retention(
        &t.db,
        &Invalidations::Local(ReadCache::off()),
        &MediaStore::from_settings(&t.settings).expect("media store"),
    )
    .await
    .expect("retention");
}

wafleet_core::testing::on_both_backends!(each_tick_runs_once, standard_jobs_stop_on_shutdown);
