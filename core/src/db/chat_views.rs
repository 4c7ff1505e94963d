//! Reading a device's personal chats the way its owner browses them: pages of chats (with search)
//! and of messages, newest first with keyset cursors, and what changed on the device since an
//! instant (for live views). Every query is scoped to the owner's devices. The rows are written by
//! the ingest in `chats.rs`; nothing here writes.

use crate::types::{DeviceId, Timestamp, UserId};
use crate::{Db, Result};

use super::{Chat, DeviceStatus, on_db};

/// Where a page of chats continues: just after this chat in newest-first order.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ChatCursor {
    /// The last listed chat's `last_message_at`.
    pub last_message_at: Timestamp,
    /// The last listed chat's JID (ties on time are ordered by JID).
    pub jid: String,
}

/// Where a page of messages continues: just before (older than) this message.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MessageCursor {
    /// The oldest listed message's `sent_at`.
    pub sent_at: Timestamp,
    /// The oldest listed message's id (ties on time are ordered by id).
    pub id: String,
}

/// A message of a personal chat as its owner reads it.
#[derive(Clone, Debug, sqlx::FromRow, serde::Serialize, utoipa::ToSchema)]
pub struct ChatMessage {
    /// WhatsApp's message id.
    pub id: String,
    /// The chat (the other person's JID).
    pub chat_jid: String,
    /// Who wrote it: the other person, or this account.
    pub sender_jid: String,
    /// Written by this account (from the phone, another linked device, or wafleet).
    pub from_me: bool,
    /// text, image, video, audio, document, sticker or other.
    pub kind: String,
    /// The text, or the caption of media.
    pub body: Option<String>,
    /// When it was sent.
    pub sent_at: Timestamp,
    /// For this account's own messages: `sent`, `delivered` or `read` (the ticks); `null` otherwise.
    pub status: Option<String>,
    /// When wafleet stored it.
    pub received_at: Timestamp,
    /// From WhatsApp's history sync when the device was linked (older than wafleet's hold of it).
    pub history: bool,
    /// The MIME type of the file it carries (a picture, video, voice note, document, sticker).
    pub media_mime: Option<String>,
    /// The file's size in bytes, as the sender announced it.
    pub media_size: Option<i64>,
    /// The file's name (documents).
    pub media_file_name: Option<String>,
    /// Whether wafleet has the file: `pending` (being fetched), `stored` (download it from
    /// `/api/devices/{device_id}/media/{id}`), `failed` or `expired` (removed by the
    /// owner's retention).
    pub media_state: Option<String>,
}

/// What changed on a device since an instant: its status, and messages stored since then with
/// their chats as they stand now.
#[derive(Clone, Debug)]
pub struct DeviceActivity {
    /// The device's session state.
    pub status: DeviceStatus,
    /// New messages, oldest stored first, each with its chat.
    pub messages: Vec<(ChatMessage, Chat)>,
}

/// The columns of [`ChatMessage`] on `messages m`.
macro_rules! message_columns {
    () => {
        "m.id, m.chat_jid, m.sender_jid, m.from_me, m.kind, m.body, m.sent_at, m.status, m.received_at, m.history, \
         mm.mime AS media_mime, mm.size AS media_size, mm.file_name AS media_file_name, mm.state AS media_state"
    };
}
pub(crate) use message_columns;

/// `messages m` with the file of each message (`mm`, when it carries one), for [`message_columns`].
macro_rules! messages_with_media {
    () => {
        " FROM messages m LEFT JOIN message_media mm ON mm.device_id = m.device_id AND mm.message_id = m.id"
    };
}
pub(crate) use messages_with_media;

/// The columns of [`Chat`] on `chats c` with its saved name `n` ([`named_chats`]).
macro_rules! chat_columns {
    () => {
        "c.jid, COALESCE(n.name, c.name) AS name, c.last_message_at, c.last_message_preview, c.unread_count, c.lid, \
         c.name AS push_name"
    };
}
pub(crate) use chat_columns;

/// `chats c` with the name the phone saved for each (`n`, when there is one).
macro_rules! named_chats {
    () => {
        " FROM chats c LEFT JOIN contact_names n ON n.device_id = c.device_id AND n.jid = c.jid"
    };
}
pub(crate) use named_chats;

/// Chats of the owner's device `$1` (owner `$2`).
macro_rules! owned_chats {
    () => {
        concat!(
            named_chats!(),
            " JOIN devices d ON d.id = c.device_id WHERE c.device_id = $1 AND d.user_id = $2"
        )
    };
}

