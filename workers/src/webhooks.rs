//! Delivering webhook events: any worker queues what was recorded and delivers from the shared
//! `webhooks` queue, whatever devices it holds.
//!
//! Writers record events in the database with the change they report; each worker polls for
//! recorded events nobody has queued yet (a claim marks them, so one worker queues each), and
//! consumes the queue: one POST per attempt, signed, under the delivery's id. A 2xx answer
//! delivers it; anything else, or no answer within the timeout, is retried with exponential
//! backoff, and after the last attempt the delivery is `dead` until its owner replays it.
//!
//! Only public addresses (and those the operator allows) are ever connected to, checked at each
//! connection (see [`crate::egress`]); a refused attempt records "refused: address not allowed"
//! and nothing else, so deliveries cannot be used to probe the deployment's own network.

use std::sync::Arc;
use std::time::Duration;

use wafleet_core::db::{AttemptResult, DeliveryStatus};
use wafleet_core::egress::{AllowedHosts, Refused, literal_refusal};
use wafleet_core::metrics as m;
use wafleet_core::queue::{ConsumeOptions, Outcome, Queues, Retry, WEBHOOKS_QUEUE, WebhookJob};
use wafleet_core::shutdown::Shutdown;
use wafleet_core::webhooks::{DELIVERY_HEADER, EVENT_HEADER, SIGNATURE_HEADER, signature};
use wafleet_core::{Db, Settings};

use wafleet_core::egress::{GuardedResolver, is_refusal};

/// Deliveries queued per poll, at most.
const CLAIM_BATCH: i64 = 500;
/// Deliveries under way at once per worker.
const CONCURRENCY: usize = 32;
/// Longest wait between retries, whatever the first one is.
const LONGEST_RETRY: Duration = Duration::from_secs(600);

/// How this worker delivers webhooks.
#[derive(Clone, Debug)]
pub struct WebhookOptions {
    /// Time a receiver has to answer one attempt.
    pub timeout: Duration,
    /// Attempts and backoff.
    pub retry: Retry,
    /// How often recorded events are looked for.
    pub poll: Duration,
    /// Internal hosts deliveries may reach besides public addresses.
    pub allowed_hosts: AllowedHosts,
}

impl WebhookOptions {
    /// From `WEBHOOK_*` settings.
    pub fn from_settings(settings: &Settings) -> Self {
        WebhookOptions {
            timeout: Duration::from_secs(settings.webhook_timeout_secs.max(1)),
            retry: Retry {
                max_attempts: settings.webhook_max_attempts.max(1),
                first: Duration::from_millis(settings.webhook_first_retry_ms),
                longest: LONGEST_RETRY,
            },
            poll: Duration::from_millis(settings.webhook_poll_ms.max(10)),
            allowed_hosts: settings.webhook_allowed_hosts.clone(),
        }
    }
}

impl Default for WebhookOptions {
    fn default() -> Self {
        WebhookOptions::from_settings(&Settings::defaults())
    }
}

/// Queues recorded events and delivers the queue's jobs until `shutdown`.
pub async fn run(db: Db, queues: Queues, worker: String, options: WebhookOptions, shutdown: Shutdown) {
    let pump = tokio::spawn(pump(db.clone(), queues.clone(), options.poll, shutdown.clone()));
    let deliverer = match Deliverer::new(db, &options) {
        Ok(d) => d,
        Err(err) => {
            tracing::error!(error = ?err, "cannot build the webhook HTTP client; webhooks are not delivered");
            let _ = pump.await;
            return;
        }
    };
    let consume = ConsumeOptions {
        worker: format!("{worker}-webhooks"),
        concurrency: CONCURRENCY,
        // The queue is also checked for due jobs (retries) at each heartbeat, so it follows the
        // poll interval: a retry is not held back much beyond its backoff.
        heartbeat: (options.poll * 2).clamp(Duration::from_millis(200), Duration::from_secs(5)),
        retry: Some(options.retry),
    };
    let consumed = wafleet_core::queue::consume(
        queues,
        WEBHOOKS_QUEUE.to_owned(),
        consume,
        move |job: WebhookJob, attempt| {
            let deliverer = deliverer.clone();
            async move { deliverer.deliver(job.delivery, attempt).await }
        },
        shutdown,
    )
    .await;
    if let Err(err) = consumed {
        tracing::warn!(error = ?err, "the webhook queue stopped with an error");
    }
    let _ = pump.await;
}

