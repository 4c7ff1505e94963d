//! The job queue on both storages (apalis-sqlite for the embedded default, apalis-redis with
//! PostgreSQL): retries counted by wafleet with backoff, then a dead letter that can be replayed;
//! and the apalis behaviour wafleet relies on: a job held by a consumer that dies goes back to the
//! queue for another consumer.

use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use wafleet_core::queue::{ConsumeOptions, Job, Outcome, Queues, consume, sends_queue};
use wafleet_core::shutdown;
use wafleet_core::testing::{Backend, TestDb, eventually};

#[derive(Clone, Debug, serde::Serialize, serde::Deserialize)]
struct Flaky {
    name: String,
}

impl Job for Flaky {
    const MAX_ATTEMPTS: u32 = 3;
    const FIRST_RETRY: Duration = Duration::from_millis(200);
    const LONGEST_RETRY: Duration = Duration::from_millis(400);
    const TIMEOUT: Duration = Duration::from_secs(5);
}

fn options(worker: &str) -> ConsumeOptions {
    ConsumeOptions {
        worker: worker.into(),
        concurrency: 4,
        heartbeat: Duration::from_secs(1),
        retry: None,
    }
}

async fn a_failing_job_runs_max_attempts_then_becomes_a_replayable_dead_letter(backend: Backend) {
    let test = TestDb::new(backend).await;
    let queues = test.queues().await;
    let runs = Arc::new(AtomicU32::new(0));
    let attempts_seen = Arc::new(std::sync::Mutex::new(Vec::new()));
    let (stop, shutdown) = shutdown::channel();
    let consumer = {
        let (runs, seen) = (runs.clone(), attempts_seen.clone());
        tokio::spawn(consume(
            queues.clone(),
            "flaky".into(),
            options("consumer-a"),
            move |job: Flaky, attempt| {
                let (runs, seen) = (runs.clone(), seen.clone());
                async move {
                    runs.fetch_add(1, Ordering::SeqCst);
                    seen.lock().unwrap().push(attempt);
                    Outcome::Retry(format!("{} is down", job.name))
                }
            },
            shutdown,
        ))
    };
    queues
        .push(
            "flaky",
            Flaky {
                name: "the webhook".into(),
            },
        )
        .await
        .unwrap();

    eventually(Duration::from_secs(30), "a dead letter", async || {
        !test.db.dead_letters(Some("flaky"), 10).await.unwrap().is_empty()
    })
    .await;
    // No further run once it is dead (apalis-redis alone would reschedule it 25 times).
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(runs.load(Ordering::SeqCst), Flaky::MAX_ATTEMPTS);
    assert_eq!(*attempts_seen.lock().unwrap(), vec![1, 2, 3]);
    let letters = test.db.dead_letters(Some("flaky"), 10).await.unwrap();
    assert_eq!(letters.len(), 1);
    assert_eq!(letters[0].attempts, 3);
    assert!(letters[0].error.contains("the webhook is down"), "{:?}", letters[0]);
    assert!(letters[0].job.contains("the webhook"));

    // Replayed, it runs again from its first attempt.
    queues.replay::<Flaky>("flaky", letters[0].id).await.unwrap();
    eventually(Duration::from_secs(30), "the replayed job runs", async || {
        runs.load(Ordering::SeqCst) > Flaky::MAX_ATTEMPTS
    })
    .await;
    assert_eq!(attempts_seen.lock().unwrap()[3], 1);
    assert!(test.db.dead_letter(letters[0].id).await.unwrap().replayed_at.is_some());
    stop.trigger();
    consumer.await.unwrap().unwrap();
}

#[derive(Clone, Debug, serde::Serialize, serde::Deserialize)]
struct Slow {
    n: u32,
}

impl Job for Slow {
    const TIMEOUT: Duration = Duration::from_secs(120);
}

