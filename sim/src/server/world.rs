//! The simulated network's state: accounts, linked devices, connections and pairings.
//!
//! One mutex guards it all; it is never held across an `.await`, so every change (and the frames
//! it queues) is atomic and frames reach each connection in the order they were queued.

use std::collections::HashMap;

use rand::Rng;
use tokio::sync::mpsc;
use wafleet_core::link::{IncomingMessage, Jid, ReceiptKind};
use wafleet_core::types::Timestamp;

use crate::ban::Reputation;
use crate::control::{
    ActionRecord, CallRecord, ChatSettingRecord, ChatStateRecord, Counters, NumberRule, PresenceRecord, ReadRecord,
    SentRecord,
};
use crate::protocol::ServerFrame;

/// What a connection's task is told to do.
#[derive(Debug)]
pub(crate) enum Outbound {
    /// Write this JSON frame.
    Frame(String),
    /// Drop the socket.
    Close,
}

/// An open WebSocket.
pub(crate) struct Conn {
    /// Queue of the connection's task.
    pub tx: mpsc::UnboundedSender<Outbound>,
    /// The linked device it speaks for, once connected or paired.
    pub token: Option<String>,
}

/// A pairing in progress on a connection.
pub(crate) enum Pairing {
    /// By QR: the current code and how many were shown.
    Qr { code: String, shown: u32 },
    /// By pair code for a number.
    Code { code: String, phone: String },
}

/// A phone number with WhatsApp.
pub(crate) struct Account {
    /// Digits only.
    pub digits: String,
    /// Banned: no device may connect.
    pub banned: Option<String>,
    /// Tokens of its linked devices (unlinked ones included).
    pub devices: Vec<String>,
    /// Everything its devices sent.
    pub sent: Vec<SentRecord>,
    /// Messages received.
    pub received: usize,
    /// Its messages to strangers and their replies, for the ban model.
    pub reputation: Reputation,
    /// Bumped to cancel a running schedule.
    pub schedule_generation: u64,
    /// Its phone's address book: contact digits → saved name.
    pub contact_names: std::collections::BTreeMap<String, String>,
    /// Messages its devices marked read (sent a read receipt for), oldest first.
    pub read: Vec<ReadRecord>,
    /// Typing indicators its devices showed in chats, oldest first.
    pub chat_states: Vec<ChatStateRecord>,
    /// Reactions, deletions for everyone and edits its devices sent, oldest first.
    pub actions: Vec<ActionRecord>,
    /// Calls that rang on it, oldest first, and whether a device declined each.
    pub calls: Vec<CallRecord>,
    /// Settings of its own view of chats its devices changed, oldest first.
    pub chat_settings: Vec<ChatSettingRecord>,
    /// The push name its devices set, if any.
    pub push_name: Option<String>,
    /// Push names and presences its devices sent, oldest first.
    pub presences: Vec<PresenceRecord>,
}

/// The frame telling a device the saved name of `contact` (digits).
fn contact_name_frame(contact: &str, name: &str) -> ServerFrame {
    ServerFrame::ContactName {
        id: format!("N{}", random_string(HEX, 20)),
        jid: jid_of(contact),
        name: name.to_owned(),
    }
}

impl Account {
    /// A new account with no devices or contacts.
    pub fn new(digits: &str) -> Self {
        Account {
            digits: digits.to_owned(),
            banned: None,
            devices: Vec::new(),
            sent: Vec::new(),
            received: 0,
            reputation: Reputation::default(),
            schedule_generation: 0,
            contact_names: std::collections::BTreeMap::new(),
            read: Vec::new(),
            chat_states: Vec::new(),
            actions: Vec::new(),
            calls: Vec::new(),
            chat_settings: Vec::new(),
            push_name: None,
            presences: Vec::new(),
        }
    }

    /// The account's JID.
    pub fn jid(&self) -> Jid {
        jid_of(&self.digits)
    }
}

