//! [`Scheduler`]: a set of cron jobs run as apalis workers under one monitor.

use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use apalis::prelude::{Monitor, WorkerBuilder, WorkerBuilderExt};
use apalis_cron::CronScheduler;
use wafleet_core::Db;
use wafleet_core::shutdown::Shutdown;
use wafleet_core::types::Timestamp;

use crate::cron_job::{CronJob, Fire, JobFuture, TickContext, on_tick};

/// How long in-flight job runs may take to finish once shutdown begins.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(30);

/// Cron jobs and the database they claim ticks in; [`Scheduler::run`] runs them until shutdown.
pub struct Scheduler {
    /// Where ticks are claimed and jobs do their work.
    db: Db,
    /// This replica's name, recorded with each tick it claims.
    runner: String,
    /// The jobs, each run by an apalis worker of its own.
    jobs: Vec<Arc<CronJob>>,
}

impl Scheduler {
    /// A scheduler without jobs; the replica is named after the host and process.
    pub fn new(db: Db) -> Self {
        let host = std::env::var("HOSTNAME").unwrap_or_else(|_| "localhost".into());
        Scheduler {
            db,
            runner: format!("{host}:{}", std::process::id()),
            jobs: Vec::new(),
        }
    }

    /// Names this replica in `cron_runs` (default: host and process id).
    pub fn runner(mut self, name: impl Into<String>) -> Self {
        self.runner = name.into();
        self
    }

    /// Adds `job`, fired on `schedule` (cron with a seconds field first, in UTC), running `body`
    /// with the database and the tick time. Fails when the schedule does not parse.
    pub fn job<F>(mut self, name: &'static str, schedule: &str, fire: Fire, body: F) -> anyhow::Result<Self>
    where
        F: Fn(Db, Timestamp) -> JobFuture + Send + Sync + 'static,
    {
        let schedule = cron::Schedule::from_str(schedule)
            .with_context(|| format!("invalid cron schedule {schedule:?} for job {name}"))?;
        self.jobs.push(Arc::new(CronJob {
            name,
            schedule,
            fire,
            body: Arc::new(body),
        }));
        Ok(self)
    }

    /// The names of the jobs added so far, in order.
    pub fn job_names(&self) -> Vec<&'static str> {
        self.jobs.iter().map(|job| job.name).collect()
    }

    /// Runs every job until `shutdown`, then lets running ticks finish (up to a grace period).
    pub async fn run(self, shutdown: Shutdown) -> anyhow::Result<()> {
        tracing::info!(backend = self.db.backend_name(), runner = %self.runner, jobs = self.jobs.len(), "scheduler started");
        let runner: Arc<str> = self.runner.into();
        let rescue = tokio::spawn(crate::rescue::run(
            self.db.clone(),
            runner.clone(),
            self.jobs.clone(),
            shutdown.clone(),
        ));
        let mut monitor = Monitor::new()
            .shutdown_timeout(SHUTDOWN_GRACE)
            // A worker ends with an error only when its cron stream does (a tick computed in the
            // past after a stall); a fresh worker recomputes the next tick.
            .should_restart(|worker, error| {
                tracing::warn!(worker = worker.name(), error = ?error, "cron worker stopped; restarting");
                true
            });
        for job in self.jobs {
            let ctx = TickContext {
                db: self.db.clone(),
                runner: runner.clone(),
                job,
            };
            monitor = monitor.register(move |_restarts| {
                WorkerBuilder::new(format!("cron-{}", ctx.job.name))
                    .backend(CronScheduler::new(ctx.job.schedule.clone()))
                    // One run of a job at a time; a tick that comes due meanwhile waits its turn.
                    .concurrency(1)
                    .data(ctx.clone())
                    .build(on_tick)
            });
        }
        monitor
            .run_with_signal(async move {
                shutdown.wait().await;
                Ok(())
            })
            .await
            .context("running the cron workers")?;
        if let Err(err) = rescue.await {
            tracing::warn!(error = ?err, "the task finishing dead replicas' ticks failed");
        }
        tracing::info!("scheduler stopped");
        Ok(())
    }
}
