//! Bodies of the control API.

use serde::{Deserialize, Serialize};
use wafleet_core::link::{ChatSetting, IncomingCall, Jid, MessageKind, Structured};
use wafleet_core::types::Timestamp;

/// `POST /control/scan`: the phone of `phone` scans `code`.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct ScanRequest {
    /// The QR code currently shown.
    pub code: String,
    /// The scanning phone's number; its account is created when missing.
    pub phone: String,
}

/// `POST /control/pair-code`: the phone confirms `code`.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct PairCodeRequest {
    /// The `XXXX-XXXX` code the device shows.
    pub code: String,
    /// The typing phone's number: required by the WhatsApp Web front end, which never learns
    /// the code (`/control/waweb/pair-code`); the simulator's own protocol ignores it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub phone: Option<String>,
}

/// A device linked by the control API.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Paired {
    /// The account's JID.
    pub jid: Jid,
}

/// `POST /control/provision`: link devices to accounts directly, for benchmarks.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct ProvisionRequest {
    /// One new linked device per number (accounts created when missing).
    pub phones: Vec<String>,
}

/// A device linked by provisioning.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Provisioned {
    /// The number.
    pub phone: String,
    /// The account's JID.
    pub jid: Jid,
    /// The device's token, as `paired` would carry it.
    pub token: String,
}

/// Which kind of chat an injected message arrives in.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ChatKind {
    /// One-to-one with the sender.
    #[default]
    Personal,
    /// A group (`…@g.us`).
    Group,
    /// A broadcast list (`…@broadcast`).
    Broadcast,
    /// A status update (`status@broadcast`).
    Status,
    /// A channel (`…@newsletter`).
    Newsletter,
    /// One-to-one, but addressed by the sender's LID (`…@lid`), its number hidden.
    Lid,
    /// One-to-one, addressed by the sender's LID with its number attached (`sender_alt`), as
    /// WhatsApp does once the recipient may know it.
    LidWithNumber,
}

/// `POST /control/messages`: `from` writes to the account of `to`.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct InjectMessage {
    /// The receiving account's number.
    pub to: String,
    /// The sender's number.
    pub from: String,
    /// Chat kind (personal by default).
    #[serde(default)]
    pub chat: ChatKind,
    /// Text or caption.
    #[serde(default)]
    pub text: Option<String>,
    /// Content kind (text by default).
    #[serde(default)]
    pub kind: Option<MessageKind>,
    /// The sender's display name.
    #[serde(default)]
    pub push_name: Option<String>,
    /// The file of a picture, video, voice note, document or sticker (`kind`). Without it a
    /// message of those kinds carries a sample ([`sample_media`]).
    #[serde(default)]
    pub media: Option<InjectMedia>,
}

/// A file a phone sends in a message.
pub struct MediaFile<'a> {
    /// The file.
    pub bytes: &'a [u8],
    /// Its MIME type.
    pub mime: &'a str,
    /// A caption (pictures, videos, documents).
    pub caption: Option<&'a str>,
    /// Its name (documents).
    pub file_name: Option<&'a str>,
}

/// The file a written message carries.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct InjectMedia {
    /// MIME type (default: the sample's, by kind).
    #[serde(default)]
    pub mime: Option<String>,
    /// The file, base64 (default: a sample of `size` bytes).
    #[serde(default)]
    pub data: Option<String>,
    /// Size of the sample when `data` is absent (default 4,096 bytes; pictures and stickers
    /// are always the sample picture).
    #[serde(default)]
    pub size: Option<usize>,
    /// The file's name (documents).
    #[serde(default)]
    pub file_name: Option<String>,
}