/// Puts recorded, unqueued deliveries on the queue, every `poll`.
async fn pump(db: Db, queues: Queues, poll: Duration, shutdown: Shutdown) {
    loop {
        match db.claim_unqueued_deliveries(CLAIM_BATCH).await {
            Ok(ids) => {
                for delivery in &ids {
                    // A push that fails leaves the delivery claimed; housekeeping hands it back.
                    if let Err(err) = queues.push(WEBHOOKS_QUEUE, WebhookJob { delivery: *delivery }).await {
                        tracing::warn!(error = ?err, delivery, "queueing a webhook delivery failed");
                    }
                }
                if ids.len() as i64 == CLAIM_BATCH {
                    continue;
                }
            }
            Err(err) => tracing::warn!(error = ?err, "looking for webhook deliveries failed"),
        }
        tokio::select! {
            () = shutdown.clone().wait() => return,
            () = tokio::time::sleep(poll) => {}
        }
    }
}

/// One attempt at a time: the HTTP client and where outcomes go.
#[derive(Clone)]
struct Deliverer {
    db: Db,
    client: reqwest::Client,
    timeout: Duration,
    max_attempts: u32,
    allowed: AllowedHosts,
}

impl Deliverer {
    fn new(db: Db, options: &WebhookOptions) -> reqwest::Result<Self> {
        let client = reqwest::Client::builder()
            .timeout(options.timeout)
            // A redirect would turn the POST into a GET elsewhere; the URL must answer itself.
            // Also keeps deliveries from being sent on to an internal address.
            .redirect(reqwest::redirect::Policy::none())
            // Every name resolves through the guard, at every connection.
            .dns_resolver(Arc::new(GuardedResolver::new(options.allowed_hosts.clone())))
            // A proxy would resolve names itself, past the guard.
            .no_proxy()
            .user_agent(concat!("wafleet-webhooks/", env!("CARGO_PKG_VERSION")))
            .build()?;
        Ok(Deliverer {
            db,
            client,
            timeout: options.timeout,
            max_attempts: options.retry.max_attempts,
            allowed: options.allowed_hosts.clone(),
        })
    }

    /// Attempt `attempt` at delivery `id`.
    #[tracing::instrument(skip(self))]
    async fn deliver(&self, id: i64, attempt: u32) -> Outcome {
        let found = match self.db.delivery_attempt(id).await {
            Ok(Some(found)) => found,
            Ok(None) => return Outcome::Done, // tidied away, or its owner was removed
            Err(err) => return Outcome::Retry(format!("reading the delivery: {err:#}")),
        };
        if found.delivery.status != DeliveryStatus::Pending {
            return Outcome::Done; // a duplicate job of one already settled
        }
        let last = attempt >= self.max_attempts;
        let Some(hook) = found.webhook.filter(|w| w.enabled) else {
            let error = "no enabled webhook: set one, then replay".to_owned();
            return self.failed(id, None, error, true).await;
        };
        // An address in the URL never reaches the resolver, so it is checked here.
        if let Some(refused) = literal_refusal(&hook.url, &self.allowed) {
            return self.failed(id, None, refused.to_string(), last).await;
        }
        let body = found.delivery.body;
        let sent = self
            .client
            .post(&hook.url)
            .header(reqwest::header::CONTENT_TYPE, "application/json")
            .header(SIGNATURE_HEADER, signature(&hook.secret, body.as_bytes()))
            .header(DELIVERY_HEADER, id.to_string())
            .header(EVENT_HEADER, &found.delivery.event)
            .body(body)
            .send()
            .await;
        match sent {
            Ok(response) if response.status().is_success() => {
                let status = response.status().as_u16();
                if let Err(err) = self.db.record_attempt(id, &AttemptResult::Delivered(status)).await {
                    // Delivered but not recorded: a retry would deliver it twice (same id).
                    return Outcome::Retry(format!("recording the delivery: {err:#}"));
                }
                metrics::counter!(m::WEBHOOK_DELIVERIES, "outcome" => "delivered").increment(1);
                Outcome::Done
            }
            Ok(response) => {
                let status = response.status().as_u16();
                let error = format!("the receiver answered {}", response.status());
                self.failed(id, Some(status), error, last).await
            }
            // Nothing about the target: not whether it answered, nor how the connection failed.
            Err(err) if is_refusal(&err) => self.failed(id, None, Refused.to_string(), last).await,
            Err(err) if err.is_timeout() => {
                let error = format!("no answer within {:?}", self.timeout);
                self.failed(id, None, error, last).await
            }
            Err(err) => {
                self.failed(id, None, format!("could not reach the URL: {err}"), last)
                    .await
            }
        }
    }