/// A linked (companion) device of an account.
pub(crate) struct Device {
    /// The account's digits.
    pub account: String,
    /// Unlinked: its token no longer connects.
    pub unlinked: bool,
    /// Messages not yet acknowledged, oldest first.
    pub pending: Vec<IncomingMessage>,
    /// Receipts not yet acknowledged, oldest first (`ServerFrame::Receipt` frames).
    pub pending_receipts: Vec<ServerFrame>,
    /// Its live connection.
    pub conn: Option<u64>,
}

/// The whole network.
#[derive(Default)]
pub(crate) struct World {
    /// Accounts by digits.
    pub accounts: HashMap<String, Account>,
    /// Linked devices by token.
    pub devices: HashMap<String, Device>,
    /// Open connections by id.
    pub conns: HashMap<u64, Conn>,
    /// Pairings by connection id.
    pub pairings: HashMap<u64, Pairing>,
    /// Recipient behaviour by digits.
    pub numbers: HashMap<String, NumberRule>,
    /// Next connection id.
    pub next_conn: u64,
    /// Totals.
    pub counters: Counters,
    /// Stopped: no new connections.
    pub closed: bool,
    /// The benchmark flood in progress, or the last one.
    pub flood: Option<super::flood::Flood>,
    /// Profile pictures accounts set through their devices, by digits (others show
    /// [`crate::control::PROFILE_PICTURE`]).
    pub pictures: HashMap<String, Vec<u8>>,
    /// Files people sent in messages, by id: MIME type and bytes, served at [`media_path`].
    pub media: HashMap<String, (String, Vec<u8>)>,
    /// Personal chats of history each newly linked device is sent ([`World::sync_history`]).
    pub history_chats: usize,
}

/// Where the simulator serves the file `id` that a person sent in a message.
pub(crate) fn media_path(id: &str) -> String {
    format!("/v/m/{id}")
}

/// The JID of an account.
pub(crate) fn jid_of(digits: &str) -> Jid {
    Jid(format!("{digits}@{}", wafleet_core::link::USER_SERVER))
}

/// Digits of a phone number written with or without `+`, spaces or dashes; `None` when empty.
pub(crate) fn digits_of(phone: &str) -> Option<String> {
    let digits: String = phone.chars().filter(char::is_ascii_digit).collect();
    let clean = phone.chars().all(|c| c.is_ascii_digit() || "+ -".contains(c));
    (clean && (6..=15).contains(&digits.len())).then_some(digits)
}

/// A random string over `alphabet`.
pub(crate) fn random_string(alphabet: &[u8], len: usize) -> String {
    let mut rng = rand::rng();
    (0..len)
        .map(|_| alphabet[rng.random_range(0..alphabet.len())] as char)
        .collect()
}

/// The digits of upper-case hexadecimal, for ids.
pub(crate) const HEX: &[u8] = b"0123456789ABCDEF";

/// A WhatsApp-looking message id (`3EB0` and 18 hex digits).
pub(crate) fn message_id() -> String {
    format!("3EB0{}", random_string(HEX, 18))
}

/// A device token (opaque credentials).
pub(crate) fn token() -> String {
    random_string(b"0123456789abcdef", 40)
}

impl World {
    /// Queues `frame` on connection `conn` (ignored when it is gone).
    pub fn push(&self, conn: u64, frame: &ServerFrame) {
        if let Some(c) = self.conns.get(&conn) {
            match serde_json::to_string(frame) {
                Ok(text) => {
                    let _ = c.tx.send(Outbound::Frame(text));
                }
                Err(err) => tracing::error!(%err, "cannot encode a frame"),
            }
        }
    }

    /// Tells connection `conn` to drop its socket.
    pub fn close(&self, conn: u64) {
        if let Some(c) = self.conns.get(&conn) {
            let _ = c.tx.send(Outbound::Close);
        }
    }

    /// Hands a receipt to every linked device of `digits` and keeps it with each until that
    /// device acknowledges it, as WhatsApp keeps what a device has not acknowledged.
    pub fn push_receipt(&mut self, digits: &str, kind: ReceiptKind, chat: Jid, ids: Vec<String>) {
        let frame = ServerFrame::Receipt {
            id: format!("R{}", random_string(HEX, 20)),
            kind,
            chat,
            ids,
            at: Timestamp::now(),
        };
        self.push_kept(digits, frame);
    }

