//! The inbound durability hook: an incoming message or receipt is acknowledged to WhatsApp only
//! once wafleet's batch holding it has committed.
//!
//! The client buffers each decrypted message in the store's pending inbound buffer, then calls
//! this hook and waits: the hook hands every personal message to the session's event stream
//! with an [`Ack`], in order with the other events, and returns once every ack has fired (the
//! worker's batch writer fires them after its commit). Only then does the client send the
//! delivery receipt and clear the buffer. If the worker dies first, WhatsApp redelivers the
//! message to whichever worker holds the device next, whose client replays it from the buffer;
//! wafleet skips the copy it may already have by message id. Receipts take the same way, one
//! stanza at a time: unacknowledged, WhatsApp delivers them again, and applying one twice
//! changes nothing.

use std::sync::Arc;
use std::time::Duration;

use anyhow::anyhow;
use tokio::sync::mpsc;
use wafleet_core::link::{Ack, LinkEvent};
use wafleet_core::types::DeviceId;
use whatsapp_rust::Client;
use whatsapp_rust::InboundDurabilityHook;
use whatsapp_rust::wacore::types::events::{InboundMessage, Receipt};

use super::events::{map_message, map_receipt};

/// Longest a batch may wait for wafleet's write before it is left unacknowledged (WhatsApp then
/// delivers it again on the next connection): the client's receive pipeline waits meanwhile.
const COMMIT_TIMEOUT: Duration = Duration::from_secs(60);

/// The hook of one session.
pub(crate) struct Durability {
    /// The device, for logs.
    pub device: DeviceId,
    /// The session's ordered event queue (shared with the event handler).
    pub queue: mpsc::UnboundedSender<LinkEvent>,
}

#[async_trait::async_trait]
impl InboundDurabilityHook for Durability {
    async fn on_messages(&self, _client: Arc<Client>, batch: &[InboundMessage]) -> anyhow::Result<()> {
        let events = batch.iter().map(|inbound| {
            move |ack| map_message(&inbound.message, &inbound.info).map(|message| LinkEvent::Message { message, ack })
        });
        self.store(events, "incoming messages").await
    }

    fn gates_receipts(&self) -> bool {
        true
    }

    async fn on_receipts(&self, _client: Arc<Client>, receipts: &[Receipt]) -> anyhow::Result<()> {
        let events = receipts.iter().map(|receipt| move |ack| map_receipt(receipt, ack));
        self.store(events, "receipts").await
    }
}

impl Durability {
    /// Queues each event with an [`Ack`] and waits until wafleet has stored them all, or fails
    /// (leaving them unacknowledged) when it does not within [`COMMIT_TIMEOUT`]. An event that
    /// maps to nothing (another chat, a content-less protocol message, a receipt about no
    /// recipient) is never stored: done as it is.
    async fn store<F>(&self, events: impl IntoIterator<Item = F>, what: &str) -> anyhow::Result<()>
    where
        F: FnOnce(Ack) -> Option<LinkEvent>,
    {
        let mut stored = Vec::new();
        for event in events {
            let (ack, done) = Ack::new();
            let Some(event) = event(ack) else {
                continue;
            };
            self.queue
                .send(event)
                .map_err(|_| anyhow!("the session's event stream is closed"))?;
            stored.push(done);
        }
        if stored.is_empty() {
            return Ok(());
        }
        let count = stored.len();
        let all = async {
            for done in stored {
                done.await.map_err(|_| anyhow!("wafleet did not store the {what}"))?;
            }
            Ok::<_, anyhow::Error>(())
        };
        match tokio::time::timeout(COMMIT_TIMEOUT, all).await {
            Ok(Ok(())) => Ok(()),
            Ok(Err(err)) => {
                tracing::warn!(device = %self.device, count, error = %err, "{what} left unacknowledged");
                Err(err)
            }
            Err(_) => {
                tracing::warn!(device = %self.device, count, "{what} not stored in time; left unacknowledged");
                Err(anyhow!("not stored within {COMMIT_TIMEOUT:?}"))
            }
        }
    }
}
