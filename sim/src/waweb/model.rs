//! What the WhatsApp Web front end knows: accounts (a phone each), their linked companion
//! devices with the keys they registered, and the live connections.

use std::collections::HashMap;
use std::sync::Arc;

use tokio::sync::{mpsc, oneshot};
use wa_rs_binary::node::Node;
use wa_rs_libsignal::protocol::KeyPair;
use wafleet_core::link::{ChatSetting, Jid};

use super::appstate::AppStateKey;
use super::signal::PhoneSignal;
use crate::control::WaWebStats;

/// Something for a connection's task to do.
#[derive(Debug)]
pub(crate) enum Out {
    /// Send this node.
    Node(Node),
    /// Send this node, then close the socket (stream errors, failures).
    Last(Node),
}

/// A simulated account: the phone (primary device 0) that links companions.
pub(crate) struct Account {
    /// The account's linked identity (LID) user part.
    pub lid: String,
    /// The phone's ADV account key: it signs every companion's device identity.
    pub adv_key: KeyPair,
    /// The device id the next companion gets (the phone is 0).
    pub next_device: u16,
    /// The phone's Signal keys and sessions (an async lock: libsignal's calls are async).
    pub signal: Arc<tokio::sync::Mutex<PhoneSignal>>,
    /// The key the account's app state is encrypted with, shared with every companion.
    pub app_state_key: AppStateKey,
    /// The names its phone saved for contacts, as app state.
    pub address_book: super::contacts::AddressBook,
    /// Its messages to strangers and their replies, for the ban model.
    pub reputation: crate::ban::Reputation,
    /// Why it is banned, if it is: none of its devices may log in.
    pub banned: Option<String>,
    /// What its profile shows others.
    pub profile: crate::control::Profile,
}

/// What a companion registered when it first connected (from its ClientPayload), and later
/// uploaded: enough for a contact to start a Signal session with it.
#[derive(Clone, Debug)]
pub(crate) struct Registration {
    /// The companion's Noise static key: how it is recognised on every later login.
    pub noise_key: [u8; 32],
    /// Its Signal identity public key.
    pub identity: Vec<u8>,
    /// Its Signal registration id.
    pub registration_id: u32,
    /// Its signed prekey: id, public key, signature.
    pub signed_prekey: (u32, Vec<u8>, Vec<u8>),
    /// The one-time prekeys it uploaded and nobody has used yet: id and public key.
    pub prekeys: Vec<(u32, Vec<u8>)>,
}

/// A companion device linked to an account.
pub(crate) struct LinkedDevice {
    /// The account's number.
    pub phone: String,
    /// Its device id on the account (1 and up).
    pub device: u16,
    /// Its keys.
    pub registration: Registration,
}

impl LinkedDevice {
    /// The device's JID, e.g. `60123456789:3@s.whatsapp.net`.
    pub fn jid(&self) -> String {
        format!("{}:{}@s.whatsapp.net", self.phone, self.device)
    }
}

/// A new companion waiting to be linked, by QR code or by a code typed on the phone.
pub(crate) struct Pairing {
    /// What it registered.
    pub registration: Registration,
    /// Refs sent, newest last; only the newest links.
    pub refs: Vec<String>,
    /// Linked by a phone: the pair-success IQ id and the device it will be, until the companion
    /// signs its identity.
    pub linking: Option<(String, LinkedDevice)>,
    /// A pairing code it asked for, if it chose to link with the phone's number.
    pub code_request: Option<super::pair_code::CodeRequest>,
}

/// Where a connection is in its life.
pub(crate) enum ConnState {
    /// Waiting to be linked (boxed: most connections are logged in, and small).
    Pairing(Box<Pairing>),
    /// A linked device, logged in.
    LoggedIn {
        /// The account's number.
        phone: String,
        /// The device id.
        device: u16,
    },
}

/// A live socket.
pub(crate) struct Conn {
    /// Nodes for its task to send.
    pub tx: mpsc::UnboundedSender<Out>,
    /// What it is.
    pub state: ConnState,
    /// Keepalive pings it sent.
    pub pings: u32,
    /// Whether its client left passive mode (`<active/>`): only then are stanzas delivered.
    pub active: bool,
}

