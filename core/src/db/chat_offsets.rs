//! Chats and messages in numbered pages with a total, as the upstream REST API pages them
//! (`limit`, `offset`, `total`), with its filters. wafleet's own views page by cursor
//! ([`super::chat_views`]); these serve the compatible routes.

use crate::link::ChatSetting;
use crate::types::{DeviceId, Timestamp, UserId};
use crate::{Db, Result};

use super::chat_views::ChatMessage;
use super::on_db;

/// Kinds that carry media (everything but text and "other").
const MEDIA_KINDS: &str = "('image', 'video', 'audio', 'document', 'sticker')";

/// A chat with what the upstream's chat list shows.
#[derive(Clone, Debug, sqlx::FromRow)]
pub struct ChatSummary {
    /// The other person's JID.
    pub jid: String,
    /// Their saved name, else their push name.
    pub name: Option<String>,
    /// When the last message was sent.
    pub last_message_at: Timestamp,
    /// When its first stored message was sent (the last one's time when none is stored).
    pub first_message_at: Timestamp,
    /// Archived by the account (hidden from its main chat list).
    pub archived: bool,
    /// Pinned by the account to the top of its chat list.
    pub pinned: bool,
    /// The chat's disappearing-messages timer in seconds (0: off), as the account last set it.
    pub disappearing_secs: i64,
}

/// Which chats to list, beside a name search.
#[derive(Clone, Copy, Debug, Default)]
pub struct ChatFilter {
    /// Only chats with a media message.
    pub with_media: bool,
    /// Only archived chats (`true`) or only the others (`false`).
    pub archived: Option<bool>,
}

/// Which of a chat's messages to list.
#[derive(Clone, Debug, Default)]
pub struct MessageFilter {
    /// Sent at or after.
    pub from: Option<Timestamp>,
    /// Sent at or before.
    pub until: Option<Timestamp>,
    /// Only messages with media.
    pub media_only: bool,
    /// Only the account's own (`true`) or only the contact's (`false`).
    pub from_me: Option<bool>,
    /// Only messages whose text contains this (any case).
    pub search: Option<String>,
}

/// The lower-cased `LIKE` pattern for a search, matching it anywhere (any case, with `LOWER`).
fn contains(text: &str) -> String {
    super::like_containing(&text.to_lowercase())
}

/// The columns of [`ChatSummary`] on `chats c` with its saved name `n`.
const SUMMARY_COLUMNS: &str = "c.jid, COALESCE(n.name, c.name) AS name, c.last_message_at, \
     COALESCE((SELECT MIN(m.sent_at) FROM messages m WHERE m.device_id = c.device_id \
         AND m.chat_jid = c.jid), c.last_message_at) AS first_message_at, \
     c.archived, c.pinned, c.disappearing_secs";

impl Db {
    /// Chat `jid` of one of `user`'s devices, as [`Db::chats_by_offset`] lists it, found by its
    /// JID or by the LID of a chat kept under the number (as [`Db::chat`] finds it);
    /// [`crate::Error::NotFound`] when there is none.
    #[tracing::instrument(skip(self))]
    pub async fn chat_summary(&self, user: UserId, device: DeviceId, jid: &str) -> Result<ChatSummary> {
        let sql = format!(
            "SELECT {SUMMARY_COLUMNS} FROM chats c LEFT JOIN contact_names n ON n.device_id = c.device_id \
             AND n.jid = c.jid JOIN devices d ON d.id = c.device_id \
             WHERE c.device_id = $1 AND d.user_id = $2 AND (c.jid = $3 OR c.lid = $3) \
             ORDER BY CASE WHEN c.jid = $3 THEN 0 ELSE 1 END LIMIT 1"
        );
        Ok(
            on_db!(self, pool => sqlx::query_as::<_, ChatSummary>(sqlx::AssertSqlSafe(sql.as_str()))
            .bind(device)
            .bind(user)
            .bind(jid)
            .fetch_one(pool)
            .await)?,
        )
    }