/// A row of [`Db::device_activity`]: the device's status, and a message with its chat when there
/// is one (the `LEFT JOIN` leaves them `NULL` otherwise).
#[derive(sqlx::FromRow)]
struct ActivityRow {
    device_status: DeviceStatus,
    id: Option<String>,
    chat_jid: Option<String>,
    sender_jid: Option<String>,
    from_me: Option<bool>,
    kind: Option<String>,
    body: Option<String>,
    sent_at: Option<Timestamp>,
    status: Option<String>,
    received_at: Option<Timestamp>,
    history: Option<bool>,
    media_mime: Option<String>,
    media_size: Option<i64>,
    media_file_name: Option<String>,
    media_state: Option<String>,
    name: Option<String>,
    last_message_at: Option<Timestamp>,
    last_message_preview: Option<String>,
    unread_count: Option<i64>,
    lid: Option<String>,
    push_name: Option<String>,
}

impl ActivityRow {
    fn message(self) -> Option<(ChatMessage, Chat)> {
        let chat_jid = self.chat_jid?;
        let message = ChatMessage {
            id: self.id?,
            chat_jid: chat_jid.clone(),
            sender_jid: self.sender_jid?,
            from_me: self.from_me?,
            kind: self.kind?,
            body: self.body,
            sent_at: self.sent_at?,
            status: self.status,
            received_at: self.received_at?,
            history: self.history.unwrap_or(false),
            media_mime: self.media_mime,
            media_size: self.media_size,
            media_file_name: self.media_file_name,
            media_state: self.media_state,
        };
        let chat = Chat {
            jid: chat_jid,
            name: self.name,
            last_message_at: self.last_message_at.unwrap_or(message.sent_at),
            last_message_preview: self.last_message_preview,
            unread_count: self.unread_count.unwrap_or(0),
            lid: self.lid,
            push_name: self.push_name,
        };
        Some((message, chat))
    }
}

/// The `LIKE` pattern for a JID: the digits of a query that looks like (part of) a number, leading
/// zeros dropped (JIDs hold international numbers, `60123…@s.whatsapp.net`).
fn number_pattern(q: &str) -> Option<String> {
    let looks_like_phone = q.chars().all(|c| c.is_ascii_digit() || " +-().".contains(c));
    let digits: String = q.chars().filter(char::is_ascii_digit).collect();
    let significant = match digits.trim_start_matches('0') {
        "" => digits.as_str(),
        rest => rest,
    };
    (looks_like_phone && !digits.is_empty()).then(|| format!("%{significant}%"))
}

impl Db {
    /// A page of the personal chats of one of `user`'s devices, most recent first: those after
    /// `after`, matching `q` (within the name or last message, or digits within the number) when
    /// given. Empty for a device that is not theirs; callers check ownership for a 404.
    #[tracing::instrument(skip(self))]
    pub async fn chat_page(
        &self,
        user: UserId,
        device: DeviceId,
        q: Option<&str>,
        after: Option<&ChatCursor>,
        limit: i64,
    ) -> Result<Vec<Chat>> {
        let q = q.map(str::trim).filter(|q| !q.is_empty());
        let text = q.map(super::like_containing);
        let number = q.and_then(number_pattern);
        Ok(on_db!(self, pool => {
            let mut query = sqlx::QueryBuilder::new(concat!(
                "SELECT ",
                chat_columns!(),
                named_chats!(),
                " JOIN devices d ON d.id = c.device_id WHERE c.device_id = "
            ));
            query.push_bind(device).push(" AND d.user_id = ").push_bind(user);
            if let Some(text) = &text {
                query
                    .push(" AND (LOWER(COALESCE(n.name, c.name, '')) LIKE LOWER(")
                    .push_bind(text.clone())
                    .push(") ESCAPE '\\' OR LOWER(COALESCE(c.last_message_preview, '')) LIKE LOWER(")
                    .push_bind(text.clone())
                    .push(") ESCAPE '\\'");
                if let Some(number) = &number {
                    query.push(" OR c.jid LIKE ").push_bind(number.clone()).push(" ESCAPE '\\'");
                }
                query.push(")");
            }
            if let Some(after) = after {
                query
                    .push(" AND (c.last_message_at < ")
                    .push_bind(after.last_message_at)
                    .push(" OR (c.last_message_at = ")
                    .push_bind(after.last_message_at)
                    .push(" AND c.jid > ")
                    .push_bind(after.jid.clone())
                    .push("))");
            }
            query.push(" ORDER BY c.last_message_at DESC, c.jid LIMIT ").push_bind(limit);
            query.build_query_as::<Chat>().fetch_all(pool).await
        })?)
    }

