//! The jobs wafleet queues, shared by the roles that push them and the roles that run them.

use std::time::Duration;

use super::Job;
use crate::types::DeviceId;

/// Sends one recorded outbound message (`outbound_messages`). Runs only on the worker holding
/// the device, so it is pushed to that worker's own queue ([`sends_queue`]).
#[derive(Clone, Debug, serde::Serialize, serde::Deserialize)]
pub struct SendJob {
    /// The send's id.
    pub message: i64,
    /// Its device.
    pub device: DeviceId,
}

impl Job for SendJob {
    const MAX_ATTEMPTS: u32 = 6;
    const FIRST_RETRY: Duration = Duration::from_secs(2);
    const LONGEST_RETRY: Duration = Duration::from_secs(60);
    const TIMEOUT: Duration = Duration::from_secs(60);
}

/// What every worker's send queue is named with, before the worker's name.
pub(crate) const SENDS_PREFIX: &str = "sends.";

/// The queue of sends for the worker named `worker`.
pub fn sends_queue(worker: &str) -> String {
    format!("{SENDS_PREFIX}{worker}")
}

/// Delivers one recorded webhook event (`webhook_deliveries`) to its owner's URL. Any worker may
/// run it. Its retry policy comes from settings (see [`super::Retry`]); the constants here are
/// the defaults of those settings.
#[derive(Clone, Debug, serde::Serialize, serde::Deserialize)]
pub struct WebhookJob {
    /// The delivery's id.
    pub delivery: i64,
}

impl Job for WebhookJob {
    const MAX_ATTEMPTS: u32 = 6;
    const FIRST_RETRY: Duration = Duration::from_secs(1);
    const LONGEST_RETRY: Duration = Duration::from_secs(600);
    const TIMEOUT: Duration = Duration::from_secs(60);
}

/// The queue of webhook deliveries, shared by every worker.
pub const WEBHOOKS_QUEUE: &str = "webhooks";