/// A sample file of `kind` and about `size` bytes, with its MIME type: the sample picture for
/// pictures and stickers (so a viewer shows something), else `size` bytes of a fixed pattern
/// after the type's usual header.
pub fn sample_media(kind: MessageKind, size: usize) -> (Vec<u8>, &'static str) {
    let (header, mime): (&[u8], &str) = match kind {
        MessageKind::Image | MessageKind::Sticker => return (PROFILE_PICTURE.to_vec(), "image/jpeg"),
        MessageKind::Video => (b"\0\0\0\x18ftypmp42", "video/mp4"),
        MessageKind::Audio => (b"OggS", "audio/ogg; codecs=opus"),
        _ => (b"%PDF-1.4\n", "application/pdf"),
    };
    let mut bytes = header.to_vec();
    bytes.extend((0..size.saturating_sub(header.len())).map(|i| (i % 251) as u8));
    (bytes, mime)
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Injected {
    /// Its id (the same in every replay).
    pub id: String,
    /// Linked devices it was queued for.
    pub queued_for: usize,
}

/// `POST /control/numbers`: how a number behaves as a recipient. Absent fields keep their value.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct NumberRule {
    /// The number.
    pub phone: String,
    /// Whether it has a WhatsApp account (default yes).
    #[serde(default)]
    pub on_whatsapp: Option<bool>,
    /// Refuse messages to it with a 463 error (default no).
    #[serde(default)]
    pub refuse_463: Option<bool>,
    /// Chance it reads a message (default from the settings).
    #[serde(default)]
    pub read_probability: Option<f64>,
    /// Chance it replies (default from the settings).
    #[serde(default)]
    pub reply_probability: Option<f64>,
    /// What its profile shows others.
    #[serde(flatten)]
    pub profile: Profile,
}

/// How an account presents itself: what its profile shows others (absent fields: none shown),
/// and its privacy settings.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Profile {
    /// Its "About" text.
    #[serde(default)]
    pub about: Option<String>,
    /// A business account's verified name (none: not a business).
    #[serde(default)]
    pub business_name: Option<String>,
    /// The id of its profile picture (none: no picture).
    #[serde(default)]
    pub picture_id: Option<String>,
    /// A business account's public profile (none: not a business).
    #[serde(default)]
    pub business: Option<wafleet_core::link::BusinessProfile>,
    /// Its privacy settings that differ from WhatsApp's defaults ([`PRIVACY_DEFAULTS`]), by
    /// category (`last` → `contacts`).
    #[serde(default, skip_serializing_if = "std::collections::BTreeMap::is_empty")]
    pub privacy: std::collections::BTreeMap<String, String>,
}

/// The image every simulated profile picture shows.
pub const PROFILE_PICTURE: &[u8] = include_bytes!("../../assets/profile-picture.jpg");

/// Where the simulator's media host serves the profile picture `id` of the account of `digits`.
pub fn profile_picture_path(digits: &str, id: &str) -> String {
    format!("/v/pps/{digits}_{id}.jpg")
}

/// The id of a picture that replaces the one of id `current`: the time in seconds, as WhatsApp's
/// ids are, and always above `current`.
pub fn next_picture_id(current: Option<&str>) -> String {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    let after = current.and_then(|id| id.parse::<u64>().ok()).map_or(0, |id| id + 1);
    now.max(after).to_string()
}

/// The privacy settings of a new WhatsApp account, by category.
pub const PRIVACY_DEFAULTS: &[(&str, &str)] = &[
    ("last", "all"),
    ("online", "all"),
    ("profile", "all"),
    ("status", "contacts"),
    ("groupadd", "all"),
    ("readreceipts", "all"),
    ("calladd", "all"),
    ("messages", "all"),
];

impl Profile {
    /// This profile with the fields `update` sets replaced.
    pub fn updated(&self, update: Profile) -> Profile {
        Profile {
            about: update.about.or_else(|| self.about.clone()),
            business_name: update.business_name.or_else(|| self.business_name.clone()),
            picture_id: update.picture_id.or_else(|| self.picture_id.clone()),
            business: update.business.or_else(|| self.business.clone()),
            privacy: self.privacy.clone().into_iter().chain(update.privacy).collect(),
        }
    }

    /// Every privacy setting: the defaults, with this profile's own over them.
    pub fn privacy_settings(&self) -> std::collections::BTreeMap<String, String> {
        PRIVACY_DEFAULTS
            .iter()
            .map(|(category, value)| ((*category).to_owned(), (*value).to_owned()))
            .chain(self.privacy.clone())
            .collect()
    }
}

/// A message an account's device sent, as the network recorded it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct SentRecord {
    /// The id the network assigned.
    pub id: String,
    /// Recipient.
    pub to: Jid,
    /// Text, or the kind of file.
    pub kind: MessageKind,
    /// Text or caption.
    pub text: Option<String>,
    /// The file's size, for pictures, videos, audio, documents and stickers.
    pub media_bytes: Option<usize>,
    /// The file's MIME type.
    #[serde(default)]
    pub mime: Option<String>,
    /// A document's name.
    #[serde(default)]
    pub file_name: Option<String>,
    /// The contact card, location, link or poll it was.
    #[serde(default)]
    pub structured: Option<Structured>,
    /// Marked "Forwarded".
    #[serde(default)]
    pub forwarded: bool,
    /// When the network accepted it.
    pub at: Timestamp,
}

