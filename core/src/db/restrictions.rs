//! What WhatsApp lets each device's account do with new chats (a reach-out timelock, the
//! monthly new-chat cap), as the device's holder last read it, and the sends that wait for it.
//!
//! A "new chat" is a recipient who has never written to the device: the only chats WhatsApp
//! restricts. Sends to them wait (still queued, with the reason and the time they move) while a
//! restriction blocks; sends to chats the recipient has written in go on. Nothing fails because
//! of a restriction.

use crate::link::{NewChatCap, Restrictions};
use crate::types::{DeviceId, Timestamp, UserId};
use crate::{Db, Result};

use super::on_db;

/// A send to a new chat, as a condition: the recipient never wrote in the device's chat with it
/// (`outbound_messages` is the statement's table). A literal, so statements stay `&'static str`.
macro_rules! to_new_chat {
    () => {
        "NOT EXISTS (SELECT 1 FROM messages m WHERE m.device_id = outbound_messages.device_id \
         AND m.chat_jid = outbound_messages.recipient AND m.from_me = FALSE)"
    };
}

type Row = (DeviceId, Option<Timestamp>, Option<i64>, Option<i64>, Option<Timestamp>);

fn from_row(row: Row) -> (DeviceId, Restrictions) {
    let (device, timelocked_until, used, total, resets_at) = row;
    (
        device,
        Restrictions {
            timelocked_until,
            new_chat_cap: total.map(|total| NewChatCap {
                used: used.unwrap_or(0),
                total,
                resets_at,
            }),
        },
    )
}

impl Db {
    /// Stores what WhatsApp said about `device`'s account just now.
    #[tracing::instrument(skip(self))]
    pub async fn set_device_restrictions(&self, device: DeviceId, state: &Restrictions) -> Result<()> {
        let cap = state.new_chat_cap.as_ref();
        on_db!(self, pool => sqlx::query(
            "INSERT INTO device_restrictions (device_id, timelocked_until, cap_used, cap_total, cap_resets_at, checked_at) \
             VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT (device_id) DO UPDATE SET timelocked_until = $2, \
             cap_used = $3, cap_total = $4, cap_resets_at = $5, checked_at = $6")
            .bind(device)
            .bind(state.timelocked_until)
            .bind(cap.map(|c| c.used))
            .bind(cap.map(|c| c.total))
            .bind(cap.and_then(|c| c.resets_at))
            .bind(Timestamp::now())
            .execute(pool)
            .await
            .map(drop))?;
        Ok(())
    }

    /// What was last read about `device`'s account (`None`: never read).
    #[tracing::instrument(skip(self))]
    pub async fn device_restrictions(&self, device: DeviceId) -> Result<Option<Restrictions>> {
        let row: Option<Row> = on_db!(self, pool => sqlx::query_as(
            "SELECT device_id, timelocked_until, cap_used, cap_total, cap_resets_at FROM device_restrictions \
             WHERE device_id = $1")
            .bind(device)
            .fetch_optional(pool)
            .await)?;
        Ok(row.map(|r| from_row(r).1))
    }

    /// What was last read about each of `user`'s devices that has been read.
    #[tracing::instrument(skip(self))]
    pub async fn restrictions_of_user(&self, user: UserId) -> Result<Vec<(DeviceId, Restrictions)>> {
        let rows: Vec<Row> = on_db!(self, pool => sqlx::query_as(
            "SELECT r.device_id, r.timelocked_until, r.cap_used, r.cap_total, r.cap_resets_at \
             FROM device_restrictions r JOIN devices d ON d.id = r.device_id WHERE d.user_id = $1")
            .bind(user)
            .fetch_all(pool)
            .await)?;
        Ok(rows.into_iter().map(from_row).collect())
    }

    /// Holds send `id` until `until` with `reason` when it goes to a new chat (queued, or begun
    /// and refused for the restriction: a refused attempt is not counted). Returns whether it
    /// was held.
    #[tracing::instrument(skip(self))]
    pub async fn hold_for_restriction(&self, id: i64, reason: &str, until: Timestamp) -> Result<bool> {
        const SQL: &str = concat!(
            "UPDATE outbound_messages SET status = 'queued', not_before = $3, waiting_reason = $2, next_attempt_at = $3, \
             attempts = CASE WHEN status = 'sending' THEN attempts - 1 ELSE attempts END, updated_at = $4 \
             WHERE id = $1 AND status IN ('queued', 'sending') AND ",
            to_new_chat!()
        );
        let held = on_db!(self, pool => sqlx::query(SQL)
            .bind(id)
            .bind(reason)
            .bind(until)
            .bind(Timestamp::now())
            .execute(pool)
            .await
            .map(|done| done.rows_affected()))?;
        Ok(held > 0)
    }

    /// Holds every queued send of `device` to a new chat until `until` with `reason`, so each
    /// says why it waits at once; returns how many.
    #[tracing::instrument(skip(self))]
    pub async fn hold_new_chat_sends(&self, device: DeviceId, reason: &str, until: Timestamp) -> Result<u64> {
        const SQL: &str = concat!(
            "UPDATE outbound_messages SET not_before = $3, waiting_reason = $2, next_attempt_at = $3 \
             WHERE device_id = $1 AND status = 'queued' AND (not_before IS NULL OR not_before < $3) AND ",
            to_new_chat!()
        );
        Ok(on_db!(self, pool => sqlx::query(SQL)
            .bind(device)
            .bind(reason)
            .bind(until)
            .execute(pool)
            .await
            .map(|done| done.rows_affected()))?)
    }
}
