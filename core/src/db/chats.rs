//! Personal chats and their messages, as sessions report them.

use crate::link::{IncomingMessage, Jid, ReceiptKind};
use crate::types::{DeviceId, Timestamp, UserId};
use crate::{Db, Result};

use super::webhooks::{Event, emit_in};
use super::{BeginWrite, Fence, on_db};

/// A chat as listed to its owner.
#[derive(Clone, Debug, sqlx::FromRow, serde::Serialize, utoipa::ToSchema)]
pub struct Chat {
    /// The other person's JID.
    pub jid: String,
    /// Their name, when known: the one the account's phone saved for them, else their own
    /// (push) name.
    pub name: Option<String>,
    /// When the last message was sent.
    pub last_message_at: Timestamp,
    /// The start of the last message.
    pub last_message_preview: Option<String>,
    /// Messages received since the chat was last read.
    pub unread_count: i64,
    /// The person's LID (`…@lid`), when WhatsApp addressed them by it and their number is known:
    /// the chat is kept under the number.
    pub lid: Option<String>,
    /// The name they gave themselves on WhatsApp (their push name), when known.
    pub push_name: Option<String>,
}

/// Longest preview kept on a chat.
const PREVIEW_CHARS: usize = 120;
/// Rows per multi-row statement (SQLite allows 32,766 bound values; 10 columns a row).
pub(crate) const ROWS_PER_STATEMENT: usize = 500;

/// One thing a session reported, for [`Db::write_batch`].
#[derive(Clone, Debug)]
pub enum IngestItem {
    /// A personal-chat message (received, or sent from another of the account's devices).
    Message(IncomingMessage),
    /// A LID and the phone number of the same person (see [`super::lids`]).
    LidMapping {
        /// The LID (`…@lid`).
        lid: Jid,
        /// The phone-number JID.
        phone: Jid,
    },
    /// Delivered/read receipts for this account's own messages.
    Receipt {
        /// The chat.
        chat: Jid,
        /// Delivered or read.
        kind: ReceiptKind,
        /// WhatsApp's ids of the messages.
        ids: Vec<String>,
    },
}

/// What [`Db::write_batch`] did.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct BatchOutcome {
    /// For each item, whether it was written (or was a replay): `false` when its fence was stale,
    /// so it must not be acknowledged.
    pub accepted: Vec<bool>,
    /// Messages stored for the first time (replays excluded).
    pub new_messages: u64,
    /// Devices whose chats changed, for cache invalidation and live updates.
    pub devices: Vec<DeviceId>,
}

impl IngestItem {
    /// Every text the item carries into the database.
    fn texts(&self) -> Vec<&String> {
        match self {
            IngestItem::Message(m) => [&m.id, &m.chat.0, &m.sender.0]
                .into_iter()
                .chain(m.sender_alt.as_ref().map(|j| &j.0))
                .chain(m.push_name.as_ref())
                .chain(m.text.as_ref())
                .chain(
                    m.media
                        .iter()
                        .flat_map(|f| [&f.mime, &f.locator].into_iter().chain(&f.file_name)),
                )
                .collect(),
            IngestItem::LidMapping { lid, phone } => vec![&lid.0, &phone.0],
            IngestItem::Receipt { chat, ids, .. } => std::iter::once(&chat.0).chain(ids).collect(),
        }
    }

    /// [`IngestItem::texts`], to change.
    fn texts_mut(&mut self) -> Vec<&mut String> {
        match self {
            IngestItem::Message(m) => [&mut m.id, &mut m.chat.0, &mut m.sender.0]
                .into_iter()
                .chain(m.sender_alt.as_mut().map(|j| &mut j.0))
                .chain(m.push_name.as_mut())
                .chain(m.text.as_mut())
                .chain(
                    m.media
                        .iter_mut()
                        .flat_map(|f| [&mut f.mime, &mut f.locator].into_iter().chain(f.file_name.as_mut())),
                )
                .collect(),
            IngestItem::LidMapping { lid, phone } => vec![&mut lid.0, &mut phone.0],
            IngestItem::Receipt { chat, ids, .. } => std::iter::once(&mut chat.0).chain(ids).collect(),
        }
    }
}