    /// Message `id` stored for one of `user`'s devices; [`crate::Error::NotFound`] when there is
    /// none (or the device is not theirs).
    #[tracing::instrument(skip(self))]
    pub async fn stored_message(&self, user: UserId, device: DeviceId, id: &str) -> Result<ChatMessage> {
        const SQL: &str = concat!(
            "SELECT ",
            super::chat_views::message_columns!(),
            super::chat_views::messages_with_media!(),
            " JOIN devices d ON d.id = m.device_id \
             WHERE m.device_id = $1 AND d.user_id = $2 AND m.id = $3"
        );
        Ok(on_db!(self, pool => sqlx::query_as::<_, ChatMessage>(SQL)
            .bind(device)
            .bind(user)
            .bind(id)
            .fetch_one(pool)
            .await)?)
    }

    /// The send of one of `user`'s devices that went out under WhatsApp's id `id`, as a message of
    /// its chat (wafleet's own sends are kept as sends, not among the chat's stored messages);
    /// [`crate::Error::NotFound`] when none has left under that id.
    #[tracing::instrument(skip(self))]
    pub async fn sent_message(&self, user: UserId, device: DeviceId, id: &str) -> Result<ChatMessage> {
        const SQL: &str = "SELECT o.wa_message_id AS id, o.recipient AS chat_jid, COALESCE(d.jid, '') AS sender_jid, \
             TRUE AS from_me, o.kind, o.body, o.sent_at, o.status, o.sent_at AS received_at, FALSE AS history, \
             CAST(NULL AS TEXT) AS media_mime, CAST(NULL AS BIGINT) AS media_size, \
             CAST(NULL AS TEXT) AS media_file_name, CAST(NULL AS TEXT) AS media_state \
             FROM outbound_messages o JOIN devices d ON d.id = o.device_id \
             WHERE o.device_id = $1 AND d.user_id = $2 AND o.wa_message_id = $3 AND o.sent_at IS NOT NULL LIMIT 1";
        Ok(on_db!(self, pool => sqlx::query_as::<_, ChatMessage>(SQL)
            .bind(device)
            .bind(user)
            .bind(id)
            .fetch_one(pool)
            .await)?)
    }

    /// Records a setting the account made on chat `jid` of `device` once WhatsApp took it: the
    /// chat archived or pinned (or back). Stars and deletions for the account alone are
    /// WhatsApp's state, not kept here: the chat's record keeps every message.
    #[tracing::instrument(skip(self))]
    pub async fn record_chat_setting(&self, device: DeviceId, jid: &str, setting: &ChatSetting) -> Result<()> {
        let (column, on) = match setting {
            ChatSetting::Archived { archived } => ("archived", *archived),
            ChatSetting::Pinned { pinned } => ("pinned", *pinned),
            ChatSetting::Starred { .. } | ChatSetting::DeletedForMe { .. } => return Ok(()),
        };
        let sql = format!("UPDATE chats SET {column} = $3 WHERE device_id = $1 AND jid = $2");
        on_db!(self, pool => sqlx::query(sqlx::AssertSqlSafe(sql.as_str()))
            .bind(device)
            .bind(jid)
            .bind(on)
            .execute(pool)
            .await
            .map(drop))?;
        Ok(())
    }

    /// Records the disappearing-messages timer of chat `jid` of `device` (seconds, 0: off) once
    /// WhatsApp took it.
    #[tracing::instrument(skip(self))]
    pub async fn record_disappearing(&self, device: DeviceId, jid: &str, seconds: u32) -> Result<()> {
        on_db!(self, pool => sqlx::query("UPDATE chats SET disappearing_secs = $3 WHERE device_id = $1 AND jid = $2")
            .bind(device)
            .bind(jid)
            .bind(i64::from(seconds))
            .execute(pool)
            .await
            .map(drop))?;
        Ok(())
    }

    /// Marks chat `jid` of `device` as read: no unread messages.
    #[tracing::instrument(skip(self))]
    pub async fn clear_unread(&self, device: DeviceId, jid: &str) -> Result<()> {
        on_db!(self, pool => sqlx::query("UPDATE chats SET unread_count = 0 WHERE device_id = $1 AND jid = $2")
            .bind(device)
            .bind(jid)
            .execute(pool)
            .await
            .map(drop))?;
        Ok(())
    }

