//! The device protocol between [`crate::SimLink`] and the simulator.
//!
//! One WebSocket per device session at `ws://HOST:PORT/ws`; every frame is a JSON text message
//! tagged by `type`.
//!
//! 1. The client's first frame is `hello`, with a `mode`:
//!    - `{"type":"hello","mode":{"mode":"connect","token":"…"}}` resumes a linked device. The
//!      server answers `connected` (then replays every unacknowledged message, oldest first) or
//!      `refused` (unknown, unlinked or banned) and closes.
//!    - `{"mode":"pair_qr"}`: the server sends `qr` at once and a fresh one every QR period,
//!      until the control API scans the current code or the codes run out (`pair_error`).
//!    - `{"mode":"pair_code","phone":"+60…"}`: the server sends one `pair_code` (`XXXX-XXXX`).
//!
//!    Pairing ends with `paired` (the account's JID and the device's opaque token, its
//!    credentials) followed by `connected`.
//! 2. Requests carry a client-chosen `req` number, echoed by exactly one answer: `send` →
//!    `sent{id}`, `check` → `checked`, `logout` → `logout_done`; any of them → `error{class}`.
//! 3. The server pushes `message` (any chat: groups, broadcasts, status and newsletters too),
//!    `receipt` and `logged_out`; the client answers each `message` and `receipt` with `ack{id}`
//!    once it is durable, and the server keeps it (per linked device) until then, replaying what
//!    is unacknowledged on the device's next connection. A `send` may name the message's id.
//! 4. `replaced` means another connection took over the device; the server then closes.
//!
//! A connection closed without `logged_out` or `replaced` is a network drop: the client
//! reconnects with its token.

use serde::{Deserialize, Serialize};
use wafleet_core::link::{
    ChatSetting, IncomingCall, IncomingMessage, Jid, LinkError, MessageKind, ReceiptKind, Structured,
};
use wafleet_core::types::Timestamp;

/// How a session starts.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "mode", rename_all = "snake_case")]
pub enum HelloMode {
    /// Resume a linked device.
    Connect {
        /// The token received with `paired`.
        token: String,
    },
    /// Pair by QR code.
    PairQr,
    /// Pair by code typed on the phone of `phone`.
    PairCode {
        /// The number being linked, E.164.
        phone: String,
    },
}

/// A file being sent (the simulator keeps what the recipient's phone would show of it: its kind,
/// size, type and name, not the bytes).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct MediaInfo {
    /// A picture, video, audio, document or sticker.
    #[serde(default = "picture")]
    pub kind: MessageKind,
    /// Size of the file.
    pub bytes: usize,
    /// MIME type.
    pub mime: String,
    /// A document's name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub file_name: Option<String>,
}

fn picture() -> MessageKind {
    MessageKind::Image
}