    /// One chat of one of `user`'s devices, by its JID or by the LID of a chat kept under the
    /// number (a link to the LID's chat from before the number was known still finds it);
    /// [`crate::Error::NotFound`] when there is none.
    #[tracing::instrument(skip(self))]
    pub async fn chat(&self, user: UserId, device: DeviceId, jid: &str) -> Result<Chat> {
        let sql = concat!(
            "SELECT ",
            chat_columns!(),
            owned_chats!(),
            " AND (c.jid = $3 OR c.lid = $3) ORDER BY CASE WHEN c.jid = $3 THEN 0 ELSE 1 END LIMIT 1"
        );
        Ok(on_db!(self, pool => sqlx::query_as::<_, Chat>(sql)
            .bind(device)
            .bind(user)
            .bind(jid)
            .fetch_one(pool)
            .await)?)
    }

    /// A page of the messages of one chat of one of `user`'s devices, newest first: those older
    /// than `before` when given.
    #[tracing::instrument(skip(self))]
    pub async fn message_page(
        &self,
        user: UserId,
        device: DeviceId,
        jid: &str,
        before: Option<&MessageCursor>,
        limit: i64,
    ) -> Result<Vec<ChatMessage>> {
        const FIRST: &str = concat!(
            "SELECT ",
            message_columns!(),
            messages_with_media!(),
            " JOIN devices d ON d.id = m.device_id \
             WHERE m.device_id = $1 AND d.user_id = $2 AND m.chat_jid = $3 \
             ORDER BY m.sent_at DESC, m.id DESC LIMIT $4"
        );
        const OLDER: &str = concat!(
            "SELECT ",
            message_columns!(),
            messages_with_media!(),
            " JOIN devices d ON d.id = m.device_id \
             WHERE m.device_id = $1 AND d.user_id = $2 AND m.chat_jid = $3 \
             AND (m.sent_at < $5 OR (m.sent_at = $5 AND m.id < $6)) \
             ORDER BY m.sent_at DESC, m.id DESC LIMIT $4"
        );
        let (sql, at, id) = match before {
            None => (FIRST, None, None),
            Some(cursor) => (OLDER, Some(cursor.sent_at), Some(cursor.id.as_str())),
        };
        Ok(on_db!(self, pool => {
            let mut query = sqlx::query_as::<_, ChatMessage>(sql).bind(device).bind(user).bind(jid).bind(limit);
            if before.is_some() {
                query = query.bind(at).bind(id);
            }
            query.fetch_all(pool).await
        })?)
    }

    /// The status of one of `user`'s devices and the messages stored for it after `since` (at most
    /// `limit`, oldest stored first), in one query so a live view costs one query per tick.
    /// `None` when the device is not theirs (or was deleted).
    #[tracing::instrument(skip(self))]
    pub async fn device_activity(
        &self,
        user: UserId,
        device: DeviceId,
        since: Timestamp,
        limit: i64,
    ) -> Result<Option<DeviceActivity>> {
        let sql = concat!(
            "SELECT d.status AS device_status, ",
            message_columns!(),
            ", COALESCE(n.name, c.name) AS name, c.last_message_at, c.last_message_preview, c.unread_count, c.lid, \
             c.name AS push_name FROM devices d \
             LEFT JOIN messages m ON m.device_id = d.id AND m.received_at > $3 \
             LEFT JOIN message_media mm ON mm.device_id = m.device_id AND mm.message_id = m.id \
             LEFT JOIN chats c ON c.device_id = m.device_id AND c.jid = m.chat_jid \
             LEFT JOIN contact_names n ON n.device_id = m.device_id AND n.jid = m.chat_jid \
             WHERE d.id = $1 AND d.user_id = $2 \
             ORDER BY m.received_at, m.id LIMIT $4"
        );
        let rows: Vec<ActivityRow> = on_db!(self, pool => sqlx::query_as(sql)
            .bind(device)
            .bind(user)
            .bind(since)
            .bind(limit)
            .fetch_all(pool)
            .await)?;
        let Some(status) = rows.first().map(|r| r.device_status) else {
            return Ok(None);
        };
        Ok(Some(DeviceActivity {
            status,
            messages: rows.into_iter().filter_map(ActivityRow::message).collect(),
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_match_by_their_significant_digits() {
        assert_eq!(number_pattern("012-345").as_deref(), Some("%12345%"));
        assert_eq!(number_pattern("+60 19").as_deref(), Some("%6019%"));
        assert_eq!(number_pattern("000").as_deref(), Some("%000%"));
        assert_eq!(number_pattern("Aminah 1"), None);
        assert_eq!(crate::db::like_containing("50%_off\\"), "%50\\%\\_off\\\\%");
    }
}
