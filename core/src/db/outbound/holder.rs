//! What the worker holding a device does with its sends: take the next one that is due, begin it
//! under the lease's fencing token with the message id it goes out under, record the outcome, and
//! settle sends a previous attempt left unconfirmed.
//!
//! Nothing here is kept anywhere but in the rows, so a holder that starts (after a crash, a
//! failover, a Redis restart that lost every queued job) finds all of its work by reading them.

use crate::link::{Attachment, MessageKind, Structured};
use crate::types::{DeviceId, Timestamp};
use crate::{Db, Error, Result};

use super::super::leases::fenced;
use super::super::{Fence, on_db};
use crate::db::BeginWrite;

/// What the holder needs to perform a send it has begun.
#[derive(Clone, Debug, sqlx::FromRow)]
pub struct SendWork {
    /// The send's id.
    pub id: i64,
    /// The recipient's JID.
    pub recipient: String,
    /// `text`, or the kind of file it carries (`image`, `video`, …).
    pub kind: String,
    /// Text or caption.
    pub body: Option<String>,
    /// The file of a media send (the column kept its first name: images came first).
    pub image: Option<Vec<u8>>,
    /// The file's MIME type (`None` for the images recorded before other files: JPEG).
    pub media_mime: Option<String>,
    /// A document's name.
    pub file_name: Option<String>,
    /// A contact card's, location's, link's or poll's structure (JSON).
    pub payload: Option<String>,
    /// Goes out marked "Forwarded".
    pub forwarded: bool,
    /// The WhatsApp message id it goes out under (kept from an earlier attempt that reached
    /// nothing, so a retry can never be a second message).
    pub wa_message_id: String,
    /// Attempts so far, this one included.
    pub attempts: i64,
}

impl SendWork {
    /// The contact card, location, link or poll it is, if it is one (a payload that does not
    /// read as one is none: the send goes as its text).
    pub fn structured(&self) -> Option<Structured> {
        serde_json::from_str(self.payload.as_deref()?).ok()
    }

    /// The file it carries, if any.
    pub fn attachment(&mut self) -> Option<Attachment> {
        let bytes = self.image.take()?;
        Some(Attachment {
            kind: MessageKind::from_name(&self.kind),
            bytes,
            mime: self.media_mime.take().unwrap_or_else(|| "image/jpeg".into()),
            file_name: self.file_name.take(),
        })
    }
}

/// A device's next send, as its holder sees it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum NextSend {
    /// The oldest queued send that may be tried now.
    Due(i64),
    /// Nothing may be tried before this (every queued send waits for a retry time).
    At(Timestamp),
    /// Nothing is queued.
    Idle,
}

/// What [`Db::settle_sends`] did.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Settled {
    /// Unconfirmed sends that WhatsApp's receipts showed were sent.
    pub confirmed: u64,
    /// Unconfirmed sends with no trace within the wait: failed, not sent again.
    pub unknown: u64,
    /// Sends still unconfirmed, still within the wait: settle again later.
    pub pending: u64,
}

/// Why a send whose outcome stayed unknown failed.
const UNKNOWN_REASON: &str = "outcome unknown: no acknowledgement or receipt from WhatsApp after the worker sending it \
     stopped; not sent again, to avoid a duplicate";

pub(crate) type SettleRow = (
    i64,
    DeviceId,
    String,
    String,
    Option<String>,
    String,
    Option<String>,
    Timestamp,
);

