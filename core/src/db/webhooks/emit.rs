//! Recording events inside the transaction of the change they report: which devices' owners
//! want them ([`emit_in!`]), and the rows ([`insert_deliveries_in!`]). Macros, because each
//! backend's transaction is a type of its own.

use crate::link::{IncomingCall, IncomingMessage, Jid, ReceiptKind};
use crate::types::{DeviceId, Timestamp, UserId};
use crate::webhooks::{self as hooks, DeviceRef, EventKind};

/// An event a transaction reports, before it is matched to subscriptions.
pub(crate) enum Event<'a> {
    /// A message stored for the first time.
    Message(&'a IncomingMessage),
    /// Receipts for this account's own messages in `chat`.
    Receipt {
        chat: std::borrow::Cow<'a, Jid>,
        kind: ReceiptKind,
        ids: &'a [String],
    },
    /// A device came online or went away; `status` is its new one.
    Device { kind: EventKind, status: &'a str },
    /// A call rang on the device's account.
    Call(&'a IncomingCall),
}

impl Event<'_> {
    /// Which event it is, for the owner's filter.
    pub(crate) fn kind(&self) -> EventKind {
        match self {
            Event::Message(_) => EventKind::Message,
            Event::Receipt { .. } => EventKind::MessageAck,
            Event::Device { kind, .. } => *kind,
            Event::Call(_) => EventKind::CallOffer,
        }
    }

    /// The JSON body, naming `device`.
    pub(crate) fn body(&self, device: &DeviceRef, at: Timestamp) -> String {
        match self {
            Event::Message(m) => hooks::message_body(device, m, at),
            Event::Receipt { chat, kind, ids } => hooks::receipt_body(device, chat, *kind, ids, at),
            Event::Device { kind, status } => hooks::device_body(device, *kind, status, at),
            Event::Call(call) => hooks::call_body(device, call, at),
        }
    }
}

/// A row for `webhook_deliveries`.
pub(crate) struct NewDelivery {
    /// The owner, whose webhook it goes to unless `device` is set.
    pub(crate) user: UserId,
    /// The device whose own webhook it goes to.
    pub(crate) device: Option<DeviceId>,
    /// The event's name.
    pub(crate) event: &'static str,
    /// The exact body to send.
    pub(crate) body: String,
}

/// Records the events of devices that have a webhook of their own, or whose owners have an
/// enabled webhook, that wants them; a device's own webhook takes its events instead of its
/// owner's. One lookup for all the devices of the transaction; nothing more when none has a
/// webhook.
macro_rules! emit_in {
    ($tx:ident, $events:expr, $now:expr) => {{
        let events: &[($crate::types::DeviceId, $crate::db::webhooks::Event<'_>)] = $events;
        if !events.is_empty() {
            let mut devices: Vec<$crate::types::DeviceId> = events.iter().map(|(d, _)| *d).collect();
            devices.sort_unstable();
            devices.dedup();
            let mut subscribed: std::collections::HashMap<
                $crate::types::DeviceId,
                ($crate::types::UserId, String, bool, $crate::webhooks::DeviceRef),
            > = std::collections::HashMap::new();
            for chunk in devices.chunks($crate::db::chats::ROWS_PER_STATEMENT) {
                // The device's own webhook's events when it has one, else its owner's.
                let mut query = sqlx::QueryBuilder::new(
                    "SELECT d.id, d.user_id, d.name, d.jid, COALESCE(dw.events, w.events), dw.device_id IS NOT NULL \
                     FROM devices d LEFT JOIN device_webhooks dw ON dw.device_id = d.id \
                     LEFT JOIN webhooks w ON w.user_id = d.user_id AND w.enabled \
                     WHERE (dw.device_id IS NOT NULL OR w.user_id IS NOT NULL) AND d.id IN (",
                );
                let mut list = query.separated(", ");
                for device in chunk {
                    list.push_bind(*device);
                }
                query.push(")");
                let rows: Vec<($crate::types::DeviceId, UserId, String, Option<String>, String, bool)> =
                    query.build_query_as().fetch_all(&mut *$tx).await?;
                for (id, user, name, jid, wanted, own) in rows {
                    subscribed.insert(id, (user, wanted, own, $crate::webhooks::DeviceRef { id, name, jid }));
                }
            }
            if !subscribed.is_empty() {
                let rows: Vec<$crate::db::webhooks::NewDelivery> = events
                    .iter()
                    .filter_map(|(device, event)| {
                        let (user, wanted, own, device) = subscribed.get(device)?;
                        let kind = event.kind();
                        $crate::webhooks::wants(wanted, kind).then(|| $crate::db::webhooks::NewDelivery {
                            user: *user,
                            device: own.then_some(device.id),
                            event: kind.as_str(),
                            body: event.body(device, $now),
                        })
                    })
                    .collect();
                $crate::db::webhooks::insert_deliveries_in!($tx, &rows, $now);
            }
        }
    }};
}
pub(crate) use emit_in;

/// Inserts deliveries, many rows per statement.
macro_rules! insert_deliveries_in {
    ($tx:ident, $rows:expr, $now:expr) => {{
        let rows: &[$crate::db::webhooks::NewDelivery] = $rows;
        for chunk in rows.chunks($crate::db::chats::ROWS_PER_STATEMENT) {
            let mut insert = sqlx::QueryBuilder::new(
                "INSERT INTO webhook_deliveries (user_id, device_id, event, body, created_at, updated_at) ",
            );
            insert.push_values(chunk, |mut row, d| {
                row.push_bind(d.user)
                    .push_bind(d.device)
                    .push_bind(d.event)
                    .push_bind(&d.body)
                    .push_bind($now)
                    .push_bind($now);
            });
            insert.build().execute(&mut *$tx).await?;
        }
    }};
}
pub(crate) use insert_deliveries_in;

/// Records events that go to their owner's account webhook (campaigns', sequences'), never a
/// device's own: `$events` are `(owner, kind, body)`. One lookup of the owners' enabled webhooks;
/// only the events each one wants are recorded.
macro_rules! account_deliveries_in {
    ($tx:ident, $events:expr, $now:expr) => {{
        let events: &[($crate::types::UserId, $crate::webhooks::EventKind, String)] = $events;
        if !events.is_empty() {
            let mut users: Vec<$crate::types::UserId> = events.iter().map(|e| e.0).collect();
            users.sort_unstable();
            users.dedup();
            let mut hooks: std::collections::HashMap<$crate::types::UserId, String> = std::collections::HashMap::new();
            for chunk in users.chunks($crate::db::chats::ROWS_PER_STATEMENT) {
                let mut query =
                    sqlx::QueryBuilder::new("SELECT user_id, events FROM webhooks WHERE enabled AND user_id IN (");
                let mut list = query.separated(", ");
                for user in chunk {
                    list.push_bind(*user);
                }
                query.push(")");
                let rows: Vec<($crate::types::UserId, String)> = query.build_query_as().fetch_all(&mut *$tx).await?;
                hooks.extend(rows);
            }
            let rows: Vec<$crate::db::webhooks::NewDelivery> = events
                .iter()
                .filter(|(user, kind, _)| {
                    hooks
                        .get(user)
                        .is_some_and(|wanted| $crate::webhooks::wants(wanted, *kind))
                })
                .map(|(user, kind, body)| $crate::db::webhooks::NewDelivery {
                    user: *user,
                    device: None,
                    event: kind.as_str(),
                    body: body.clone(),
                })
                .collect();
            $crate::db::webhooks::insert_deliveries_in!($tx, &rows, $now);
        }
    }};
}
pub(crate) use account_deliveries_in;

/// Reads a device's status inside a transaction, before it changes.
macro_rules! status_before_in {
    ($tx:ident, $device:expr) => {{
        let row: Option<(String,)> = sqlx::query_as("SELECT status FROM devices WHERE id = $1")
            .bind($device)
            .fetch_optional(&mut *$tx)
            .await?;
        row.map(|(s,)| s).unwrap_or_default()
    }};
}
pub(crate) use status_before_in;

/// Records `device.connected` when a device turns online and `device.disconnected` when an online
/// one stops being so; nothing for other changes (connecting → pairing, say).
macro_rules! status_changed_in {
    ($tx:ident, $device:expr, $before:expr, $after:expr, $now:expr) => {{
        let (before, after): (&str, &str) = (&$before, $after);
        let kind = match (before == "online", after == "online") {
            (false, true) => Some($crate::webhooks::EventKind::DeviceConnected),
            (true, false) => Some($crate::webhooks::EventKind::DeviceDisconnected),
            _ => None,
        };
        if let Some(kind) = kind {
            let events = [($device, $crate::db::webhooks::Event::Device { kind, status: after })];
            $crate::db::webhooks::emit_in!($tx, &events, $now);
        }
    }};
}
pub(crate) use status_changed_in;