/// PostgreSQL's `text` cannot hold U+0000 and refuses the whole statement that carries one
/// (SQLite would keep it). What a session reports cannot be refused: WhatsApp would deliver it
/// again, and with it every item of other devices that shared its batch. So a NUL is stored as
/// U+FFFD on both backends, the same way every time, so that a replay still matches its message.
pub(super) fn storable(text: &str) -> std::borrow::Cow<'_, str> {
    if text.contains('\0') {
        std::borrow::Cow::Owned(text.replace('\0', "\u{FFFD}"))
    } else {
        std::borrow::Cow::Borrowed(text)
    }
}

/// `items` with every NUL replaced ([`storable`]); borrowed, as nearly always, when none has one.
fn storable_items(items: &[(Fence, IngestItem)]) -> std::borrow::Cow<'_, [(Fence, IngestItem)]> {
    if !items
        .iter()
        .any(|(_, item)| item.texts().iter().any(|t| t.contains('\0')))
    {
        return std::borrow::Cow::Borrowed(items);
    }
    let mut owned = items.to_vec();
    for (_, item) in &mut owned {
        for text in item.texts_mut() {
            if let std::borrow::Cow::Owned(clean) = storable(text) {
                *text = clean;
            }
        }
    }
    std::borrow::Cow::Owned(owned)
}

/// How a chats upsert merges a batch's change into the stored row (a literal, so each statement
/// that ends with it is one `&'static str`).
macro_rules! chat_upsert {
    () => {
        " ON CONFLICT (device_id, jid) DO UPDATE SET \
        name = COALESCE(excluded.name, chats.name), \
        last_message_at = CASE WHEN excluded.last_message_at >= chats.last_message_at \
          THEN excluded.last_message_at ELSE chats.last_message_at END, \
        last_message_preview = CASE WHEN excluded.last_message_at >= chats.last_message_at \
          THEN excluded.last_message_preview ELSE chats.last_message_preview END, \
        unread_count = chats.unread_count + excluded.unread_count"
    };
}
pub(super) use chat_upsert;