impl Db {
    /// The oldest queued send of `device` that is due at `now`, or when the next one will be. Sends
    /// of a disabled account are not taken (see [`Db::set_user_disabled`]).
    #[tracing::instrument(skip(self))]
    pub async fn next_send(&self, device: DeviceId, now: Timestamp) -> Result<NextSend> {
        let due: Option<i64> = on_db!(self, pool => sqlx::query_scalar(
            "SELECT id FROM outbound_messages WHERE device_id = $1 AND status = 'queued' \
             AND (not_before IS NULL OR not_before <= $2) AND NOT EXISTS (SELECT 1 FROM users u \
             WHERE u.id = outbound_messages.user_id AND u.disabled_at IS NOT NULL) ORDER BY id LIMIT 1")
            .bind(device)
            .bind(now)
            .fetch_optional(pool)
            .await)?;
        if let Some(id) = due {
            return Ok(NextSend::Due(id));
        }
        let later: Option<Timestamp> = on_db!(self, pool => sqlx::query_scalar(
            "SELECT MIN(not_before) FROM outbound_messages WHERE device_id = $1 AND status = 'queued' \
             AND NOT EXISTS (SELECT 1 FROM users u WHERE u.id = outbound_messages.user_id AND u.disabled_at IS NOT NULL)")
            .bind(device)
            .fetch_one(pool)
            .await)?;
        Ok(later.map_or(NextSend::Idle, NextSend::At))
    }

    /// Devices held by `worker` with a queued send due at `now`: the holder's safety net for
    /// wake-ups that never came (a queue that lost its jobs).
    #[tracing::instrument(skip(self))]
    pub async fn devices_with_due_sends(&self, worker: &str, now: Timestamp) -> Result<Vec<DeviceId>> {
        Ok(on_db!(self, pool => sqlx::query_scalar(
            "SELECT DISTINCT o.device_id FROM outbound_messages o JOIN device_leases l ON l.device_id = o.device_id \
             WHERE o.status = 'queued' AND l.holder = $1 AND (o.not_before IS NULL OR o.not_before <= $2) \
             AND NOT EXISTS (SELECT 1 FROM users u WHERE u.id = o.user_id AND u.disabled_at IS NOT NULL)")
            .bind(worker)
            .bind(now)
            .fetch_all(pool)
            .await)?)
    }

    /// Says why a queued send waits and when it should move (shown to its owner).
    #[tracing::instrument(skip(self))]
    pub async fn set_send_waiting(&self, id: i64, reason: &str, until: Timestamp) -> Result<()> {
        on_db!(self, pool => sqlx::query(
            "UPDATE outbound_messages SET waiting_reason = $2, next_attempt_at = $3 \
             WHERE id = $1 AND status = 'queued' \
             AND (waiting_reason IS NULL OR waiting_reason <> $2 OR next_attempt_at IS NULL OR next_attempt_at <> $3)")
            .bind(id)
            .bind(reason)
            .bind(until)
            .execute(pool)
            .await
            .map(drop))?;
        Ok(())
    }

    /// Begins a send as the device's holder: `queued → sending` under the lease's token, with the
    /// message id `wa_id` it goes out under (or the one an earlier attempt chose). `None` when it
    /// is not queued (already begun, done, or not this device's) or its account was disabled.
    #[tracing::instrument(skip(self))]
    pub async fn begin_send(&self, fence: Fence, id: i64, wa_id: &str) -> Result<Option<SendWork>> {
        let now = Timestamp::now();
        Ok(fenced!(self, fence, tx => {
            sqlx::query_as::<_, SendWork>(
                "UPDATE outbound_messages SET status = 'sending', attempts = attempts + 1, send_token = $3, \
                 updated_at = $4, wa_message_id = COALESCE(wa_message_id, $5), waiting_reason = NULL, \
                 next_attempt_at = NULL WHERE id = $1 AND device_id = $2 AND status = 'queued' \
                 AND NOT EXISTS (SELECT 1 FROM users u WHERE u.id = outbound_messages.user_id AND u.disabled_at IS NOT NULL) \
                 RETURNING id, recipient, kind, body, image, media_mime, file_name, payload, forwarded, wa_message_id, attempts")
                .bind(id)
                .bind(fence.device)
                .bind(fence.token)
                .bind(now)
                .bind(wa_id)
                .fetch_optional(&mut *tx)
                .await?
        }))
    }

