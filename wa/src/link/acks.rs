//! Sends waiting for WhatsApp's answer to their stanza.
//!
//! The client returns from a send once the stanza is written; the server's `<ack>` (or its
//! refusal, e.g. 463) comes later as an event. A send registers its message id here before it
//! goes, and the event handler answers it, so a refusal fails the send and a send whose answer
//! never comes is reported as unconfirmed rather than as sent.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use wafleet_core::sync;

use tokio::sync::oneshot;

/// What the server answered: `None` for accepted, `Some(code)` for refused.
pub(crate) type Answer = Option<String>;

/// The waiting sends of one session, by message id. Cheap to clone.
#[derive(Clone, Default)]
pub(crate) struct SendAcks(Arc<Mutex<HashMap<String, oneshot::Sender<Answer>>>>);

impl SendAcks {
    /// Registers `id`; the receiver gets the server's answer.
    pub(crate) fn wait_for(&self, id: &str) -> Waiting {
        let (tx, rx) = oneshot::channel();
        sync::lock(&self.0).insert(id.to_owned(), tx);
        Waiting {
            acks: self.clone(),
            id: id.to_owned(),
            answer: Some(rx),
        }
    }

    /// The server answered the stanza `id` (ignored when nothing waits for it: acks of other
    /// stanzas, or of a send that gave up waiting).
    pub(crate) fn answer(&self, id: &str, error: Answer) {
        let waiting = sync::lock(&self.0).remove(id);
        if let Some(tx) = waiting {
            let _ = tx.send(error);
        }
    }
}

/// One send's wait; forgets the id when dropped.
pub(crate) struct Waiting {
    acks: SendAcks,
    id: String,
    answer: Option<oneshot::Receiver<Answer>>,
}

impl Waiting {
    /// The answer, or `None` when the session ended first or none came within `limit`.
    pub(crate) async fn answer(mut self, limit: std::time::Duration) -> Option<Answer> {
        let rx = self.answer.take()?;
        tokio::time::timeout(limit, rx).await.ok()?.ok()
    }
}

impl Drop for Waiting {
    fn drop(&mut self) {
        sync::lock(&self.acks.0).remove(&self.id);
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    #[tokio::test]
    async fn answers_reach_their_send_only() {
        let acks = SendAcks::default();
        let first = acks.wait_for("A");
        let second = acks.wait_for("B");
        acks.answer("B", Some("463".into()));
        acks.answer("C", None);
        assert_eq!(second.answer(Duration::from_secs(1)).await, Some(Some("463".into())));
        acks.answer("A", None);
        assert_eq!(first.answer(Duration::from_secs(1)).await, Some(None));
        let late = acks.wait_for("D");
        assert_eq!(late.answer(Duration::from_millis(10)).await, None, "no answer in time");
        assert!(acks.0.lock().unwrap().is_empty(), "nothing left waiting");
    }
}
