//! Consuming a queue: an apalis worker whose handler turns [`Outcome`]s into retries and dead letters.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use apalis::prelude::{BackendExt, BoxDynError, Data, Monitor, WorkerBuilder, WorkerBuilderExt};
use apalis_redis::RedisStorage;
use apalis_sqlite::SqliteStorage;
use tracing::Instrument;

use super::{Envelope, Job, Outcome, Queues, Retry, Store, backoff};
use crate::metrics as m;
use crate::shutdown::Shutdown;

/// How a process consumes one queue.
#[derive(Clone, Debug)]
pub struct ConsumeOptions {
    /// This consumer's name in the queue's worker list (unique per process).
    pub worker: String,
    /// Jobs run at once.
    pub concurrency: usize,
    /// How often the consumer tells the queue it is alive. Jobs held by a consumer silent for
    /// three of these go back to the queue for another consumer.
    pub heartbeat: Duration,
    /// The retry policy, when it is set at run time rather than by the job type.
    pub retry: Option<Retry>,
}

/// How often a consumer looks for jobs besides its own rhythm. Both apalis backends fetch again
/// only after a batch or on their heartbeat: a delayed job (a send waiting for its slot, a retry)
/// that comes due, or a job pushed just after a fetch, waited for the next heartbeat (15 s by
/// default), which held paced sends to one per heartbeat per device. One small query per consumer
/// a second is cheap; a due job waits 1 s at most.
const POLL_EVERY: Duration = Duration::from_secs(1);

type Handler<J> = dyn Fn(J, u32) -> Pin<Box<dyn Future<Output = Outcome> + Send>> + Send + Sync;

/// What every run of a queue's handler needs.
struct Consumer<J> {
    queues: Queues,
    retry: Retry,
    queue: String,
    handler: Arc<Handler<J>>,
}

/// Runs `handler` on the jobs of `queue` until `shutdown`, then lets running jobs finish.
/// `handler` gets the job and its attempt number (1 for the first run).
pub async fn consume<J, F, Fut>(
    queues: Queues,
    queue: String,
    options: ConsumeOptions,
    handler: F,
    shutdown: Shutdown,
) -> anyhow::Result<()>
where
    J: Job,
    F: Fn(J, u32) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Outcome> + Send + 'static,
{
    let handler: Arc<Handler<J>> = Arc::new(move |job, attempt| Box::pin(handler(job, attempt)));
    let consumer = Arc::new(Consumer {
        queues: queues.clone(),
        retry: options.retry.unwrap_or_else(Retry::of::<J>),
        queue: queue.clone(),
        handler,
    });
    let name = queues.full_name(&queue);
    let ConsumeOptions {
        worker,
        concurrency,
        heartbeat,
        retry: _,
    } = options;
    let monitor = Monitor::new()
        .shutdown_timeout(J::TIMEOUT)
        // A consumer stops when its storage fails (Redis restarting, say); a fresh one reconnects.
        // Jobs lost with a Redis that kept nothing are found again by the sweeps that queued them.
        .should_restart(|worker, error| {
            tracing::warn!(worker = worker.name(), error = ?error, "queue consumer stopped; restarting");
            true
        });
    let monitor = match queues.store.clone() {
        Store::Redis(conn) => monitor.register(move |restarts| {
            let config = apalis_redis::Config::default()
                .queue(&name)
                .heartbeat_interval(heartbeat)
                .missed_heartbeats(3);
            WorkerBuilder::new(consumer_name(&worker, restarts))
                .backend(
                    RedisStorage::<Envelope<J>>::new(conn.clone())
                        .with_config(config)
                        .poll_with_interval(POLL_EVERY),
                )
                .concurrency(concurrency)
                .data(consumer.clone())
                .build(on_job::<J>)
        }),
        Store::Sqlite(pool) => monitor.register(move |restarts| {
            let config = apalis_sqlite::Config::default()
                .queue(&name)
                .heartbeat_interval(heartbeat)
                .missed_heartbeats(3);
            WorkerBuilder::new(consumer_name(&worker, restarts))
                .backend(
                    SqliteStorage::<Envelope<J>>::new(&pool)
                        .with_config(config)
                        .poll_with_interval(POLL_EVERY),
                )
                .concurrency(concurrency)
                .data(consumer.clone())
                .build(on_job::<J>)
        }),
    };
    monitor
        .run_with_signal(async move {
            shutdown.wait().await;
            Ok(())
        })
        .await
        .with_context(|| format!("consuming queue {queue}"))
}

