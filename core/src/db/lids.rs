//! One chat per person whatever WhatsApp's addressing: LIDs (`…@lid`) and phone numbers.
//!
//! WhatsApp hides many numbers behind linked identities. A person may write from a LID before
//! anyone knows their number, and the number may come later (a `sender_alt` on a message, a
//! mapping the link reports) or never. The batch writer ([`super::Db::write_batch`]) asks this
//! module, inside its transaction, to
//! - learn the mappings a batch carries (kept per device in `lid_mappings`);
//! - address the batch's messages and receipts by number where the LID's number is known, so the
//!   chat, the replies to sends, leads, reports and analytics all meet under the number (the LID
//!   stays on the message as `sender_alt`, for webhooks);
//! - merge a LID's earlier chat into the number's the moment its number is learned: messages,
//!   unread count and name move over, and the sends to the number that those messages answer are
//!   marked replied at once (the roll-up only looks at newly received messages).
//!
//! A LID whose number is never learned keeps a chat of its own, under the LID.

use std::borrow::Cow;
use std::collections::{HashMap, HashSet};

use crate::link::{IncomingMessage, Jid};
use crate::types::DeviceId;

use super::IngestItem;
use super::leases::Fence;

/// A LID → number mapping of one device.
pub(crate) type Mapping = (DeviceId, String, String);

/// The mappings a batch teaches: mapping items, and messages whose sender came with its other
/// address. Only messages from the other person count: our own carry our addresses.
pub(crate) fn taught(items: &[(Fence, IngestItem)], accepted: &[bool]) -> Vec<Mapping> {
    let mut seen = HashSet::new();
    items
        .iter()
        .zip(accepted)
        .filter(|(_, ok)| **ok)
        .filter_map(|((fence, item), _)| {
            let (lid, phone) = match item {
                IngestItem::LidMapping { lid, phone } => (lid, phone),
                IngestItem::Message(m) if !m.from_me => match &m.sender_alt {
                    Some(alt) if m.chat.is_lid() && alt.is_phone() => (&m.chat, alt),
                    Some(alt) if m.chat.is_phone() && alt.is_lid() => (alt, &m.chat),
                    _ => return None,
                },
                _ => return None,
            };
            (lid.is_lid() && phone.is_phone()).then(|| (fence.device, bare(lid), bare(phone)))
        })
        .filter(|mapping| seen.insert(mapping.clone()))
        .collect()
}

/// The `(device, lid)` pairs whose number the batch's LID-addressed messages and receipts need.
pub(crate) fn wanted(items: &[(Fence, IngestItem)], accepted: &[bool]) -> Vec<(DeviceId, String)> {
    let mut wanted: Vec<(DeviceId, String)> = items
        .iter()
        .zip(accepted)
        .filter(|(_, ok)| **ok)
        .filter_map(|((fence, item), _)| match item {
            IngestItem::Message(m) if m.chat.is_lid() => Some((fence.device, bare(&m.chat))),
            IngestItem::Receipt { chat, .. } if chat.is_lid() => Some((fence.device, bare(chat))),
            _ => None,
        })
        .collect();
    wanted.sort_unstable();
    wanted.dedup();
    wanted
}

/// A JID without a `:device` suffix: chats are kept per person, not per phone or computer.
fn bare(jid: &Jid) -> String {
    format!("{}@{}", jid.user(), jid.server())
}

/// Known numbers of LIDs, per device.
#[derive(Default)]
pub(crate) struct Numbers(HashMap<(DeviceId, String), String>);

impl Numbers {
    pub(crate) fn add(&mut self, device: DeviceId, lid: String, phone: String) {
        self.0.insert((device, lid), phone);
    }

    fn of(&self, device: DeviceId, jid: &Jid) -> Option<Jid> {
        if !jid.is_lid() {
            return None;
        }
        self.0.get(&(device, bare(jid))).map(|phone| Jid(phone.clone()))
    }