    /// Records a failed attempt; `dead` when none is left (or none can help).
    async fn failed(&self, id: i64, status: Option<u16>, error: String, dead: bool) -> Outcome {
        tracing::info!(delivery = id, error, dead, "webhook attempt failed");
        let result = AttemptResult::Failed {
            status,
            error: error.clone(),
            dead,
        };
        if let Err(err) = self.db.record_attempt(id, &result).await {
            tracing::warn!(error = ?err, "recording a failed webhook attempt failed");
        }
        let outcome = if dead { "dead" } else { "retried" };
        metrics::counter!(m::WEBHOOK_DELIVERIES, "outcome" => outcome).increment(1);
        if dead {
            Outcome::Fail(error)
        } else {
            Outcome::Retry(error)
        }
    }
}

#[cfg(test)]
mod tests {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::TcpListener;
    use wafleet_core::db::NewUserRole;
    use wafleet_core::testing::{Backend, TestDb};
    use wafleet_core::types::{Email, UserId};

    use super::*;

    async fn user(db: &Db) -> UserId {
        let email = Email::parse("hooked@example.com").unwrap();
        db.create_user(&email, "not-a-hash", NewUserRole::FirstBecomesAdmin)
            .await
            .unwrap()
            .id
    }

    /// One attempt (the last) at a test event sent to `url`, as if the URL had been saved when
    /// its host resolved to a public address.
    async fn attempt(db: &Db, user: UserId, url: &str, allowed: &str) -> wafleet_core::db::Delivery {
        db.put_webhook(user, url, "a-secret-of-enough-length", "", true)
            .await
            .unwrap();
        let id = db.record_test_delivery(user).await.unwrap();
        let options = WebhookOptions {
            allowed_hosts: allowed.parse().unwrap(),
            timeout: Duration::from_secs(5),
            ..WebhookOptions::default()
        };
        let deliverer = Deliverer::new(db.clone(), &options).unwrap();
        deliverer.deliver(id, options.retry.max_attempts).await;
        db.delivery(user, id).await.unwrap()
    }

    async fn internal_targets_are_refused_at_connection_without_a_trace(backend: Backend) {
        let test = TestDb::new(backend).await;
        let user = user(&test.db).await;
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        for url in [
            // A name that resolves to loopback by the time it is delivered to (DNS rebinding).
            format!("http://localhost:{port}/hook"),
            format!("http://127.0.0.1:{port}/hook"),
            format!("http://[::ffff:127.0.0.1]:{port}/hook"),
        ] {
            let delivery = attempt(&test.db, user, &url, "").await;
            assert_eq!(delivery.status, DeliveryStatus::Dead, "{url}");
            assert_eq!(
                delivery.last_error.as_deref(),
                Some("refused: address not allowed"),
                "{url}"
            );
            assert_eq!(delivery.response_status, None, "{url}");
        }
        let connected = tokio::time::timeout(Duration::from_millis(200), listener.accept()).await;
        assert!(connected.is_err(), "no connection was made");

        // Allowed by the operator, the same receiver gets it.
        let answer = tokio::spawn(async move {
            let (mut socket, _) = listener.accept().await.unwrap();
            let mut request = vec![0; 64 * 1024];
            let _ = socket.read(&mut request).await.unwrap();
            socket
                .write_all(b"HTTP/1.1 204 No Content\r\ncontent-length: 0\r\nconnection: close\r\n\r\n")
                .await
                .unwrap();
        });
        let delivery = attempt(&test.db, user, &format!("http://localhost:{port}/hook"), "127.0.0.1").await;
        answer.await.unwrap();
        assert_eq!(delivery.status, DeliveryStatus::Delivered);
        assert_eq!(delivery.response_status, Some(204));
    }

    wafleet_core::testing::on_both_backends!(internal_targets_are_refused_at_connection_without_a_trace);
}