/// The apalis handler. It fails towards apalis only when it cannot queue the retry or file the
/// dead letter (the queue or database is down); then apalis' own redelivery keeps the job.
async fn on_job<J: Job>(envelope: Envelope<J>, consumer: Data<Arc<Consumer<J>>>) -> Result<(), BoxDynError> {
    let queue = consumer.queue.as_str();
    let span = tracing::info_span!("job", queue, attempt = envelope.attempt, job = ?envelope.job);
    async {
        let run = (consumer.handler)(envelope.job.clone(), envelope.attempt);
        let outcome = match tokio::time::timeout(J::TIMEOUT, run).await {
            Ok(outcome) => outcome,
            Err(_) => Outcome::Retry(format!("took longer than {:?}", J::TIMEOUT)),
        };
        let label = match &outcome {
            Outcome::Done => "done",
            Outcome::Later(_) => "deferred",
            Outcome::Retry(_) if envelope.attempt < consumer.retry.max_attempts => "retried",
            Outcome::Retry(_) | Outcome::Fail(_) => "dead",
        };
        metrics::counter!(m::JOBS, "queue" => queue_label(queue), "outcome" => label).increment(1);
        match outcome {
            Outcome::Done => Ok(()),
            Outcome::Later(delay) => {
                tracing::debug!(?delay, "job deferred");
                consumer.queues.push_envelope(queue, envelope, Some(delay)).await?;
                Ok(())
            }
            Outcome::Retry(reason) if envelope.attempt < consumer.retry.max_attempts => {
                let next = envelope.attempt + 1;
                let delay = backoff(next, consumer.retry.first, consumer.retry.longest);
                tracing::info!(reason, next, ?delay, "job failed; retrying");
                let retry = Envelope {
                    job: envelope.job,
                    attempt: next,
                };
                consumer.queues.push_envelope(queue, retry, Some(delay)).await?;
                Ok(())
            }
            Outcome::Retry(reason) | Outcome::Fail(reason) => {
                tracing::warn!(reason, "job failed for good; filed as a dead letter");
                consumer.queues.bury(queue, &envelope, &reason).await?;
                Ok(())
            }
        }
    }
    .instrument(span)
    .await
}

/// The queue's kind for metric labels: per-worker queues (`sends.<worker>`) share one label.
fn queue_label(queue: &str) -> String {
    queue.split('.').next().unwrap_or(queue).to_owned()
}

/// The name a consumer registers under: a restarted one takes a new name, because the queue
/// refuses to register a name whose heartbeat it saw within the last few intervals (the stopped
/// consumer's), and a restart under the old name would fail again at once, in a loop. The old
/// name's unfinished jobs are taken back by the other consumers once its heartbeats stop.
fn consumer_name(worker: &str, restarts: usize) -> String {
    match restarts {
        0 => worker.to_owned(),
        n => format!("{worker}.restart-{n}"),
    }
}

#[cfg(test)]
mod tests {
    use super::consumer_name;

    #[test]
    fn a_restarted_consumer_registers_under_a_name_of_its_own() {
        let names: Vec<String> = (0..3).map(|restarts| consumer_name("w1-webhooks", restarts)).collect();
        assert_eq!(
            names[0], "w1-webhooks",
            "the first registration keeps the configured name"
        );
        assert_ne!(names[1], names[0]);
        assert_ne!(names[2], names[1]);
    }
}