/// Everything the front end knows, behind one lock (each change is small).
#[derive(Default)]
pub(crate) struct Model {
    /// Accounts by number.
    pub accounts: HashMap<String, Account>,
    /// Linked companions by (number, device id).
    pub devices: HashMap<(String, u16), LinkedDevice>,
    /// Live connections by id.
    pub conns: HashMap<u64, Conn>,
    /// The next connection id.
    pub next_conn: u64,
    /// The next IQ id the server uses.
    pub next_id: u64,
    /// Who waits for the answer to which of the server's IQs.
    pub waiters: HashMap<String, oneshot::Sender<Node>>,
    /// Messages linked devices sent to phones, oldest first.
    pub sent: Vec<SentMessage>,
    /// Receipts linked devices sent: (sender's number, message id, type: `delivery` or `read`).
    pub receipts: Vec<(String, String, String)>,
    /// Typing indicators linked devices showed: (their number, the chat, typing or stopped).
    pub chat_states: Vec<(String, String, bool)>,
    /// Push names and presences linked devices sent: (their number, the name announced, online
    /// or offline; `None` for a push name alone).
    pub presences: Vec<(String, Option<String>, Option<bool>)>,
    /// Settings of their own view of chats linked devices changed through app state patches:
    /// (their number, the chat, the setting).
    pub chat_settings: Vec<(String, Jid, ChatSetting)>,
    /// Calls linked devices declined: (their number, the call's id, the caller's JID as the
    /// rejection named it).
    pub rejected_calls: Vec<(String, String, String)>,
    /// How linked devices answered the messages phones sent them, by message id: `true` once
    /// one took it (a receipt; for plaintext, an ack), `false` when it could not decrypt it (a
    /// retry receipt) or refused it (a nack).
    pub answers: HashMap<String, bool>,
    /// Stanzas for each device, kept until its client acknowledges them: delivered at once to
    /// an active connection, and again on every later connection until acknowledged.
    pub pending: HashMap<(String, u16), Vec<Pending>>,
    /// Numbers the network refuses messages to with a 463 error (a missing privacy token).
    pub refuses_463: std::collections::HashSet<String>,
    /// Pairings completed since the start.
    pub pairings: u64,
    /// Logins that replaced a live connection of the same device, since the start.
    pub replaced: u64,
    /// Noise handshakes completed since the start, by pattern.
    pub handshakes: super::noise::HandshakeCounts,
}

/// What kind of stanza a device has to acknowledge, and how it does.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Class {
    /// A message: acknowledged by the device's delivery (or read) receipt for it, or an
    /// `<ack class="message">`.
    Message,
    /// A receipt for a message the device sent: acknowledged by `<ack class="receipt">` of the
    /// same id and type.
    Receipt,
}

/// A stanza kept for a device until its client acknowledges it.
pub(crate) struct Pending {
    /// The stanza's id (the message id; for a receipt, the id of the message it is about).
    pub id: String,
    /// A receipt's type (`None` for a delivery receipt and for messages).
    pub kind: Option<String>,
    /// How it is acknowledged.
    pub class: Class,
    /// The stanza.
    pub node: Node,
    /// The connection it was last sent on: it is sent once per connection.
    pub sent_on: Option<u64>,
}

/// A message a linked device sent to a phone, as the phone decrypted it.
#[derive(Clone, Debug, PartialEq)]
pub struct SentMessage {
    /// WhatsApp's message id (chosen by the sender).
    pub id: String,
    /// The sender's number.
    pub from: String,
    /// The recipient's number.
    pub to: String,
    /// `text`, `image`, `video`, `audio`, `document`, `sticker`, `reaction`, `revoke`, `edit`,
    /// `disappearing` or `other`.
    pub kind: String,
    /// The text, a file's caption, a reaction's emoji, an edit's new text, or a disappearing
    /// timer's seconds.
    pub text: Option<String>,
    /// For a reaction, a deletion for everyone or an edit, the message it is about.
    pub target: Option<String>,
    /// Where the file of a picture, video, audio, document or sticker is, and its key.
    pub media: Option<SentFile>,
    /// The contact card, location, link or poll it is, as the recipient's phone reads it.
    pub structured: Option<wafleet_core::link::Structured>,
    /// Marked "Forwarded" (its context says so).
    pub forwarded: bool,
}

/// The file a sent message points at, as the recipient's phone reads it from the message.
#[derive(Clone, Debug, PartialEq)]
pub struct SentFile {
    /// Which kind of message carried it (its key is derived for that kind).
    pub kind: wafleet_core::link::MessageKind,
    /// Where the media host keeps it, encrypted.
    pub direct_path: Option<String>,
    /// The key it was encrypted with.
    pub media_key: Option<Vec<u8>>,
    /// Its MIME type.
    pub mime: Option<String>,
    /// A document's name.
    pub file_name: Option<String>,
    /// Its size, as the message says.
    pub file_length: Option<u64>,
}