    /// One page of the personal chats of one of `user`'s devices, most recent first, `limit`
    /// from `offset`, with how many there are in all: only those whose name contains `search`,
    /// only those with a media message when `with_media`, and only the archived ones or only the
    /// others when `archived` says which. Empty for a device not theirs.
    #[tracing::instrument(skip(self))]
    pub async fn chats_by_offset(
        &self,
        user: UserId,
        device: DeviceId,
        search: Option<&str>,
        filter: ChatFilter,
        limit: i64,
        offset: i64,
    ) -> Result<(Vec<ChatSummary>, i64)> {
        let matching = format!(
            " FROM chats c LEFT JOIN contact_names n ON n.device_id = c.device_id AND n.jid = c.jid \
             JOIN devices d ON d.id = c.device_id WHERE c.device_id = $1 AND d.user_id = $2 \
             AND ($3 IS NULL OR LOWER(COALESCE(n.name, c.name, '')) LIKE $3 ESCAPE '\\') \
             AND (NOT $4 OR EXISTS (SELECT 1 FROM messages m WHERE m.device_id = c.device_id \
                 AND m.chat_jid = c.jid AND m.kind IN {MEDIA_KINDS})) \
             AND ($5 IS NULL OR c.archived = $5)"
        );
        let page =
            format!("SELECT {SUMMARY_COLUMNS}{matching} ORDER BY c.last_message_at DESC, c.jid LIMIT $6 OFFSET $7");
        let count = format!("SELECT COUNT(*){matching}");
        let pattern = search.map(str::trim).filter(|s| !s.is_empty()).map(contains);
        Ok(on_db!(self, pool => {
            let chats = sqlx::query_as::<_, ChatSummary>(sqlx::AssertSqlSafe(page.as_str()))
                .bind(device)
                .bind(user)
                .bind(pattern.as_deref())
                .bind(filter.with_media)
                .bind(filter.archived)
                .bind(limit)
                .bind(offset)
                .fetch_all(pool)
                .await?;
            let total: i64 = sqlx::query_scalar(sqlx::AssertSqlSafe(count.as_str()))
                .bind(device)
                .bind(user)
                .bind(pattern.as_deref())
                .bind(filter.with_media)
                .bind(filter.archived)
                .fetch_one(pool)
                .await?;
            Ok::<_, sqlx::Error>((chats, total))
        })?)
    }

    /// One page of the messages of chat `jid` of one of `user`'s devices, newest first, `limit`
    /// from `offset`, with how many match `filter` in all.
    #[tracing::instrument(skip(self))]
    pub async fn messages_by_offset(
        &self,
        user: UserId,
        device: DeviceId,
        jid: &str,
        filter: &MessageFilter,
        limit: i64,
        offset: i64,
    ) -> Result<(Vec<ChatMessage>, i64)> {
        let matching = format!(
            "{} JOIN devices d ON d.id = m.device_id \
             WHERE m.device_id = $1 AND d.user_id = $2 AND m.chat_jid = $3 \
             AND ($4 IS NULL OR m.sent_at >= $4) AND ($5 IS NULL OR m.sent_at <= $5) \
             AND (NOT $6 OR m.kind IN {MEDIA_KINDS}) AND ($7 IS NULL OR m.from_me = $7) \
             AND ($8 IS NULL OR LOWER(COALESCE(m.body, '')) LIKE $8 ESCAPE '\\')",
            super::chat_views::messages_with_media!()
        );
        let page = format!(
            "SELECT {}{matching} ORDER BY m.sent_at DESC, m.id DESC LIMIT $9 OFFSET $10",
            super::chat_views::message_columns!()
        );
        let count = format!("SELECT COUNT(*){matching}");
        let pattern = filter
            .search
            .as_deref()
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .map(contains);
        // Media only takes precedence over the sender, as the upstream documents.
        let from_me = if filter.media_only { None } else { filter.from_me };
        Ok(on_db!(self, pool => {
            let messages = sqlx::query_as::<_, ChatMessage>(sqlx::AssertSqlSafe(page.as_str()))
                .bind(device)
                .bind(user)
                .bind(jid)
                .bind(filter.from)
                .bind(filter.until)
                .bind(filter.media_only)
                .bind(from_me)
                .bind(pattern.as_deref())
                .bind(limit)
                .bind(offset)
                .fetch_all(pool)
                .await?;
            let total: i64 = sqlx::query_scalar(sqlx::AssertSqlSafe(count.as_str()))
                .bind(device)
                .bind(user)
                .bind(jid)
                .bind(filter.from)
                .bind(filter.until)
                .bind(filter.media_only)
                .bind(from_me)
                .bind(pattern.as_deref())
                .fetch_one(pool)
                .await?;
            Ok::<_, sqlx::Error>((messages, total))
        })?)
    }
}