    /// `m` addressed by number when its LID's number is known; the LID moves to `sender_alt`.
    pub(crate) fn message<'m>(&self, device: DeviceId, m: &'m IncomingMessage) -> Cow<'m, IncomingMessage> {
        let Some(phone) = self.of(device, &m.chat) else {
            return Cow::Borrowed(m);
        };
        let mut owned = m.clone();
        if !m.from_me {
            owned.sender_alt = Some(Jid(bare(&m.chat)));
            owned.sender = phone.clone();
        }
        owned.chat = phone;
        Cow::Owned(owned)
    }

    /// Every (device, LID, number) known.
    pub(crate) fn mappings(&self) -> Vec<Mapping> {
        self.0
            .iter()
            .map(|((device, lid), phone)| (*device, lid.clone(), phone.clone()))
            .collect()
    }

    /// A receipt's chat addressed by number when its LID's number is known.
    pub(crate) fn chat<'c>(&self, device: DeviceId, chat: &'c Jid) -> Cow<'c, Jid> {
        self.of(device, chat).map_or(Cow::Borrowed(chat), Cow::Owned)
    }
}

/// Learns the batch's mappings and resolves the LIDs it needs, in `$tx`; evaluates to the
/// [`Numbers`] of every LID the batch names. Each new mapping's LID chat is merged into the
/// number's at once ([`merge_in`]). No statement runs for a batch without LIDs.
macro_rules! resolve_in {
    ($tx:ident, $items:expr, $accepted:expr, $now:expr) => {{
        let taught = $crate::db::lids::taught($items, $accepted);
        let mut wanted = $crate::db::lids::wanted($items, $accepted);
        wanted.extend(taught.iter().map(|(device, lid, _)| (*device, lid.clone())));
        wanted.sort_unstable();
        wanted.dedup();
        let mut numbers = $crate::db::lids::Numbers::default();
        if !wanted.is_empty() {
            for chunk in wanted.chunks($crate::db::chats::ROWS_PER_STATEMENT) {
                let mut select = sqlx::QueryBuilder::new(
                    "SELECT device_id, lid, phone_jid FROM lid_mappings WHERE (device_id, lid) IN ",
                );
                select.push_tuples(chunk, |mut row, (device, lid)| {
                    row.push_bind(*device).push_bind(lid.clone());
                });
                let rows: Vec<$crate::db::lids::Mapping> = select.build_query_as().fetch_all(&mut *$tx).await?;
                for (device, lid, phone) in rows {
                    numbers.add(device, lid, phone);
                }
            }
        }
        for (device, lid, phone) in taught {
            // A LID stays one person's: the first number learned for it holds.
            let inserted = sqlx::query(
                "INSERT INTO lid_mappings (device_id, lid, phone_jid, learned_at) VALUES ($1, $2, $3, $4) \
                 ON CONFLICT (device_id, lid) DO NOTHING",
            )
            .bind(device)
            .bind(&lid)
            .bind(&phone)
            .bind($now)
            .execute(&mut *$tx)
            .await?
            .rows_affected();
            if inserted == 1 {
                $crate::db::lids::merge_in!($tx, device, &lid, &phone, $now);
                numbers.add(device, lid, phone);
            }
        }
        numbers
    }};
}
pub(crate) use resolve_in;

/// Merges LID `$lid`'s chat of `$device` into the chat of number `$phone`: its messages move
/// (the LID's own lines become the number's), the chats' unread counts add up and the later
/// message's preview stays, the LID chat goes, and sends to the number that the moved messages
/// answer are marked replied.
macro_rules! merge_in {
    ($tx:ident, $device:expr, $lid:expr, $phone:expr, $now:expr) => {{
        let (device, lid, phone): (DeviceId, &str, &str) = ($device, $lid, $phone);
        sqlx::query(
            "UPDATE messages SET chat_jid = $3, sender_jid = CASE WHEN from_me THEN sender_jid ELSE $3 END \
             WHERE device_id = $1 AND chat_jid = $2",
        )
        .bind(device)
        .bind(lid)
        .bind(phone)
        .execute(&mut *$tx)
        .await?;
        sqlx::query(concat!(
            "INSERT INTO chats (device_id, jid, name, last_message_at, last_message_preview, unread_count, lid) \
             SELECT device_id, $3, name, last_message_at, last_message_preview, unread_count, $2 FROM chats \
             WHERE device_id = $1 AND jid = $2",
            $crate::db::chats::chat_upsert!(),
            ", lid = excluded.lid"
        ))
        .bind(device)
        .bind(lid)
        .bind(phone)
        .execute(&mut *$tx)
        .await?;
        sqlx::query("DELETE FROM chats WHERE device_id = $1 AND jid = $2")
            .bind(device)
            .bind(lid)
            .execute(&mut *$tx)
            .await?;
        sqlx::query(
            "UPDATE outbound_messages SET updated_at = $3, replied_at = ( \
                SELECT MIN(m.sent_at) FROM messages m WHERE m.device_id = outbound_messages.device_id \
                AND m.chat_jid = outbound_messages.recipient AND m.from_me = FALSE AND m.history = FALSE \
                AND m.sent_at + 1000 > outbound_messages.sent_at) \
             WHERE device_id = $1 AND recipient = $2 AND replied_at IS NULL \
               AND status IN ('sent', 'delivered', 'read') AND EXISTS ( \
                SELECT 1 FROM messages m WHERE m.device_id = $1 AND m.chat_jid = $2 AND m.from_me = FALSE AND m.history = FALSE \
                AND m.sent_at + 1000 > outbound_messages.sent_at)",
        )
        .bind(device)
        .bind(phone)
        .bind($now)
        .execute(&mut *$tx)
        .await?;
    }};
}
pub(crate) use merge_in;