async fn a_job_held_by_a_dead_consumer_returns_to_the_queue(backend: Backend) {
    let test = TestDb::new(backend).await;
    let queues = test.queues().await;

    // Consumer A takes the job and dies while running it: its runtime is dropped mid-job, with no
    // graceful close, as when the process is killed.
    let (started_tx, started_rx) = std::sync::mpsc::channel();
    let (die_tx, die_rx) = tokio::sync::oneshot::channel::<()>();
    let doomed = {
        let queues = queues.clone();
        std::thread::spawn(move || {
            let rt = tokio::runtime::Runtime::new().unwrap();
            rt.block_on(async move {
                let (_keep, shutdown) = shutdown::channel();
                let run = consume(
                    queues,
                    "slow".into(),
                    options("consumer-doomed"),
                    move |_job: Slow, _attempt| {
                        let started = started_tx.clone();
                        async move {
                            let _ = started.send(());
                            std::future::pending::<()>().await;
                            Outcome::Done
                        }
                    },
                    shutdown,
                );
                tokio::select! {
                    _ = run => {}
                    _ = die_rx => {}
                }
            });
            rt.shutdown_background();
        })
    };
    queues.push("slow", Slow { n: 7 }).await.unwrap();
    tokio::task::spawn_blocking(move || started_rx.recv_timeout(Duration::from_secs(30)))
        .await
        .unwrap()
        .expect("consumer A takes the job");
    die_tx.send(()).unwrap();
    doomed.join().unwrap();

    // Consumer B notices A's heartbeats stopped and runs the job A held.
    let ran = Arc::new(AtomicU32::new(0));
    let (stop, shutdown) = shutdown::channel();
    let consumer = {
        let ran = ran.clone();
        tokio::spawn(consume(
            queues.clone(),
            "slow".into(),
            options("consumer-b"),
            move |job: Slow, _attempt| {
                let ran = ran.clone();
                async move {
                    ran.store(job.n, Ordering::SeqCst);
                    Outcome::Done
                }
            },
            shutdown,
        ))
    };
    let started = Instant::now();
    eventually(Duration::from_secs(60), "the orphaned job runs again", async || {
        ran.load(Ordering::SeqCst) == 7
    })
    .await;
    eprintln!("{backend:?}: orphaned job re-run after {:?}", started.elapsed());
    stop.trigger();
    consumer.await.unwrap().unwrap();
    assert_eq!(queues_depth(&queues, "slow").await, 0);
}

/// The housekeeping's tidying: finished jobs go, and so does the send queue of a worker that is
/// gone (its sends live on in the database), while a known worker's waiting jobs stay.
async fn tidying_removes_finished_jobs_and_gone_workers_queues(backend: Backend) {
    let test = TestDb::new(backend).await;
    let queues = test.queues().await;
    let (live, gone) = (sends_queue("live-worker"), sends_queue("gone-worker"));
    for n in 1..=2 {
        queues.push(&live, Slow { n }).await.unwrap();
    }
    queues.push(&gone, Slow { n: 3 }).await.unwrap();
    let ran = Arc::new(AtomicU32::new(0));
    let (stop, shutdown) = shutdown::channel();
    let consumer = {
        let ran = ran.clone();
        tokio::spawn(consume(
            queues.clone(),
            live.clone(),
            options("live-worker"),
            move |_job: Slow, _attempt| {
                let ran = ran.clone();
                async move {
                    ran.fetch_add(1, Ordering::SeqCst);
                    Outcome::Done
                }
            },
            shutdown,
        ))
    };
    eventually(Duration::from_secs(30), "the live worker's jobs run", async || {
        ran.load(Ordering::SeqCst) == 2
    })
    .await;
    stop.trigger();
    consumer.await.unwrap().unwrap();
    // A job still waiting in the live worker's queue is never touched.
    queues.push(&live, Slow { n: 4 }).await.unwrap();
    assert_eq!(queues_depth(&queues, &gone).await, 1);

    let known = vec!["live-worker".to_owned()];
    let mut tidied = queues.tidy(&known, Duration::ZERO).await.unwrap();
    // apalis marks a job done just after the handler returns: give the last one a moment.
    for _ in 0..50 {
        if tidied.finished_jobs >= 2 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
        let more = queues.tidy(&known, Duration::ZERO).await.unwrap();
        tidied.finished_jobs += more.finished_jobs;
        tidied.queues_removed += more.queues_removed;
    }
    assert_eq!(tidied.finished_jobs, 2, "{tidied:?}");
    assert_eq!(tidied.queues_removed, 1, "{tidied:?}");
    assert_eq!(queues_depth(&queues, &gone).await, 0);
    assert_eq!(queues_depth(&queues, &live).await, 1, "the waiting job stays");
    // Nothing of the gone worker's queue is left to be found again.
    assert_eq!(
        queues.tidy(&known, Duration::from_secs(3600)).await.unwrap(),
        wafleet_core::queue::Tidied::default()
    );
}

async fn queues_depth(queues: &Queues, queue: &str) -> u64 {
    queues.depth(queue).await.unwrap()
}

wafleet_core::testing::on_both_backends!(
    a_failing_job_runs_max_attempts_then_becomes_a_replayable_dead_letter,
    a_job_held_by_a_dead_consumer_returns_to_the_queue,
    tidying_removes_finished_jobs_and_gone_workers_queues
);