/// A message an account's device marked read, as the network recorded the read receipt.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ReadRecord {
    /// The chat (the person who wrote it).
    pub chat: Jid,
    /// The message's id.
    pub id: String,
    /// When the receipt arrived.
    pub at: Timestamp,
}

/// A push name or presence an account's device sent, as the network recorded it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct PresenceRecord {
    /// The push name it announced (every presence carries the account's).
    pub name: Option<String>,
    /// Online (`true`) or offline; `None` for a push name alone.
    pub available: Option<bool>,
    /// When it arrived.
    pub at: Timestamp,
}

/// A call that rang on an account, as the network recorded it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct CallRecord {
    /// The call.
    pub call: IncomingCall,
    /// Declined by one of the account's devices.
    pub rejected: bool,
}

/// `POST /control/accounts/{phone}/calls`: someone calls the account.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct PlaceCall {
    /// Who calls (a number).
    pub from: String,
    /// A video call.
    #[serde(default)]
    pub video: bool,
}

/// The id of a call placed.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Placed {
    /// WhatsApp's id of the call.
    pub call_id: String,
}

/// A setting of its own view of a chat an account's device changed (archive, pin, star, delete
/// for me), as the network recorded it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ChatSettingRecord {
    /// The chat.
    pub chat: Jid,
    /// The setting.
    pub setting: ChatSetting,
    /// When it arrived.
    pub at: Timestamp,
}

/// A typing indicator an account's device showed in a chat, as the network recorded it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ChatStateRecord {
    /// The chat.
    pub chat: Jid,
    /// Typing (`composing`) or stopped (`paused`).
    pub typing: bool,
    /// When it arrived.
    pub at: Timestamp,
}

/// A reaction, a deletion for everyone or an edit an account's device sent, as the network
/// recorded it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ActionRecord {
    /// The id the action went out under.
    pub id: String,
    /// The chat.
    pub chat: Jid,
    /// `reaction`, `revoke`, `edit` or `disappearing`.
    pub kind: String,
    /// The message acted on.
    pub target: String,
    /// A reaction's emoji (empty: taken back), or an edit's new text.
    pub text: Option<String>,
    /// When it arrived.
    pub at: Timestamp,
}

impl ActionRecord {
    /// A reaction with `emoji` to `target` in `chat`, before the network gives it an id.
    pub fn reaction(chat: &Jid, target: String, emoji: String) -> Self {
        ActionRecord {
            id: String::new(),
            chat: chat.clone(),
            kind: "reaction".into(),
            target,
            text: Some(emoji),
            at: Timestamp::now(),
        }
    }

    /// A deletion for everyone of `target` in `chat`, before the network gives it an id.
    pub fn revoke(chat: &Jid, target: String) -> Self {
        ActionRecord {
            id: String::new(),
            chat: chat.clone(),
            kind: "revoke".into(),
            target,
            text: None,
            at: Timestamp::now(),
        }
    }

    /// The disappearing-messages timer of `chat` set to `seconds` (0: off), before the network
    /// gives the message that carried it an id.
    pub fn disappearing(chat: &Jid, seconds: u32) -> Self {
        ActionRecord {
            id: String::new(),
            chat: chat.clone(),
            kind: "disappearing".into(),
            target: String::new(),
            text: Some(seconds.to_string()),
            at: Timestamp::now(),
        }
    }

    /// An edit of `target` in `chat` to `text`, before the network gives it an id.
    pub fn edit(chat: &Jid, target: String, text: String) -> Self {
        ActionRecord {
            id: String::new(),
            chat: chat.clone(),
            kind: "edit".into(),
            target,
            text: Some(text),
            at: Timestamp::now(),
        }
    }
}

/// A number of things affected.
#[derive(Clone, Copy, Debug, Serialize, Deserialize)]
pub struct Count {
    /// How many.
    pub count: usize,
}

/// `POST /control/accounts/{phone}/schedule`: incoming messages at a steady rate.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Schedule {
    /// Messages a minute; 0 stops the schedule.
    pub per_minute: f64,
    /// Senders, in turn.
    pub from: Vec<String>,
}