/// Notes each LID the batch named on its number's chat (after the batch's messages made the
/// chat), unless the chat has one: the mapping may have been learned in an earlier batch, before
/// the number's chat existed.
macro_rules! note_on_chats_in {
    ($tx:ident, $learned:expr) => {{
        for (device, lid, phone) in $learned {
            sqlx::query("UPDATE chats SET lid = $3 WHERE device_id = $1 AND jid = $2 AND lid IS NULL")
                .bind(*device)
                .bind(phone)
                .bind(lid)
                .execute(&mut *$tx)
                .await?;
        }
    }};
}
pub(crate) use note_on_chats_in;

#[cfg(test)]
mod tests {
    use super::*;
    use crate::link::MessageKind;
    use crate::types::Timestamp;

    fn fence() -> Fence {
        Fence {
            device: DeviceId(1),
            token: 1,
        }
    }

    fn message(chat: &str, alt: Option<&str>, from_me: bool) -> IncomingMessage {
        IncomingMessage {
            id: "A".into(),
            chat: Jid(chat.into()),
            sender: Jid(chat.into()),
            sender_alt: alt.map(|a| Jid(a.into())),
            from_me,
            push_name: None,
            kind: MessageKind::Text,
            text: Some("hi".into()),
            sent_at: Timestamp(1),
            history: false,
            media: None,
        }
    }

    #[test]
    fn a_sender_alt_teaches_a_mapping_either_way_round() {
        let items = vec![
            (
                fence(),
                IngestItem::Message(message("111@lid", Some("601@s.whatsapp.net"), false)),
            ),
            (
                fence(),
                IngestItem::Message(message("602@s.whatsapp.net", Some("222:3@lid"), false)),
            ),
            // Our own messages carry our own addresses.
            (
                fence(),
                IngestItem::Message(message("333@lid", Some("699@s.whatsapp.net"), true)),
            ),
            // Nonsense pairs teach nothing.
            (fence(), IngestItem::Message(message("444@lid", Some("555@lid"), false))),
            (
                fence(),
                IngestItem::LidMapping {
                    lid: Jid("111@lid".into()),
                    phone: Jid("601@s.whatsapp.net".into()),
                },
            ),
        ];
        let taught = taught(&items, &[true; 5]);
        assert_eq!(
            taught,
            vec![
                (DeviceId(1), "111@lid".into(), "601@s.whatsapp.net".into()),
                (DeviceId(1), "222@lid".into(), "602@s.whatsapp.net".into()),
            ]
        );
        assert!(
            super::taught(&items, &[false; 5]).is_empty(),
            "stale fences teach nothing"
        );
    }

    #[test]
    fn a_known_lid_is_addressed_by_number_and_kept_as_the_alt() {
        let mut numbers = Numbers::default();
        numbers.add(DeviceId(1), "111@lid".into(), "601@s.whatsapp.net".into());
        let m = message("111@lid", None, false);
        let resolved = numbers.message(DeviceId(1), &m);
        assert_eq!(resolved.chat.0, "601@s.whatsapp.net");
        assert_eq!(resolved.sender.0, "601@s.whatsapp.net");
        assert_eq!(resolved.sender_alt, Some(Jid("111@lid".into())));
        assert!(
            matches!(numbers.message(DeviceId(2), &m), Cow::Borrowed(_)),
            "per device"
        );
        let other = message("112@lid", None, false);
        assert!(matches!(numbers.message(DeviceId(1), &other), Cow::Borrowed(_)));
        assert_eq!(
            numbers.chat(DeviceId(1), &Jid("111@lid".into())).0,
            "601@s.whatsapp.net"
        );
    }
}
