//! Writing what one session reports into the database.

use std::sync::Arc;

use tokio::sync::{Notify, mpsc};
use wafleet_core::Db;
use wafleet_core::db::{DeviceStatus, Fence, IngestItem};
use wafleet_core::link::LinkEvent;
use wafleet_core::types::Timestamp;

use crate::flush::Ingest;

/// Consumes a held device's events until the session ends for good (logout, ban, failed
/// pairing), the link closes the stream, or the lease turns out to be lost (every write carries
/// the lease's fencing token, and a stale one is refused).
///
/// Messages and receipts go through the batch writer ([`Ingest`]); the rest is written at once.
/// `connected` is notified each time the session reports it is connected (once recorded).
#[tracing::instrument(skip(db, ingest, events, connected), fields(device = %fence.device, token = fence.token))]
pub async fn consume(
    db: Db,
    ingest: Ingest,
    fence: Fence,
    mut events: mpsc::Receiver<LinkEvent>,
    connected: Arc<Notify>,
) {
    while let Some(event) = events.recv().await {
        let is_connected = matches!(event, LinkEvent::Connected);
        let flow = handle(&db, &ingest, fence, event).await;
        if is_connected {
            connected.notify_one();
        }
        match flow {
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

async fn handle(db: &Db, ingest: &Ingest, device: Fence, event: LinkEvent) -> wafleet_core::Result<Flow> {
    // Everything but messages and receipts (which the batch writer announces) changes the
    // device's row: its cached reads go.
    let row_changed = !matches!(
        event,
        LinkEvent::Message { .. } | LinkEvent::Receipt { .. } | LinkEvent::LidMapping { .. } | LinkEvent::Call { .. }
    );
    let flow = apply(db, ingest, device, event).await;
    if row_changed {
        ingest.device_changed(device.device).await;
    }
    flow
}

async fn apply(db: &Db, ingest: &Ingest, device: Fence, event: LinkEvent) -> wafleet_core::Result<Flow> {
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
                ingest.push(device, IngestItem::Message(message), ack).await;
            } else {
                ack.done();
            }
        }
        LinkEvent::ContactName { jid, name, ack } => {
            db.set_contact_name(device.device, &jid, &name).await?;
            ack.done();
        }
        LinkEvent::Call { call } => {
            tracing::info!(call = %call.id, from = %call.from, "a call is ringing");
            db.record_call(device, &call).await?;
        }
        LinkEvent::LidMapping { lid, phone, ack } => {
            ingest.push(device, IngestItem::LidMapping { lid, phone }, ack).await;
        }
        LinkEvent::Receipt {
            kind,
            chat,
            message_ids,
            ack,
            ..
        } => {
            let item = IngestItem::Receipt {
                chat,
                kind,
                ids: message_ids,
            };
            ingest.push(device, item, ack).await;
        }
    }
    Ok(Flow::Continue)
}