/// `POST /control/accounts/{phone}/restrict`: restricts the account's new chats, as WhatsApp
/// does after a breach of its limits or when it tries the cap on an account.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct Restrict {
    /// A reach-out timelock of this many seconds from now.
    #[serde(default)]
    pub timelock_secs: Option<u64>,
    /// A cap on messages to new chats per cycle, for this account alone.
    #[serde(default)]
    pub new_chat_cap: Option<u32>,
}

/// `POST /control/accounts/{phone}/contacts/{contact}`: the phone saves a contact's name.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct SaveContact {
    /// The name; empty removes the contact from the address book.
    pub name: String,
}

/// `GET /control/state`.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct StateView {
    /// Every account, by number.
    pub accounts: Vec<AccountView>,
    /// Open WebSockets.
    pub connections: usize,
    /// Linked devices with a live connection.
    pub connected_sessions: usize,
    /// Pairings in progress.
    pub pairings: Vec<PairingView>,
    /// Totals since start.
    pub counters: Counters,
}

/// One account in [`StateView`].
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct AccountView {
    /// E.164 number.
    pub phone: String,
    /// JID.
    pub jid: Jid,
    /// Banned.
    pub banned: bool,
    /// Why it was banned.
    pub ban_reason: Option<String>,
    /// Linked devices that are not unlinked.
    pub linked_devices: usize,
    /// Of those, connected now.
    pub connected: usize,
    /// Messages waiting for an ack, over all its devices.
    pub pending: usize,
    /// Receipts waiting for an ack, over all its devices.
    #[serde(default)]
    pub pending_receipts: usize,
    /// Messages its devices sent.
    pub sent: usize,
    /// Messages it received.
    pub received: usize,
    /// Messages it sent to numbers that had not written to it.
    pub stranger_messages: u32,
    /// Of those, still unreplied.
    pub unreplied: u32,
}

/// A pairing in progress.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct PairingView {
    /// `qr` or `code`.
    pub kind: String,
    /// The current QR code or the pair code.
    pub code: String,
    /// The number, for pair codes.
    pub phone: Option<String>,
}

/// Totals since the simulator started.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct Counters {
    /// WebSockets accepted.
    pub connections: u64,
    /// Messages sent by devices.
    pub sent: u64,
    /// Messages injected (control API, schedules, replies).
    pub injected: u64,
    /// Acks received.
    pub acks: u64,
    /// Replays of unacknowledged messages on connect.
    pub replays: u64,
    /// Accounts banned.
    pub bans: u64,
    /// Sockets dropped by the control API.
    pub drops: u64,
    /// Connects of a device that already had a live connection (the older one is replaced): a
    /// device held by two workers at once shows here.
    #[serde(default)]
    pub replaced: u64,
}

/// `GET /control/waweb/stats`: what the WhatsApp Web front end holds now, so a benchmark can
/// tell that devices resumed rather than paired again, and that none was connected twice.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct WaWebStats {
    /// Companion devices linked now.
    pub linked: usize,
    /// Pairings completed since the front end started: a device that pairs again adds one.
    pub pairings: u64,
    /// Connections logged in as a linked device now.
    pub logged_in: usize,
    /// Connections of companions waiting to be linked now.
    pub pairing: usize,
    /// Logins of a device that already had a live connection (the older one is replaced, as
    /// WhatsApp does): a device held by two clients at once shows here.
    pub replaced: u64,
}

/// `POST /control/flood`: closed-loop inbound load for benchmarks. Each account gets `window`
/// messages at once, and a new one each time one of them is acknowledged, until `seconds` pass.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct FloodRequest {
    /// The receiving accounts' numbers (one linked device each, for a clean count).
    pub phones: Vec<String>,
    /// Unacknowledged messages kept in flight per account.
    pub window: usize,
    /// How long new messages are generated.
    pub seconds: f64,
    /// Distinct senders (chats) per account; messages go to them in turn.
    pub contacts: usize,
}

/// `GET /control/flood`: what the current (or last) flood did.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct FloodReport {
    /// Still generating messages.
    pub active: bool,
    /// Messages generated.
    pub injected: u64,
    /// Of those, acknowledged (each counted once, replays included only once).
    pub acked: u64,
    /// Acknowledgements of messages no longer pending: replays a device stored already and
    /// acknowledged again (skipped by message id, so never stored twice).
    pub repeat_acks: u64,
    /// Seconds since the flood started.
    pub elapsed_secs: f64,
    /// Injection to acknowledgement, in microseconds: median.
    pub p50_us: u64,
    /// 99th percentile.
    pub p99_us: u64,
    /// Worst.
    pub max_us: u64,
}
