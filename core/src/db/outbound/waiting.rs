//! Why queued sends wait, as their owner sees it.
//!
//! The device's holder records the reason of the send it is about to make ([`Db::set_send_waiting`]:
//! the pace, the daily cap, warm-up, a pause, a retry). The sends queued behind that one, and the
//! sends of a device no worker can send from (offline, logged out, banned), carry no reason of
//! their own: the reason is derived here when they are read, so every waiting send says why.

use crate::types::{DeviceId, Timestamp};
use crate::{Db, Result};

use super::super::on_db;
use super::{OutboundMessage, OutboundStatus};

/// Why a device's queued sends wait, and when they are expected to move.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Waiting {
    /// In words, for people: "daily cap reached: …", "the device is offline: …".
    pub reason: String,
    /// When they should move; `None` when that depends on someone (a device to reconnect).
    pub next_attempt_at: Option<Timestamp>,
}

/// Why nothing is sent from a device in `status` (its stored spelling), if it cannot send.
fn not_sending(status: &str) -> Option<String> {
    Some(
        match status {
            "online" => return None,
            "logged_out" => "the device is logged out of WhatsApp: link it again and its sends go out",
            "banned" => "the device's number is banned by WhatsApp: its sends cannot go out",
            "pairing" => "the device is being linked: its sends go out once it is online",
            "connecting" => "the device is connecting: its sends go out once it is online",
            _ => "the device is offline: its sends go out once it is online again",
        }
        .to_owned(),
    )
}

impl Db {
    /// Why the queued sends of `device` wait at `now`, if anything holds them: the device not
    /// online, a pause after refusals, or what its holder recorded for the next send (the soonest
    /// recorded wait still ahead).
    #[tracing::instrument(skip(self))]
    pub async fn device_waiting(&self, device: DeviceId, now: Timestamp) -> Result<Option<Waiting>> {
        let status: Option<String> = on_db!(self, pool => sqlx::query_scalar(
            "SELECT status FROM devices WHERE id = $1")
            .bind(device)
            .fetch_optional(pool)
            .await)?;
        let Some(status) = status else { return Ok(None) };
        if let Some(reason) = not_sending(&status) {
            return Ok(Some(Waiting {
                reason,
                next_attempt_at: None,
            }));
        }
        let pacing = self.device_pacing(device).await?;
        if let Some(until) = pacing.paused_until.filter(|until| until.millis() > now.millis()) {
            let why = pacing.pause_reason.unwrap_or_else(|| "too many refusals".to_owned());
            return Ok(Some(Waiting {
                reason: format!("the device's sends are paused after refusals: {why}"),
                next_attempt_at: Some(until),
            }));
        }
        let recorded: Option<(String, Timestamp)> = on_db!(self, pool => sqlx::query_as(
            "SELECT waiting_reason, next_attempt_at FROM outbound_messages \
             WHERE device_id = $1 AND status = 'queued' AND waiting_reason IS NOT NULL AND next_attempt_at > $2 \
             ORDER BY next_attempt_at LIMIT 1")
            .bind(device)
            .bind(now)
            .fetch_optional(pool)
            .await)?;
        Ok(recorded.map(|(reason, at)| Waiting {
            reason,
            next_attempt_at: Some(at),
        }))
    }

    /// Fills in why `message` waits when it is queued and its holder has said nothing current
    /// about it (it is behind another send, or its device cannot send); clears a reason that
    /// is out of date.
    pub async fn explain_waiting(&self, message: &mut OutboundMessage, now: Timestamp) -> Result<()> {
        if message.status != OutboundStatus::Queued {
            return Ok(());
        }
        let own_current =
            message.next_attempt_at.is_some_and(|at| at.millis() > now.millis()) && message.waiting_reason.is_some();
        let device = self.device_waiting(message.device_id, now).await?;
        let offline = device.as_ref().is_some_and(|w| w.next_attempt_at.is_none());
        if own_current && !offline {
            return Ok(());
        }
        match device {
            Some(w) => {
                message.waiting_reason = Some(w.reason);
                message.next_attempt_at = w.next_attempt_at;
            }
            None => {
                message.waiting_reason = None;
                message.next_attempt_at = None;
            }
        }
        Ok(())
    }
}