    /// Records that WhatsApp accepted a send under `wa_message_id`, and adds it to its chat. Not
    /// fenced: the send happened, whoever holds the device now. A receipt may have come first
    /// (the status stays delivered or read), or a new holder may have given up on it (it is sent
    /// after all). `kept_at` is where the media store now keeps the file of a media send: the
    /// chat's message shows it from there (as a received file is), and the send lets go of its
    /// copy, so finished sends do not keep their files in the database.
    #[tracing::instrument(skip(self))]
    pub async fn finish_send(&self, id: i64, wa_message_id: &str, kept_at: Option<&str>) -> Result<()> {
        let now = Timestamp::now();
        on_db!(self, pool => {
            let mut tx = pool.begin_write().await?;
            let rows: Vec<SettleRow> = sqlx::query_as(
                "UPDATE outbound_messages SET wa_message_id = $2, sent_at = $3, updated_at = $3, reason = NULL, \
                 status = CASE WHEN status IN ('sending', 'failed') THEN 'sent' ELSE status END \
                 WHERE id = $1 AND sent_at IS NULL AND status IN ('sending', 'failed', 'delivered', 'read') \
                 RETURNING id, device_id, recipient, kind, body, status, wa_message_id, sent_at")
                .bind(id)
                .bind(wa_message_id)
                .bind(now)
                .fetch_all(&mut *tx)
                .await?;
            add_to_chats!(tx, rows, now);
            if let Some(key) = kept_at {
                let kept = sqlx::query(
                    "INSERT INTO message_media (device_id, message_id, mime, size, file_name, locator, state, \
                     stored_key, next_attempt_at, created_at, stored_at) \
                     SELECT o.device_id, o.wa_message_id, COALESCE(o.media_mime, 'image/jpeg'), LENGTH(o.image), \
                     o.file_name, '', 'stored', $2, $3, $3, $3 FROM outbound_messages o \
                     JOIN messages m ON m.device_id = o.device_id AND m.id = o.wa_message_id \
                     WHERE o.id = $1 AND o.image IS NOT NULL \
                     ON CONFLICT (device_id, message_id) DO NOTHING")
                    .bind(id)
                    .bind(key)
                    .bind(now)
                    .execute(&mut *tx)
                    .await?;
                if kept.rows_affected() == 1 {
                    sqlx::query("UPDATE outbound_messages SET image = NULL WHERE id = $1")
                        .bind(id)
                        .execute(&mut *tx)
                        .await?;
                }
            }
            tx.commit().await?;
            Ok::<_, Error>(())
        })
    }

    /// Puts a begun send back in the queue, to be tried again at `not_before`: the link failed
    /// before anything reached WhatsApp.
    #[tracing::instrument(skip(self))]
    pub async fn retry_send(&self, id: i64, reason: &str, not_before: Timestamp) -> Result<()> {
        on_db!(self, pool => sqlx::query(
            "UPDATE outbound_messages SET status = 'queued', reason = NULL, updated_at = $3, not_before = $4, \
             waiting_reason = $2, next_attempt_at = $4 WHERE id = $1 AND status = 'sending'")
            .bind(id)
            .bind(format!("trying again after: {reason}"))
            .bind(Timestamp::now())
            .bind(not_before)
            .execute(pool)
            .await
            .map(drop))?;
        Ok(())
    }

    /// Marks a send failed with `reason` (from `queued` or `sending`).
    #[tracing::instrument(skip(self))]
    pub async fn fail_send(&self, id: i64, reason: &str) -> Result<()> {
        on_db!(self, pool => sqlx::query(
            "UPDATE outbound_messages SET status = 'failed', reason = $2, updated_at = $3, waiting_reason = NULL, \
             next_attempt_at = NULL WHERE id = $1 AND status IN ('queued', 'sending')")
            .bind(id)
            .bind(reason)
            .bind(Timestamp::now())
            .execute(pool)
            .await
            .map(drop))?;
        Ok(())
    }