/// A frame from the client.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum ClientFrame {
    /// The first frame of every connection.
    Hello {
        /// How to start.
        mode: HelloMode,
    },
    /// Send a text, or a file with an optional caption (`text`).
    Send {
        /// Request number.
        req: u64,
        /// The message id the client chose (WhatsApp clients choose their ids); the server
        /// makes one when it is missing.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        id: Option<String>,
        /// Recipient JID.
        to: Jid,
        /// Text, or the caption of `media`.
        text: Option<String>,
        /// The file, for pictures, videos, audio, documents and stickers.
        #[serde(alias = "image")]
        media: Option<MediaInfo>,
        /// A contact card, location, link or poll (`text` is then its summary).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        structured: Option<Structured>,
        /// Marked "Forwarded".
        #[serde(default)]
        forwarded: bool,
    },
    /// Which numbers are on WhatsApp.
    Check {
        /// Request number.
        req: u64,
        /// E.164 numbers.
        phones: Vec<String>,
    },
    /// What WhatsApp lets the account do with new chats now.
    Restrictions {
        /// Request number.
        req: u64,
    },
    /// The account's privacy settings.
    Privacy {
        /// Request number.
        req: u64,
    },
    /// The business profile of the account of a number.
    BusinessProfile {
        /// Request number.
        req: u64,
        /// E.164 number.
        phone: String,
    },
    /// Make a picture the account's profile picture.
    SetPicture {
        /// Request number.
        req: u64,
        /// The JPEG, base64.
        jpeg: String,
    },
    /// Where the profile picture of the account of a number is.
    Picture {
        /// Request number.
        req: u64,
        /// E.164 number.
        phone: String,
        /// The small preview rather than the full picture.
        preview: bool,
    },
    /// What WhatsApp shows of the account of a number (its profile).
    UserInfo {
        /// Request number.
        req: u64,
        /// E.164 number.
        phone: String,
    },
    /// The account read messages `ids` of the personal chat `chat` (a read receipt to their sender).
    Read {
        /// Request number.
        req: u64,
        /// The chat (the person who wrote them).
        chat: Jid,
        /// The messages read.
        ids: Vec<String>,
    },
    /// The account starts (`typing`) or stops typing in the personal chat `chat`.
    ChatPresence {
        /// Request number.
        req: u64,
        /// The chat.
        chat: Jid,
        /// Typing now.
        typing: bool,
    },
    /// Make `name` the account's push name.
    PushName {
        /// Request number.
        req: u64,
        /// The name.
        name: String,
    },
    /// Show the account online (`available`) or offline; refused without a push name.
    Presence {
        /// Request number.
        req: u64,
        /// Online now.
        available: bool,
    },
    /// Change the account's own `setting` of `chat` (archive, pin, star, delete for me).
    ChatSetting {
        /// Request number.
        req: u64,
        /// The chat.
        chat: Jid,
        /// The setting.
        setting: ChatSetting,
    },
    /// Set the disappearing-messages timer of `chat` (0: off); answered with the id of the
    /// message that carried it.
    Disappearing {
        /// Request number.
        req: u64,
        /// The chat.
        chat: Jid,
        /// The timer, in seconds.
        seconds: u32,
    },
    /// Decline call `call_id` from `caller`; answered `Done` whether or not it still rings, as
    /// WhatsApp does not answer a rejection.
    RejectCall {
        /// Request number.
        req: u64,
        /// Who is calling.
        caller: Jid,
        /// The call.
        call_id: String,
    },
    /// React to message `target` of `chat` with `emoji` (empty: take the reaction back).
    React {
        /// Request number.
        req: u64,
        /// The chat.
        chat: Jid,
        /// The message reacted to.
        target: String,
        /// Whether the account wrote it.
        from_me: bool,
        /// The emoji.
        emoji: String,
    },
    /// Replace the text of the account's own message `target` of `chat` with `text`.
    Edit {
        /// Request number.
        req: u64,
        /// The chat.
        chat: Jid,
        /// The message edited.
        target: String,
        /// Its new text.
        text: String,
    },
    /// Delete the account's own message `target` of `chat` for everyone.
    Revoke {
        /// Request number.
        req: u64,
        /// The chat.
        chat: Jid,
        /// The message deleted.
        target: String,
    },
    /// Unlink this device.
    Logout {
        /// Request number.
        req: u64,
    },
    /// A delivered message or receipt is durable on the client; forget it.
    Ack {
        /// The message id, or the receipt's own id.
        id: String,
    },
}

/// How a request failed, mapped one to one on [`LinkError`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ErrorClass {
    /// See [`LinkError::Transient`].
    Transient,
    /// See [`LinkError::Recipient`].
    Recipient,
    /// See [`LinkError::Device`].
    Device,
    /// See [`LinkError::Invalid`].
    Invalid,
    /// See [`LinkError::Restricted`].
    Restricted,
}

impl ErrorClass {
    /// The link error of this class.
    pub fn into_error(self, message: String) -> LinkError {
        match self {
            ErrorClass::Transient => LinkError::Transient(message),
            ErrorClass::Recipient => LinkError::Recipient(message),
            ErrorClass::Device => LinkError::Device(message),
            ErrorClass::Invalid => LinkError::Invalid(message),
            ErrorClass::Restricted => LinkError::Restricted(message),
        }
    }
}

