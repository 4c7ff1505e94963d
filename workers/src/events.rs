//! Writing what one session reports into the database.

use std::time::Duration;

use tokio::sync::mpsc;
use wafleet_core::Db;
use wafleet_core::db::{DeviceStatus, Fence};
use wafleet_core::link::LinkEvent;
use wafleet_core::types::Timestamp;

/// Consumes a held device's events until the session ends for good (logout, ban, failed
/// pairing), the link closes the stream, or the lease turns out to be lost (every write carries
/// the lease's fencing token, and a stale one is refused).
#[tracing::instrument(skip(db, events), fields(device = %fence.device, token = fence.token))]
pub async fn consume(db: Db, fence: Fence, mut events: mpsc::Receiver<LinkEvent>) {
    while let Some(event) = events.recv().await {
        match handle(&db, fence, event).await {
            Ok(Flow::Continue) => {}
            Ok(Flow::Ended) => break,
            Err(wafleet_core::Error::Fenced) => {
                tracing::warn!("another worker holds the device now; stopping");
                break;
            }
            Err(err) => tracing::warn!(error = ?err, "recording a session event failed"),
        }
    }
}

enum Flow {
    Continue,
    Ended,
}

async fn handle(db: &Db, device: Fence, event: LinkEvent) -> wafleet_core::Result<Flow> {
    match event {
        LinkEvent::QrCode { code, valid_for } => {
            let expires = Timestamp::now().plus_secs(i64::try_from(valid_for.as_secs()).unwrap_or(60));
            db.set_qr_code(device, &code, expires).await?;
        }
        LinkEvent::PairCode { code } => db.set_pair_code(device, &code).await?,
        LinkEvent::PairSuccess { jid } => {
            tracing::info!(%jid, "device linked");
            db.mark_paired(device, &jid).await?;
        }
        LinkEvent::PairError { reason } => {
            db.mark_unlinked(device, DeviceStatus::Offline, &format!("pairing failed: {reason}"))
                .await?;
            return Ok(Flow::Ended);
        }
        LinkEvent::Connected => db.set_device_status(device, DeviceStatus::Online).await?,
        LinkEvent::Disconnected { reason } => {
            tracing::info!(reason, "session disconnected; the link reconnects");
            db.set_device_status(device, DeviceStatus::Connecting).await?;
        }
        LinkEvent::LoggedOut { reason, banned } => {
            let status = if banned {
                DeviceStatus::Banned
            } else {
                DeviceStatus::LoggedOut
            };
            tracing::warn!(reason, banned, "device logged out");
            db.mark_unlinked(device, status, &reason).await?;
            return Ok(Flow::Ended);
        }
        LinkEvent::Message { message, ack } => {
            // Links filter to personal chats; this check keeps the promise even if one does not.
            if message.chat.is_personal() {
                store_with_retry(db, device, &message).await?;
            }
            ack.done();
        }
        LinkEvent::Receipt {
            kind,
            chat,
            message_ids,
            ..
        } => db.apply_receipt(device, &chat, kind, &message_ids).await?,
    }
    Ok(Flow::Continue)
}

/// Stores a message, retrying briefly; an error leaves it unacknowledged so the network redelivers it.
async fn store_with_retry(
    db: &Db,
    device: Fence,
    message: &wafleet_core::link::IncomingMessage,
) -> wafleet_core::Result<()> {
    let mut wait = Duration::from_millis(50);
    for attempt in 1.. {
        match db.store_message(device, message).await {
            Ok(new) => {
                if new {
                    metrics::counter!(wafleet_core::metrics::MESSAGES_STORED).increment(1);
                }
                return Ok(());
            }
            Err(wafleet_core::Error::Fenced) => return Err(wafleet_core::Error::Fenced),
            Err(err) if attempt < 5 => {
                tracing::warn!(error = ?err, attempt, "storing a message failed; retrying");
                tokio::time::sleep(wait).await;
                wait *= 2;
            }
            Err(err) => return Err(err),
        }
    }
    unreachable!("the loop returns")
}
