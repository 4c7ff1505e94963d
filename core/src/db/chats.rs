//! Personal chats and their messages, as sessions report them.

use crate::link::{IncomingMessage, Jid, ReceiptKind};
use crate::types::{DeviceId, Timestamp, UserId};
use crate::{Db, Result};

use super::leases::fenced;
use super::{Fence, on_db};

/// A chat as listed to its owner.
#[derive(Clone, Debug, sqlx::FromRow, serde::Serialize, utoipa::ToSchema)]
pub struct Chat {
    /// The other person's JID.
    pub jid: String,
    /// Their name, when known.
    pub name: Option<String>,
    /// When the last message was sent.
    pub last_message_at: Timestamp,
    /// The start of the last message.
    pub last_message_preview: Option<String>,
    /// Messages received since the chat was last read.
    pub unread_count: i64,
}

/// Longest preview kept on a chat.
const PREVIEW_CHARS: usize = 120;

impl Db {
    /// Stores a personal-chat message and updates its chat; returns `false` for a replay (same id),
    /// which changes nothing. Durable when this returns.
    #[tracing::instrument(skip(self, message), fields(message = %message.id))]
    pub async fn store_message(&self, fence: Fence, message: &IncomingMessage) -> Result<bool> {
        let device = fence.device;
        let kind = serde_json::to_value(message.kind)
            .ok()
            .and_then(|v| v.as_str().map(str::to_owned))
            .unwrap_or_else(|| "other".into());
        let preview = message
            .text
            .as_deref()
            .map(|t| t.chars().take(PREVIEW_CHARS).collect::<String>());
        let status = message.from_me.then_some("sent");
        let unread = i64::from(!message.from_me);
        let now = Timestamp::now();
        Ok(fenced!(self, fence, tx => {
            let inserted = sqlx::query(
                "INSERT INTO messages (device_id, id, chat_jid, sender_jid, from_me, kind, body, sent_at, status, received_at) \
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10) ON CONFLICT (device_id, id) DO NOTHING")
                .bind(device)
                .bind(&message.id)
                .bind(&message.chat.0)
                .bind(&message.sender.0)
                .bind(message.from_me)
                .bind(&kind)
                .bind(message.text.as_deref())
                .bind(message.sent_at)
                .bind(status)
                .bind(now)
                .execute(&mut *tx)
                .await?
                .rows_affected()
                == 1;
            if inserted {
                sqlx::query(
                    "INSERT INTO chats (device_id, jid, name, last_message_at, last_message_preview, unread_count) \
                     VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT (device_id, jid) DO UPDATE SET \
                       name = COALESCE(excluded.name, chats.name), \
                       last_message_at = CASE WHEN excluded.last_message_at >= chats.last_message_at \
                         THEN excluded.last_message_at ELSE chats.last_message_at END, \
                       last_message_preview = CASE WHEN excluded.last_message_at >= chats.last_message_at \
                         THEN excluded.last_message_preview ELSE chats.last_message_preview END, \
                       unread_count = chats.unread_count + excluded.unread_count")
                    .bind(device)
                    .bind(&message.chat.0)
                    .bind(if message.from_me { None } else { message.push_name.as_deref() })
                    .bind(message.sent_at)
                    .bind(preview.as_deref())
                    .bind(unread)
                    .execute(&mut *tx)
                    .await?;
            }
            inserted
        }))
    }

    /// Records delivered/read receipts for this account's own messages. Status only moves forward.
    #[tracing::instrument(skip(self, ids))]
    pub async fn apply_receipt(&self, fence: Fence, chat: &Jid, kind: ReceiptKind, ids: &[String]) -> Result<()> {
        let device = fence.device;
        let (status, sql) = match kind {
            ReceiptKind::Delivered => (
                "delivered",
                "UPDATE messages SET status = $4 WHERE device_id = $1 AND chat_jid = $2 AND id = $3 \
                 AND from_me AND (status IS NULL OR status = 'sent')",
            ),
            ReceiptKind::Read => (
                "read",
                "UPDATE messages SET status = $4 WHERE device_id = $1 AND chat_jid = $2 AND id = $3 \
                 AND from_me AND (status IS NULL OR status IN ('sent', 'delivered'))",
            ),
        };
        fenced!(self, fence, tx => {
            for id in ids {
                sqlx::query(sql).bind(device).bind(&chat.0).bind(id).bind(status).execute(&mut *tx).await?;
            }
        });
        Ok(())
    }

    /// How many chats each of `user`'s devices has.
    #[tracing::instrument(skip(self))]
    pub async fn chat_counts(&self, user: UserId) -> Result<Vec<(DeviceId, i64)>> {
        Ok(on_db!(self, pool => sqlx::query_as(
            "SELECT c.device_id, COUNT(*) FROM chats c JOIN devices d ON d.id = c.device_id \
             WHERE d.user_id = $1 GROUP BY c.device_id")
            .bind(user)
            .fetch_all(pool)
            .await)?)
    }

    /// The personal chats of one of `user`'s devices, most recent first.
    #[tracing::instrument(skip(self))]
    pub async fn list_chats(&self, user: UserId, device: DeviceId, limit: i64) -> Result<Vec<Chat>> {
        Ok(on_db!(self, pool => sqlx::query_as::<_, Chat>(
            "SELECT c.jid, c.name, c.last_message_at, c.last_message_preview, c.unread_count FROM chats c \
             JOIN devices d ON d.id = c.device_id WHERE c.device_id = $1 AND d.user_id = $2 \
             ORDER BY c.last_message_at DESC, c.jid LIMIT $3")
            .bind(device)
            .bind(user)
            .bind(limit)
            .fetch_all(pool)
            .await)?)
    }
}