    /// Tells every linked device of `digits` that `contact`'s LID and number are the same
    /// person, kept with each device until acknowledged.
    pub fn push_lid_mapping(&mut self, digits: &str, contact: &str) {
        let frame = ServerFrame::LidMapping {
            id: format!("L{}", random_string(HEX, 20)),
            lid: Jid::for_lid(&crate::protocol::lid_of(contact)),
            phone: jid_of(contact),
        };
        self.push_kept(digits, frame);
    }

    /// The phone of `digits` saves `contact` as `name` in its address book (an empty name
    /// removes it): its linked devices are told, and each device linked later is told on link.
    pub fn save_contact(&mut self, digits: &str, contact: &str, name: &str) {
        let names = &mut self.account_mut(digits).contact_names;
        if name.is_empty() {
            names.remove(contact);
        } else {
            names.insert(contact.to_owned(), name.to_owned());
        }
        self.push_kept(digits, contact_name_frame(contact, name));
    }

    /// Hands `frame` to every linked device of `digits` and keeps it with each until acknowledged.
    fn push_kept(&mut self, digits: &str, frame: ServerFrame) {
        let tokens = self.accounts.get(digits).map(|a| a.devices.clone()).unwrap_or_default();
        for token in tokens {
            let Some(device) = self.devices.get_mut(&token).filter(|d| !d.unlinked) else {
                continue;
            };
            device.pending_receipts.push(frame.clone());
            if let Some(conn) = device.conn {
                self.push(conn, &frame);
            }
        }
    }

    /// History sync: sends the device of `token`, just linked, its account's recent chats from
    /// before, as WhatsApp does on link ([`crate::history::recent`] of
    /// [`World::history_chats`] chats). Like any message, each is kept until the device
    /// acknowledges it.
    pub fn sync_history(&mut self, token: &str) {
        let Some(device) = self.devices.get(token) else {
            return;
        };
        let account = device.account.clone();
        // The address book first, as app state arrives before the history.
        let names: Vec<ServerFrame> = self
            .accounts
            .get(&account)
            .map(|a| a.contact_names.iter().map(|(c, n)| contact_name_frame(c, n)).collect())
            .unwrap_or_default();
        if let Some(device) = self.devices.get_mut(token) {
            device.pending_receipts.extend(names.iter().cloned());
            if let Some(conn) = device.conn {
                for frame in &names {
                    self.push(conn, frame);
                }
            }
        }
        let history = crate::history::recent(&account, self.history_chats);
        let Some(device) = self.devices.get_mut(token) else {
            return;
        };
        device.pending.extend(history.iter().cloned());
        if let Some(conn) = device.conn {
            for message in history {
                self.push(conn, &ServerFrame::Message { message });
            }
        }
    }

    /// Live connections of an account's devices.
    pub fn account_conns(&self, digits: &str) -> Vec<u64> {
        self.accounts.get(digits).map_or_else(Vec::new, |account| {
            account
                .devices
                .iter()
                .filter_map(|token| self.devices.get(token).and_then(|d| d.conn))
                .collect()
        })
    }

    /// The account of `digits`, created when missing.
    pub fn account_mut(&mut self, digits: &str) -> &mut Account {
        self.accounts
            .entry(digits.to_owned())
            .or_insert_with(|| Account::new(digits))
    }

    /// Links a new device to `digits`' account; returns its token.
    pub fn link_device(&mut self, digits: &str) -> String {
        let token = token();
        self.account_mut(digits).devices.push(token.clone());
        self.devices.insert(
            token.clone(),
            Device {
                account: digits.to_owned(),
                unlinked: false,
                pending: Vec::new(),
                pending_receipts: Vec::new(),
                conn: None,
            },
        );
        token
    }

    /// Forgets a closed connection.
    pub fn remove_conn(&mut self, conn: u64) {
        self.pairings.remove(&conn);
        if let Some(token) = self.conns.remove(&conn).and_then(|c| c.token)
            && let Some(device) = self.devices.get_mut(&token)
            && device.conn == Some(conn)
        {
            device.conn = None;
        }
    }
}