/// What the new messages change on each chat: one entry per chat, so an upsert never touches the
/// same row twice in a statement.
pub(super) fn chat_deltas<'m>(new_rows: &[(DeviceId, &'m IncomingMessage)]) -> Vec<((DeviceId, &'m str), ChatDelta)> {
    let mut chats: std::collections::BTreeMap<(DeviceId, &str), ChatDelta> = std::collections::BTreeMap::new();
    for (device, m) in new_rows {
        chats.entry((*device, m.chat.0.as_str())).or_default().add(m);
    }
    chats.into_iter().collect()
}

/// Keeps the rows of `chunk` whose (device, id) is in `inserted`: the new ones, not replays.
pub(super) fn new_of<'m>(
    chunk: &[(DeviceId, &'m IncomingMessage)],
    inserted: Vec<(DeviceId, String)>,
) -> Vec<(DeviceId, &'m IncomingMessage)> {
    let mut ids: std::collections::HashMap<DeviceId, std::collections::HashSet<String>> =
        std::collections::HashMap::new();
    for (device, id) in inserted {
        ids.entry(device).or_default().insert(id);
    }
    chunk
        .iter()
        .filter(|(d, m)| ids.get(d).is_some_and(|ids| ids.contains(m.id.as_str())))
        .copied()
        .collect()
}

/// Inserts messages (many rows per statement, one bind parameter per value: any backend),
/// skipping replays, and updates their chats: last message, preview, name and unread count.
/// Evaluates to the new messages (replays left out).
macro_rules! insert_messages {
    ($tx:expr, $rows:expr, $now:expr) => {{
        let rows: &[($crate::types::DeviceId, &$crate::link::IncomingMessage)] = $rows;
        let mut new_rows: Vec<($crate::types::DeviceId, &$crate::link::IncomingMessage)> = Vec::new();
        for chunk in rows.chunks($crate::db::chats::ROWS_PER_STATEMENT) {
            let mut insert = sqlx::QueryBuilder::new(
                "INSERT INTO messages (device_id, id, chat_jid, sender_jid, from_me, kind, body, sent_at, status, \
                 received_at, history) ",
            );
            insert.push_values(chunk, |mut row, (device, m)| {
                row.push_bind(*device)
                    .push_bind(&m.id)
                    .push_bind(&m.chat.0)
                    .push_bind(&m.sender.0)
                    .push_bind(m.from_me)
                    .push_bind(m.kind.as_str())
                    .push_bind(m.text.as_deref())
                    .push_bind(m.sent_at)
                    .push_bind(m.from_me.then_some("sent"))
                    .push_bind($now)
                    .push_bind(m.history);
            });
            insert.push(" ON CONFLICT (device_id, id) DO NOTHING RETURNING device_id, id");
            let inserted = insert
                .build_query_as::<($crate::types::DeviceId, String)>()
                .fetch_all(&mut *$tx)
                .await?;
            new_rows.extend($crate::db::chats::new_of(chunk, inserted));
        }
        let chats = $crate::db::chats::chat_deltas(&new_rows);
        for chunk in chats.chunks($crate::db::chats::ROWS_PER_STATEMENT) {
            let mut upsert = sqlx::QueryBuilder::new(
                "INSERT INTO chats (device_id, jid, name, last_message_at, last_message_preview, unread_count) ",
            );
            upsert.push_values(chunk, |mut row, ((device, jid), delta)| {
                row.push_bind(*device)
                    .push_bind(*jid)
                    .push_bind(delta.name.clone())
                    .push_bind(delta.last_at)
                    .push_bind(delta.preview.clone())
                    .push_bind(delta.unread);
            });
            upsert.push($crate::db::chats::chat_upsert!());
            upsert.build().execute(&mut *$tx).await?;
        }
        new_rows
    }};
}
pub(crate) use insert_messages;

/// [`insert_messages!`] for PostgreSQL: one array per column (`UNNEST`), so a statement has the
/// same ten parameters and one cached plan whatever the batch size, instead of up to 5,000
/// parameters that the server decodes and plans one by one.
macro_rules! insert_messages_unnest {
    ($tx:expr, $rows:expr, $now:expr) => {{
        let rows: &[($crate::types::DeviceId, &$crate::link::IncomingMessage)] = $rows;
        let mut new_rows: Vec<($crate::types::DeviceId, &$crate::link::IncomingMessage)> = Vec::new();
        for chunk in rows.chunks($crate::db::chats::ROWS_PER_STATEMENT) {
            let inserted: Vec<($crate::types::DeviceId, String)> = sqlx::query_as(
                "INSERT INTO messages (device_id, id, chat_jid, sender_jid, from_me, kind, body, sent_at, status, \
                 received_at, history) \
                 SELECT device_id, id, chat_jid, sender_jid, from_me, kind, body, sent_at, status, $10::BIGINT, history \
                 FROM UNNEST($1::BIGINT[], $2::TEXT[], $3::TEXT[], $4::TEXT[], $5::BOOLEAN[], $6::TEXT[], \
                   $7::TEXT[], $8::BIGINT[], $9::TEXT[], $11::BOOLEAN[]) \
                   AS t (device_id, id, chat_jid, sender_jid, from_me, kind, body, sent_at, status, history) \
                 ON CONFLICT (device_id, id) DO NOTHING RETURNING device_id, id",
            )
            .bind(chunk.iter().map(|(d, _)| d.0).collect::<Vec<i64>>())
            .bind(chunk.iter().map(|(_, m)| m.id.as_str()).collect::<Vec<&str>>())
            .bind(chunk.iter().map(|(_, m)| m.chat.0.as_str()).collect::<Vec<&str>>())
            .bind(chunk.iter().map(|(_, m)| m.sender.0.as_str()).collect::<Vec<&str>>())
            .bind(chunk.iter().map(|(_, m)| m.from_me).collect::<Vec<bool>>())
            .bind(
                chunk
                    .iter()
                    .map(|(_, m)| m.kind.as_str())
                    .collect::<Vec<&str>>(),
            )
            .bind(
                chunk
                    .iter()
                    .map(|(_, m)| m.text.as_deref())
                    .collect::<Vec<Option<&str>>>(),
            )
            .bind(chunk.iter().map(|(_, m)| m.sent_at.0).collect::<Vec<i64>>())
            .bind(
                chunk
                    .iter()
                    .map(|(_, m)| m.from_me.then_some("sent"))
                    .collect::<Vec<Option<&str>>>(),
            )
            .bind($now)
            .bind(chunk.iter().map(|(_, m)| m.history).collect::<Vec<bool>>())
            .fetch_all(&mut *$tx)
            .await?;
            new_rows.extend($crate::db::chats::new_of(chunk, inserted));
        }
        let chats = $crate::db::chats::chat_deltas(&new_rows);
        for chunk in chats.chunks($crate::db::chats::ROWS_PER_STATEMENT) {
            sqlx::query(concat!(
                "INSERT INTO chats (device_id, jid, name, last_message_at, last_message_preview, unread_count) \
                 SELECT * FROM UNNEST($1::BIGINT[], $2::TEXT[], $3::TEXT[], $4::BIGINT[], $5::TEXT[], $6::BIGINT[])",
                $crate::db::chats::chat_upsert!()
            ))
            .bind(chunk.iter().map(|((d, _), _)| d.0).collect::<Vec<i64>>())
            .bind(chunk.iter().map(|((_, jid), _)| *jid).collect::<Vec<&str>>())
            .bind(
                chunk
                    .iter()
                    .map(|(_, delta)| delta.name.as_deref())
                    .collect::<Vec<Option<&str>>>(),
            )
            .bind(chunk.iter().map(|(_, delta)| delta.last_at.0).collect::<Vec<i64>>())
            .bind(
                chunk
                    .iter()
                    .map(|(_, delta)| delta.preview.as_deref())
                    .collect::<Vec<Option<&str>>>(),
            )
            .bind(chunk.iter().map(|(_, delta)| delta.unread).collect::<Vec<i64>>())
            .execute(&mut *$tx)
            .await?;
        }
        new_rows
    }};
}

/// What a batch changes on one chat.
#[derive(Default)]
pub(super) struct ChatDelta {
    pub(super) name: Option<String>,
    pub(super) last_at: Timestamp,
    pub(super) preview: Option<String>,
    pub(super) unread: i64,
}

impl ChatDelta {
    pub(super) fn add(&mut self, m: &IncomingMessage) {
        if !m.from_me && m.push_name.is_some() {
            self.name.clone_from(&m.push_name);
        }
        if m.sent_at >= self.last_at {
            self.last_at = m.sent_at;
            self.preview = m.text.as_deref().map(|t| t.chars().take(PREVIEW_CHARS).collect());
        }
        self.unread += i64::from(!m.from_me && !m.history);
    }
}

/// The body of [`Db::write_batch`] for one backend's transaction; `$lock` makes PostgreSQL hold
/// the lease rows until commit (SQLite's `BEGIN IMMEDIATE` already excludes other writers).
macro_rules! write_batch_in {
    ($tx:ident, $items:expr, $lock:literal, $insert:ident) => {{
        let items: &[(Fence, IngestItem)] = $items;
        let now = Timestamp::now();
        let mut devices: Vec<DeviceId> = items.iter().map(|(f, _)| f.device).collect();
        devices.sort_unstable();
        devices.dedup();
        let mut check = sqlx::QueryBuilder::new(
            "SELECT device_id, token FROM device_leases WHERE holder IS NOT NULL AND device_id IN (",
        );
        let mut list = check.separated(", ");
        for device in &devices {
            list.push_bind(*device);
        }
        check.push(concat!(")", $lock));
        let live: std::collections::HashSet<(DeviceId, i64)> = check
            .build_query_as::<(DeviceId, i64)>()
            .fetch_all(&mut *$tx)
            .await?
            .into_iter()
            .collect();
        let accepted: Vec<bool> = items.iter().map(|(f, _)| live.contains(&(f.device, f.token))).collect();
        // Messages and receipts from a LID whose number is known go to the number's chat.
        let numbers = $crate::db::lids::resolve_in!($tx, items, &accepted, now);

        let resolved: Vec<(DeviceId, std::borrow::Cow<'_, IncomingMessage>)> = items
            .iter()
            .zip(&accepted)
            .filter_map(|((f, item), ok)| match item {
                IngestItem::Message(m) if *ok => Some((f.device, numbers.message(f.device, m))),
                _ => None,
            })
            .collect();
        let messages: Vec<(DeviceId, &IncomingMessage)> = resolved.iter().map(|(d, m)| (*d, m.as_ref())).collect();
        let new_rows = $insert!($tx, &messages, now);
        $crate::db::media::insert_media_in!($tx, &new_rows, now);
        $crate::db::lids::note_on_chats_in!($tx, &numbers.mappings());
        let new_messages = new_rows.len() as u64;
        // History is the record of before, not news: no webhook.
        let mut events: Vec<(DeviceId, Event<'_>)> = new_rows
            .iter()
            .filter(|(_, m)| !m.history)
            .map(|(device, m)| (*device, Event::Message(m)))
            .collect();
        let mut receipted: Vec<DeviceId> = Vec::new();
        for ((fence, item), ok) in items.iter().zip(&accepted) {
            if let (IngestItem::Receipt { chat, kind, ids }, true) = (item, ok) {
                let chat = numbers.chat(fence.device, chat);
                apply_receipt_in!($tx, fence.device, chat, *kind, ids, now);
                events.push((fence.device, Event::Receipt { chat, kind: *kind, ids }));
                receipted.push(fence.device);
            }
        }
        // Receipts can be the first news that a send went out (its holder died before recording
        // it, or the receipt overtook the record): such sends are recorded as sent here.
        receipted.sort_unstable();
        receipted.dedup();
        for device in receipted {
            $crate::db::outbound::holder::settle_confirmed_in!($tx, device, now);
        }
        // In the same transaction: an event is recorded exactly when what it reports is.
        emit_in!($tx, &events, now);
        $tx.commit().await?;
        let mut touched: Vec<DeviceId> = items
            .iter()
            .zip(&accepted)
            .filter(|(_, ok)| **ok)
            .map(|((f, _), _)| f.device)
            .collect();
        touched.sort_unstable();
        touched.dedup();
        BatchOutcome {
            accepted,
            new_messages,
            devices: touched,
        }
    }};
}

/// Moves the status of this account's own messages (and of the sends behind them) forward.
macro_rules! apply_receipt_in {
    ($tx:ident, $device:expr, $chat:expr, $kind:expr, $ids:expr, $now:expr) => {{
        let (status, before) = match $kind {
            ReceiptKind::Delivered => ("delivered", "('sent')"),
            ReceiptKind::Read => ("read", "('sent', 'delivered')"),
        };
        // A send's receipt may come before its holder recorded it as sent (`sending`), or after
        // a new holder gave up on it (`failed`, outcome unknown): either way it went out.
        let sends_before = match $kind {
            ReceiptKind::Delivered => "('sending', 'sent', 'failed')",
            ReceiptKind::Read => "('sending', 'sent', 'delivered', 'failed')",
        };
        for chunk in $ids.chunks(ROWS_PER_STATEMENT) {
            let mut update = sqlx::QueryBuilder::new("UPDATE messages SET status = ");
            update.push_bind(status).push(" WHERE device_id = ").push_bind($device);
            update
                .push(" AND chat_jid = ")
                .push_bind(&$chat.0)
                .push(" AND from_me AND (status IS NULL OR status IN ");
            update.push(before).push(") AND id IN (");
            let mut list = update.separated(", ");
            for id in chunk {
                list.push_bind(id);
            }
            update.push(")");
            update.build().execute(&mut *$tx).await?;

            let mut sends = sqlx::QueryBuilder::new("UPDATE outbound_messages SET status = ");
            sends
                .push_bind(status)
                .push(", reason = NULL, updated_at = ")
                .push_bind($now);
            sends
                .push(" WHERE device_id = ")
                .push_bind($device)
                .push(" AND status IN ");
            sends.push(sends_before).push(" AND wa_message_id IN (");
            let mut list = sends.separated(", ");
            for id in chunk {
                list.push_bind(id);
            }
            sends.push(")");
            sends.build().execute(&mut *$tx).await?;
        }
    }};
}

impl Db {
    /// Writes what sessions reported, from any number of devices, in one transaction: messages
    /// (replays skipped), their chats, and receipts. Items whose lease token is stale are not
    /// written and come back as not accepted. Durable when this returns.
    #[tracing::instrument(skip_all, fields(items = items.len()))]
    pub async fn write_batch(&self, items: &[(Fence, IngestItem)]) -> Result<BatchOutcome> {
        if items.is_empty() {
            return Ok(BatchOutcome::default());
        }
        let items = &*storable_items(items);
        Ok(match self {
            Db::Sqlite(pool) => {
                let mut tx = pool.begin_write().await?;
                write_batch_in!(tx, items, "", insert_messages)
            }
            Db::Postgres(pool) => {
                let mut tx = pool.begin().await?;
                write_batch_in!(tx, items, " FOR SHARE", insert_messages_unnest)
            }
        })
    }

    /// Stores one message; `false` for a replay. Fails with [`crate::Error::Fenced`] when `fence`
    /// is stale.
    pub async fn store_message(&self, fence: Fence, message: &IncomingMessage) -> Result<bool> {
        let outcome = self
            .write_batch(&[(fence, IngestItem::Message(message.clone()))])
            .await?;
        match outcome.accepted.first() {
            Some(true) => Ok(outcome.new_messages == 1),
            _ => Err(crate::Error::Fenced),
        }
    }

    /// Records one receipt. Fails with [`crate::Error::Fenced`] when `fence` is stale.
    pub async fn apply_receipt(&self, fence: Fence, chat: &Jid, kind: ReceiptKind, ids: &[String]) -> Result<()> {
        let item = IngestItem::Receipt {
            chat: chat.clone(),
            kind,
            ids: ids.to_vec(),
        };
        let outcome = self.write_batch(&[(fence, item)]).await?;
        match outcome.accepted.first() {
            Some(true) => Ok(()),
            _ => Err(crate::Error::Fenced),
        }
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
        const SQL: &str = concat!(
            "SELECT ",
            super::chat_views::chat_columns!(),
            super::chat_views::named_chats!(),
            " JOIN devices d ON d.id = c.device_id WHERE c.device_id = $1 AND d.user_id = $2 \
             ORDER BY c.last_message_at DESC, c.jid LIMIT $3"
        );
        Ok(on_db!(self, pool => sqlx::query_as::<_, Chat>(SQL)
            .bind(device)
            .bind(user)
            .bind(limit)
            .fetch_all(pool)
            .await)?)
    }
}