/// A frame from the server.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum ServerFrame {
    /// A QR code to show, valid for `valid_for_ms`.
    Qr {
        /// The code.
        code: String,
        /// Validity in milliseconds.
        valid_for_ms: u64,
    },
    /// The code to type on the phone.
    PairCode {
        /// `XXXX-XXXX`.
        code: String,
    },
    /// Pairing succeeded.
    Paired {
        /// The account's JID.
        jid: Jid,
        /// The device's credentials.
        token: String,
    },
    /// Pairing failed.
    PairError {
        /// Why.
        reason: String,
    },
    /// The session is live.
    Connected {
        /// The account's JID.
        jid: Jid,
    },
    /// `connect` refused: the device must pair again.
    Refused {
        /// Why.
        reason: String,
        /// The account is banned.
        banned: bool,
    },
    /// A message for the account (acknowledge it with `ack`).
    Message {
        /// The message.
        message: IncomingMessage,
    },
    /// Receipts for messages the account sent (acknowledge them with `ack` and the receipt's
    /// own `id`; the server replays unacknowledged ones on the next connection).
    Receipt {
        /// The receipt's own id.
        #[serde(default)]
        id: String,
        /// Delivered or read.
        kind: ReceiptKind,
        /// The chat.
        chat: Jid,
        /// The messages.
        ids: Vec<String>,
        /// When.
        at: Timestamp,
    },
    /// Someone is calling the account: a personal call ringing. Not acknowledged or replayed (a
    /// call rings once).
    Call {
        /// The call.
        call: IncomingCall,
    },
    /// A name the account's phone saved for a contact (its address book, synced as app state;
    /// an empty name: removed). Acknowledged with `ack` and its `id`, replayed until then.
    ContactName {
        /// The frame's own id.
        id: String,
        /// The contact.
        jid: Jid,
        /// The saved name.
        name: String,
    },
    /// A LID and the number of the same person, as WhatsApp tells a device once it knows
    /// (acknowledge it with `ack` and its `id`; replayed until then, like receipts).
    LidMapping {
        /// The frame's own id.
        id: String,
        /// The LID (`…@lid`).
        lid: Jid,
        /// The phone-number JID.
        phone: Jid,
    },
    /// The device was unlinked (or the account banned); the server closes next.
    LoggedOut {
        /// Why.
        reason: String,
        /// Banned.
        banned: bool,
    },
    /// Another connection took over this device.
    Replaced,
    /// Answer to `send`.
    Sent {
        /// Request number.
        req: u64,
        /// The message id the network assigned.
        id: String,
    },
    /// Answer to `check`: each number's JID, `null` when not on WhatsApp, in request order.
    Checked {
        /// Request number.
        req: u64,
        /// One entry per asked number.
        jids: Vec<Option<Jid>>,
    },
    /// Answer to `business_profile`: `null` when the account is not a business.
    BusinessProfile {
        /// Request number.
        req: u64,
        /// The profile.
        profile: Option<wafleet_core::link::BusinessProfile>,
    },
    /// Answer to `set_picture`: the new picture's id.
    PictureSet {
        /// Request number.
        req: u64,
        /// Its id.
        id: String,
    },
    /// Answer to `picture`: `null` when the account shows none.
    Picture {
        /// Request number.
        req: u64,
        /// The picture.
        picture: Option<wafleet_core::link::ProfilePicture>,
    },
    /// Answer to `privacy`: every setting, by category.
    Privacy {
        /// Request number.
        req: u64,
        /// Category → value.
        settings: wafleet_core::link::PrivacySettings,
    },
    /// Answer to `user_info`: the profile, `null` when the number has no account.
    UserInfo {
        /// Request number.
        req: u64,
        /// The profile.
        info: Option<wafleet_core::link::UserInfo>,
    },
    /// Answer to `restrictions`.
    Restrictions {
        /// Request number.
        req: u64,
        /// The account's restrictions.
        #[serde(flatten)]
        state: crate::ban::Restrictions,
    },
    /// Answer to `logout`.
    LogoutDone {
        /// Request number.
        req: u64,
    },
    /// Answer to `read` and `chat_presence`: done.
    Done {
        /// Request number.
        req: u64,
    },
    /// A request failed.
    Error {
        /// Request number.
        req: u64,
        /// Error class.
        class: ErrorClass,
        /// Why.
        message: String,
    },
}

/// A person's stable linked identity (the user part of their `…@lid` JID). LIDs are opaque
/// numbers unrelated to the phone number; deriving one from the number keeps the network
/// reproducible, and the simulator and its WhatsApp Web front end agree on it.
pub fn lid_of(phone_digits: &str) -> String {
    use sha2::Digest;
    let digest = sha2::Sha256::digest(phone_digits.as_bytes());
    let n = u64::from_be_bytes(digest[..8].try_into().unwrap_or_default()) % 100_000_000_000_000;
    format!("{}", 100_000_000_000_000 + n)
}