    /// Settles the sends of `fence`'s device that an attempt no longer running left unconfirmed
    /// (a worker that died, or this holder's own attempt that was cut off). Call it only while no
    /// send of the device is under way here. Those WhatsApp's receipts marked delivered or read
    /// are recorded as sent and added to their chat; those still `sending` that began before
    /// `begun_before` left no trace and fail, never sent again; the rest are counted as pending.
    #[tracing::instrument(skip(self))]
    pub async fn settle_sends(&self, fence: Fence, begun_before: Timestamp) -> Result<Settled> {
        let now = Timestamp::now();
        on_db!(self, pool => {
            let mut tx = pool.begin_write().await?;
            let confirmed = settle_confirmed_in!(tx, fence.device, now);
            let unknown = sqlx::query(
                "UPDATE outbound_messages SET status = 'failed', reason = $4, updated_at = $3 \
                 WHERE device_id = $1 AND status = 'sending' AND send_token <= $2 AND updated_at < $5")
                .bind(fence.device)
                .bind(fence.token)
                .bind(now)
                .bind(UNKNOWN_REASON)
                .bind(begun_before)
                .execute(&mut *tx)
                .await?
                .rows_affected();
            let (pending,): (i64,) = sqlx::query_as(
                "SELECT COUNT(*) FROM outbound_messages WHERE device_id = $1 AND status = 'sending'")
                .bind(fence.device)
                .fetch_one(&mut *tx)
                .await?;
            tx.commit().await?;
            Ok::<_, Error>(Settled { confirmed, unknown, pending: u64::try_from(pending).unwrap_or(0) })
        })
    }
}

/// Records as sent the sends of `$device` that receipts showed were delivered or read before
/// anyone recorded them as sent (their holder died, or the receipt overtook the record), and adds
/// them to their chats; evaluates to how many. A receipt's time is when the row last changed: the
/// send went out before it.
macro_rules! settle_confirmed_in {
    ($tx:ident, $device:expr, $now:expr) => {{
        let rows: Vec<$crate::db::outbound::holder::SettleRow> = sqlx::query_as(
            "UPDATE outbound_messages SET sent_at = updated_at, reason = NULL WHERE device_id = $1 \
             AND sent_at IS NULL AND status IN ('delivered', 'read') \
             RETURNING id, device_id, recipient, kind, body, status, wa_message_id, sent_at",
        )
        .bind($device)
        .fetch_all(&mut *$tx)
        .await?;
        let confirmed = rows.len() as u64;
        $crate::db::outbound::holder::add_to_chats!($tx, rows, $now);
        confirmed
    }};
}
pub(crate) use settle_confirmed_in;

/// Adds settled sends (`SettleRow`s) to their chats as messages from this account, with the
/// status their receipts gave them.
macro_rules! add_to_chats {
    ($tx:ident, $rows:expr, $now:expr) => {{
        let rows: Vec<$crate::db::outbound::holder::SettleRow> = $rows;
        let mut messages = Vec::with_capacity(rows.len());
        for (_, device, recipient, kind, body, _, wa_id, sent_at) in &rows {
            let (own,): (Option<String>,) = sqlx::query_as("SELECT jid FROM devices WHERE id = $1")
                .bind(*device)
                .fetch_one(&mut *$tx)
                .await?;
            messages.push((
                *device,
                $crate::link::IncomingMessage {
                    id: wa_id.clone().unwrap_or_default(),
                    chat: $crate::link::Jid(recipient.clone()),
                    sender: $crate::link::Jid(own.unwrap_or_default()),
                    sender_alt: None,
                    from_me: true,
                    push_name: None,
                    kind: $crate::link::MessageKind::from_name(kind),
                    text: body.clone(),
                    sent_at: *sent_at,
                    history: false,
                    media: None,
                },
            ));
        }
        if !messages.is_empty() {
            let refs: Vec<($crate::types::DeviceId, &$crate::link::IncomingMessage)> =
                messages.iter().map(|(d, m)| (*d, m)).collect();
            $crate::db::chats::insert_messages!($tx, &refs, $now);
        }
        // A receipt that came before the message was in its chat: the message takes its status.
        for (_, device, _, _, _, status, wa_id, _) in rows.iter().filter(|r| r.5 != "sent") {
            sqlx::query("UPDATE messages SET status = $3 WHERE device_id = $1 AND id = $2 AND from_me")
                .bind(*device)
                .bind(wa_id.as_deref())
                .bind(status)
                .execute(&mut *$tx)
                .await?;
        }
    }};
}
pub(crate) use add_to_chats;