impl Model {
    /// A fresh IQ id.
    pub fn iq_id(&mut self) -> String {
        self.next_id += 1;
        format!("sim-{}", self.next_id)
    }

    /// The account of `phone`, created on first use (as a phone that installs WhatsApp).
    pub fn account(&mut self, phone: &str) -> &mut Account {
        self.accounts.entry(phone.to_owned()).or_insert_with(|| {
            let signal = PhoneSignal::generate();
            Account {
                lid: crate::protocol::lid_of(phone),
                // As on a real phone, the account key is the phone's identity key.
                adv_key: signal.identity_key_pair(),
                next_device: 1,
                signal: Arc::new(tokio::sync::Mutex::new(signal)),
                app_state_key: AppStateKey::generate(),
                address_book: Default::default(),
                reputation: crate::ban::Reputation::default(),
                banned: None,
                profile: crate::control::Profile::default(),
            }
        })
    }

    /// The device ids of the companions linked to `phone`.
    pub fn linked_devices(&self, phone: &str) -> Vec<u16> {
        self.devices
            .keys()
            .filter(|(p, _)| p == phone)
            .map(|(_, device)| *device)
            .collect()
    }

    /// The connections logged in now as a companion of `phone`.
    pub fn logged_in_conns(&self, phone: &str) -> Vec<u64> {
        self.conns
            .iter()
            .filter(|(_, c)| matches!(&c.state, ConnState::LoggedIn { phone: p, .. } if p == phone))
            .map(|(id, _)| *id)
            .collect()
    }

    /// The connection logged in as (phone, device), if any.
    pub fn conn_of(&self, phone: &str, device: u16) -> Option<u64> {
        self.conns.iter().find_map(|(id, conn)| match &conn.state {
            ConnState::LoggedIn { phone: p, device: d } if p == phone && *d == device => Some(*id),
            _ => None,
        })
    }

    /// Counts of what is linked, logged in and pairing now, and of replaced logins.
    pub fn stats(&self) -> WaWebStats {
        let logged_in = self
            .conns
            .values()
            .filter(|c| matches!(c.state, ConnState::LoggedIn { .. }))
            .count();
        WaWebStats {
            linked: self.devices.len(),
            pairings: self.pairings,
            logged_in,
            pairing: self.conns.len() - logged_in,
            replaced: self.replaced,
        }
    }

    /// The device's connection that accepts deliveries (logged in and active), if any.
    pub fn active_conn_of(&self, phone: &str, device: u16) -> Option<u64> {
        self.conn_of(phone, device)
            .filter(|id| self.conns.get(id).is_some_and(|c| c.active))
    }

    /// Keeps `node` for `device` until it is acknowledged, and sends it now if the device is
    /// connected and active.
    pub fn deliver(&mut self, device: &(String, u16), class: Class, node: Node) {
        let attr = |key: &str| node.attrs.get(key).map(|v| v.to_string_value());
        let (id, kind) = (attr("id").unwrap_or_default(), attr("type"));
        let kind = kind.filter(|_| class == Class::Receipt);
        let conn = self.active_conn_of(&device.0, device.1);
        if let Some(conn) = conn {
            self.send(conn, node.clone());
        }
        self.pending.entry(device.clone()).or_default().push(Pending {
            id,
            kind,
            class,
            node,
            sent_on: conn,
        });
    }

    /// The device acknowledged stanzas of `class` with id `id` (and, for receipts, type
    /// `kind`): they are not delivered again.
    pub fn acknowledged(&mut self, device: &(String, u16), class: Class, id: &str, kind: Option<&str>) {
        if let Some(pending) = self.pending.get_mut(device) {
            pending.retain(|p| {
                !(p.class == class && p.id == id && (class == Class::Message || p.kind.as_deref() == kind))
            });
        }
    }

    /// Stanzas the devices of `phone` have not acknowledged yet, of `class`.
    pub fn pending_count(&self, phone: &str, class: Class) -> usize {
        self.pending
            .iter()
            .filter(|((p, _), _)| p == phone)
            .map(|(_, list)| list.iter().filter(|p| p.class == class).count())
            .sum()
    }

    /// Sends `node` on connection `conn`, if it is still there.
    pub fn send(&self, conn: u64, node: Node) {
        if let Some(c) = self.conns.get(&conn) {
            let _ = c.tx.send(Out::Node(node));
        }
    }
}
