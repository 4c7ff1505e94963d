//! The one boundary between workers and WhatsApp.
//!
//! A [`Link`] opens [`Session`]s: one per device, held by at most one worker at a time. Two
//! implementations pass one conformance suite: the real client (whatsapp-rust, its state in our database)
//! and the client of the project's WhatsApp network simulator (`wafleet sim`, over a WebSocket).
//!
//! Events arrive in order on one channel per session. An incoming message or receipt carries an
//! [`Ack`]: the consumer fires it once the event is durable, and only then is it acknowledged to
//! the network, so a crash before the write means the network delivers it again (replays are
//! deduplicated by message id downstream).

use std::fmt;
use std::time::Duration;

use tokio::sync::{mpsc, oneshot};

use crate::types::{DeviceId, PhoneNumber, Timestamp};

/// A WhatsApp address (`60123456789@s.whatsapp.net`, `123@g.us`, `status@broadcast`, …).
#[derive(
    Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize, serde::Deserialize, utoipa::ToSchema,
)]
#[serde(transparent)]
#[schema(value_type = String, example = "60123456789@s.whatsapp.net")]
pub struct Jid(pub String);

/// The server part of personal (one-to-one) chats.
pub const USER_SERVER: &str = "s.whatsapp.net";
/// The server part of linked-identity (LID) personal chats.
pub const LID_SERVER: &str = "lid";

impl Jid {
    /// The JID of a phone number's account.
    pub fn for_phone(phone: &PhoneNumber) -> Self {
        Jid(format!("{}@{USER_SERVER}", phone.digits()))
    }

    /// The part after `@` (empty when there is none).
    pub fn server(&self) -> &str {
        self.0.rsplit_once('@').map_or("", |(_, server)| server)
    }

    /// The JID of a LID user (`123456789@lid`).
    pub fn for_lid(user: &str) -> Self {
        Jid(format!("{user}@{LID_SERVER}"))
    }

    /// Whether this is a linked-identity (LID) address, which hides the person's number.
    pub fn is_lid(&self) -> bool {
        self.server() == LID_SERVER && !self.user().is_empty()
    }

    /// Whether this is a phone-number address of a person.
    pub fn is_phone(&self) -> bool {
        self.server() == USER_SERVER && !self.user().is_empty()
    }

    /// The part before `@`, without any `:device` or `.agent` suffix.
    pub fn user(&self) -> &str {
        let user = self.0.split_once('@').map_or(self.0.as_str(), |(user, _)| user);
        user.split([':', '.']).next().unwrap_or(user)
    }

    /// Whether this is a one-to-one chat with a person. Groups, broadcast lists, status updates
    /// and newsletters are not, and never reach our storage.
    pub fn is_personal(&self) -> bool {
        matches!(self.server(), USER_SERVER | LID_SERVER) && !self.user().is_empty()
    }
}

impl fmt::Display for Jid {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// How to open a device's session.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum OpenMode {
    /// Connect with the stored credentials of an already linked device.
    Connect,
    /// Link a new device by QR code: [`LinkEvent::QrCode`] events follow, refreshed as they expire.
    PairQr,
    /// Link a new device by phone pair code: one [`LinkEvent::PairCode`] follows.
    PairCode(PhoneNumber),
}

/// What kind of content a message holds.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum MessageKind {
    /// Plain or extended text.
    Text,
    /// A picture, perhaps with a caption.
    Image,
    /// A video.
    Video,
    /// A voice note or audio file.
    Audio,
    /// A document.
    Document,
    /// A sticker.
    Sticker,
    /// Anything else (location, contact card, poll, …).
    Other,
}

impl MessageKind {
    /// The kinds that carry a file.
    pub const MEDIA: [MessageKind; 5] = [
        MessageKind::Image,
        MessageKind::Video,
        MessageKind::Audio,
        MessageKind::Document,
        MessageKind::Sticker,
    ];

    /// Its name, as stored and shown: `text`, `image`, `video`, `audio`, `document`, `sticker`,
    /// `other`.
    pub fn as_str(self) -> &'static str {
        match self {
            MessageKind::Text => "text",
            MessageKind::Image => "image",
            MessageKind::Video => "video",
            MessageKind::Audio => "audio",
            MessageKind::Document => "document",
            MessageKind::Sticker => "sticker",
            MessageKind::Other => "other",
        }
    }

    /// The kind named `name` ([`MessageKind::as_str`]); anything unknown is [`MessageKind::Other`].
    pub fn from_name(name: &str) -> Self {
        [MessageKind::Text, MessageKind::Other]
            .into_iter()
            .chain(Self::MEDIA)
            .find(|k| k.as_str() == name)
            .unwrap_or(MessageKind::Other)
    }
}

/// A message seen by a session: received, or sent by the account from another of its devices.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct IncomingMessage {
    /// WhatsApp's message id, unique per chat and sender; the dedup key.
    pub id: String,
    /// The chat (for personal chats, the other person).
    pub chat: Jid,
    /// Who wrote it.
    pub sender: Jid,
    /// The sender's other address, when WhatsApp gave one: the phone-number JID of a message
    /// addressed by LID, or the LID of one addressed by number (`sender_alt` on the wire). A LID
    /// paired with a number here tells wafleet they are the same person.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sender_alt: Option<Jid>,
    /// Written by this account (from the phone or another linked device).
    pub from_me: bool,
    /// The sender's display name, when WhatsApp sent one.
    pub push_name: Option<String>,
    /// Content kind.
    pub kind: MessageKind,
    /// Text, or the caption of media.
    pub text: Option<String>,
    /// When it was sent, by the sender's clock as WhatsApp reports it.
    pub sent_at: Timestamp,
    /// From WhatsApp's history sync when the device was linked: an old message, stored for the
    /// record but not news (no unread count, no webhook, never a reply to a send).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub history: bool,
    /// The picture, video, voice note, document or sticker it carries: what it is, and where
    /// the link fetches it ([`Session::download`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub media: Option<IncomingMedia>,
}

/// Media a received message carries, as its link reported it.
///
/// WhatsApp keeps a message's media on its servers, encrypted, for a limited time (weeks); the
/// message itself holds only where it is and the key. wafleet fetches it through the device's
/// session soon after the message is stored and keeps it ([`crate::media_store`]).
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct IncomingMedia {
    /// MIME type the sender gave (`image/jpeg`, `video/mp4`, `application/pdf`, …).
    pub mime: String,
    /// Size in bytes, as the sender announced it.
    pub size: u64,
    /// The file's name, for documents.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub file_name: Option<String>,
    /// Where and how the link fetches it: the link's own form (addresses, keys, hashes), opaque
    /// to the rest of wafleet and stored as it is until the media is fetched.
    pub locator: String,
}

/// Delivery progress reported for messages this account sent.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ReceiptKind {
    /// Reached the recipient's phone.
    Delivered,
    /// Opened by the recipient.
    Read,
}

/// Confirms that an event has been made durable; dropping it unfired means "not stored".
#[derive(Debug)]
pub struct Ack(Option<oneshot::Sender<()>>);

impl Ack {
    /// An ack and the receiver the link waits on before acknowledging to the network.
    pub fn new() -> (Ack, oneshot::Receiver<()>) {
        let (tx, rx) = oneshot::channel();
        (Ack(Some(tx)), rx)
    }

    /// An ack nobody waits for (for links that acknowledge on their own).
    pub fn none() -> Ack {
        Ack(None)
    }

    /// Tells the link the event is durable.
    pub fn done(mut self) {
        if let Some(tx) = self.0.take() {
            let _ = tx.send(());
        }
    }
}

/// Something that happened to a session, in the order it happened.
#[derive(Debug)]
pub enum LinkEvent {
    /// A QR code to show; scanning it with the phone links the device. Replaced by the next one
    /// after `valid_for`.
    QrCode {
        /// The string to render as a QR code.
        code: String,
        /// How long this code stays valid.
        valid_for: Duration,
    },
    /// The code to type on the phone (`Linked devices → Link with phone number`), e.g. `6ZPJ-KFNJ`.
    PairCode {
        /// The code, as shown to the user.
        code: String,
    },
    /// The phone accepted the link; credentials are stored and the session connects.
    PairSuccess {
        /// The account's own JID.
        jid: Jid,
    },
    /// Pairing failed or timed out.
    PairError {
        /// Why, for people.
        reason: String,
    },
    /// Connected and ready to send.
    Connected,
    /// The connection dropped; the link may reconnect on its own.
    Disconnected {
        /// Why, for people and logs.
        reason: String,
    },
    /// The device was unlinked (from the phone, remotely, or banned): credentials are gone and it
    /// must be paired again.
    LoggedOut {
        /// Why, for people and logs.
        reason: String,
        /// WhatsApp banned the number.
        banned: bool,
    },
    /// A personal-chat message; fire `ack` once it is stored.
    Message {
        /// The message.
        message: IncomingMessage,
        /// Fire when durable.
        ack: Ack,
    },
    /// WhatsApp told the session that a LID and a phone number are the same person (a
    /// `sender_alt`, a usync answer, a history sync's mapping); fire `ack` once stored. wafleet
    /// then keeps one chat for them, under the number.
    LidMapping {
        /// The LID (`…@lid`).
        lid: Jid,
        /// The phone-number JID (`…@s.whatsapp.net`).
        phone: Jid,
        /// Fire when durable.
        ack: Ack,
    },
    /// The name the account's phone has saved for a contact (its address book, which WhatsApp
    /// syncs to linked devices as app state); fire `ack` once stored. Shown instead of the
    /// contact's own push name.
    ContactName {
        /// The contact (`…@s.whatsapp.net`, or `…@lid`).
        jid: Jid,
        /// The saved name; empty when the contact was removed from the address book.
        name: String,
        /// Fire when durable.
        ack: Ack,
    },
    /// Someone is calling the account (a personal call ringing on its phone). Not acknowledged:
    /// WhatsApp rings a call once and does not offer it again, so one that arrives while the
    /// device changes hands is missed, as on a phone that was offline.
    Call {
        /// The call.
        call: IncomingCall,
    },
    /// Delivery or read receipts for messages this account sent.
    Receipt {
        /// Delivered or read.
        kind: ReceiptKind,
        /// The chat the messages are in.
        chat: Jid,
        /// Which messages.
        message_ids: Vec<String>,
        /// When, as reported.
        at: Timestamp,
        /// Fire when durable: like messages, receipts are acknowledged to the network only once
        /// stored, so one that arrives while a device changes hands is delivered again rather
        /// than lost.
        ack: Ack,
    },
}

/// A call ringing on the account, as WhatsApp offered it.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct IncomingCall {
    /// WhatsApp's id of the call, which rejecting it names.
    pub id: String,
    /// Who is calling (`…@s.whatsapp.net`, or `…@lid`).
    pub from: Jid,
    /// The name the caller gave themselves on WhatsApp (their push name), when sent.
    pub name: Option<String>,
    /// The caller's platform (`android`, `iphone`, …), when sent.
    pub platform: Option<String>,
    /// The caller's WhatsApp version, when sent.
    pub version: Option<String>,
    /// A video call (else voice).
    pub video: bool,
    /// When it started ringing.
    pub at: Timestamp,
}

/// Why a call on a link failed. The classes decide what happens next: only
/// [`LinkError::Device`] failures may pause a device.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LinkError {
    /// The network or server failed; retrying later may work.
    #[error("connection problem: {0}")]
    Transient(String),
    /// The recipient cannot receive this (not on WhatsApp, refused with 463, …).
    #[error("recipient refused: {0}")]
    Recipient(String),
    /// The device itself cannot act (not paired, logged out, banned).
    #[error("device problem: {0}")]
    Device(String),
    /// The request itself is wrong (bad image, empty text).
    #[error("invalid request: {0}")]
    Invalid(String),
    /// A send left for WhatsApp but no answer came (timeout, connection lost): it may or may not
    /// have arrived. Never retried, since retrying could deliver it twice.
    #[error("no confirmation from WhatsApp: {0}")]
    Unconfirmed(String),
    /// WhatsApp does not let this account start new chats for now (a reach-out timelock, or
    /// the monthly new-chat cap is used up). Nothing was sent; the same message may go once the
    /// restriction lifts ([`Session::restrictions`] says when), and existing chats still work.
    #[error("new chats restricted: {0}")]
    Restricted(String),
}

/// What WhatsApp currently lets an account do with new chats (people who have not written to
/// it), as read from WhatsApp.
#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize, utoipa::ToSchema)]
pub struct Restrictions {
    /// A reach-out timelock: messages to new chats are refused until then.
    pub timelocked_until: Option<Timestamp>,
    /// The monthly cap on messages to new chats, when WhatsApp applies one to the account.
    pub new_chat_cap: Option<NewChatCap>,
}

/// A monthly cap on messages to people who have not replied.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize, utoipa::ToSchema)]
pub struct NewChatCap {
    /// Messages counted against the cap this cycle.
    pub used: i64,
    /// The cap.
    pub total: i64,
    /// When the cycle ends and the count starts again.
    pub resets_at: Option<Timestamp>,
}

impl Restrictions {
    /// Until when messages to new chats must wait at `now`, and why (for people); `None` when
    /// they may go. A restriction without an end is looked at again in an hour.
    pub fn new_chats_blocked(&self, now: Timestamp) -> Option<(Timestamp, String)> {
        let retry = || now.plus_secs(3600);
        // For people: to the second, in UTC (the dashboard shows exact times in local time).
        let at = |t: Timestamp| t.to_datetime().format("%Y-%m-%d %H:%M:%S UTC");
        if let Some(until) = self.timelocked_until.filter(|t| t.millis() > now.millis()) {
            return Some((
                until,
                format!(
                    "WhatsApp restricts new chats from this number until {} (a reach-out timelock); sends to existing chats go on",
                    at(until)
                ),
            ));
        }
        let cap = self.new_chat_cap.as_ref().filter(|c| c.used >= c.total)?;
        let until = cap
            .resets_at
            .filter(|t| t.millis() > now.millis())
            .unwrap_or_else(retry);
        Some((
            until,
            format!(
                "the monthly cap on messages to new chats is used up ({} of {}) until {}; sends to existing chats go on",
                cap.used,
                cap.total,
                at(until)
            ),
        ))
    }
}

/// Whether a number is on WhatsApp.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize, utoipa::ToSchema)]
pub struct NumberCheck {
    /// The number asked about.
    pub phone: PhoneNumber,
    /// Its JID when it has an account.
    pub jid: Option<Jid>,
}

/// What WhatsApp shows of an account to others: its profile as a contact sees it.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct UserInfo {
    /// The account's JID (`…@s.whatsapp.net`).
    pub jid: Jid,
    /// Its "About" text, when it shows one.
    pub about: Option<String>,
    /// The id of its current profile picture, when it has one (it changes with the picture).
    pub picture_id: Option<String>,
    /// A business account's verified name.
    pub verified_name: Option<String>,
    /// Its devices: 0 is the phone, the others its linked companions.
    pub devices: Vec<u16>,
}

/// A business account's public profile.
#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct BusinessProfile {
    /// What the business says of itself.
    #[serde(default)]
    pub description: String,
    /// Its email address.
    #[serde(default)]
    pub email: Option<String>,
    /// Its street address.
    #[serde(default)]
    pub address: Option<String>,
    /// Its websites.
    #[serde(default)]
    pub websites: Vec<String>,
    /// Its categories.
    #[serde(default)]
    pub categories: Vec<BusinessCategory>,
    /// The time zone of its opening hours (`Asia/Kuala_Lumpur`).
    #[serde(default)]
    pub hours_timezone: Option<String>,
    /// Its opening hours, a day each.
    #[serde(default)]
    pub hours: Vec<BusinessHours>,
}

/// A category of a business (WhatsApp's id and its name).
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct BusinessCategory {
    /// WhatsApp's id of the category.
    pub id: String,
    /// Its name.
    pub name: String,
}

/// A business's hours on one day of the week.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct BusinessHours {
    /// `sun`, `mon`, … `sat`.
    pub day: String,
    /// `open_24h`, `specific_hours` or `appointment_only`.
    pub mode: String,
    /// Opens, in minutes after midnight (with `specific_hours`).
    pub open_minute: Option<u32>,
    /// Closes, in minutes after midnight.
    pub close_minute: Option<u32>,
}

/// An account's profile picture, where WhatsApp serves it.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct ProfilePicture {
    /// The picture's id (it changes with the picture).
    pub id: String,
    /// Where to download it (a signed, expiring address on WhatsApp's servers).
    pub url: String,
    /// The small preview rather than the full picture.
    pub preview: bool,
}

/// The account's privacy settings: WhatsApp's category names (`last`, `online`, `profile`,
/// `status`, `readreceipts`, `groupadd`, `calladd`, …) to their values (`all`, `contacts`,
/// `contact_blacklist`, `none`, `match_last_seen`, …), as WhatsApp reports them.
pub type PrivacySettings = std::collections::BTreeMap<String, String>;

/// A message to send, with the id it goes out under.
///
/// The id is chosen before sending, so the send can be recorded with it first: a send whose
/// worker died mid-flight is then recognised by WhatsApp's ack or a later receipt naming that id,
/// instead of being left unknown (or sent twice).
#[derive(Clone, Debug)]
pub struct Outgoing {
    /// The message id, in WhatsApp Web's form ([`new_message_id`]).
    pub id: String,
    /// The recipient.
    pub to: Jid,
    /// What is sent.
    pub content: Content,
    /// Marked "Forwarded", as WhatsApp marks a message passed on from another chat.
    pub forwarded: bool,
}

/// What an [`Outgoing`] message holds.
#[derive(Clone, Debug)]
pub enum Content {
    /// Text.
    Text(String),
    /// A file (a picture, video, audio, document or sticker) with an optional caption.
    Media(OutgoingMedia),
    /// A contact card, a location, a link or a poll.
    Structured(Structured),
}

/// Why an account cannot show its presence yet ([`LinkError::Invalid`] from
/// [`Session::set_presence`] on either link).
pub const NO_PUSH_NAME: &str = "the account has no push name yet, and WhatsApp takes presence only with one";

/// A message with a structure of its own, as a send records it (JSON, tagged by `kind`).
#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Structured {
    /// A contact card: a name and a number, which the recipient can save or message.
    Contact {
        /// The name shown.
        name: String,
        /// The number, E.164 (`+6289685024992`).
        phone: String,
    },
    /// A place on the map.
    Location {
        /// Degrees north (negative: south), -90 to 90.
        latitude: f64,
        /// Degrees east (negative: west), -180 to 180.
        longitude: f64,
    },
    /// A text with a link in it, WhatsApp's way of sending a link.
    Link {
        /// The link, http(s).
        url: String,
        /// Text shown with it.
        caption: Option<String>,
    },
    /// A poll: a question and its options, of which a voter picks up to `selectable`.
    Poll {
        /// The question.
        question: String,
        /// The options, 2 to 12, all different.
        options: Vec<String>,
        /// How many options a voter may pick, 1 to the number of options.
        selectable: u32,
    },
}

impl Structured {
    /// Its kind's name, as sends record it: `contact`, `location`, `link`, `poll`.
    pub fn kind(&self) -> &'static str {
        match self {
            Structured::Contact { .. } => "contact",
            Structured::Location { .. } => "location",
            Structured::Link { .. } => "link",
            Structured::Poll { .. } => "poll",
        }
    }

    /// What a person reads of it, for a chat's list and a send's text.
    pub fn summary(&self) -> String {
        match self {
            Structured::Contact { name, phone } => format!("Contact: {name} ({phone})"),
            Structured::Location { latitude, longitude } => format!("Location: {latitude}, {longitude}"),
            Structured::Link {
                url,
                caption: Some(caption),
            } => format!("{caption}\n{url}"),
            Structured::Link { url, caption: None } => url.clone(),
            Structured::Poll { question, options, .. } => format!("Poll: {question} ({})", options.join(" / ")),
        }
    }

    /// The vCard of a contact card, as WhatsApp's apps write them (`waid` makes the number
    /// one tap from a chat).
    pub fn vcard(name: &str, phone: &str) -> String {
        let digits = phone.trim_start_matches('+');
        format!(
            "BEGIN:VCARD\nVERSION:3.0\nN:;{name};;;\nFN:{name}\nTEL;type=CELL;type=VOICE;waid={digits}:+{digits}\nEND:VCARD"
        )
    }

    /// The number a vCard's `waid` names, E.164.
    pub fn vcard_phone(vcard: &str) -> Option<String> {
        let (_, rest) = vcard.split_once("waid=")?;
        let digits: String = rest.chars().take_while(char::is_ascii_digit).collect();
        (!digits.is_empty()).then(|| format!("+{digits}"))
    }
}

impl Outgoing {
    /// A text to `to` under a new id.
    pub fn text(to: &Jid, text: &str) -> Self {
        Outgoing {
            id: new_message_id(),
            to: to.clone(),
            content: Content::Text(text.to_owned()),
            forwarded: false,
        }
    }

    /// A contact card, location, link or poll to `to` under a new id.
    pub fn structured(to: &Jid, structured: Structured) -> Self {
        Outgoing {
            id: new_message_id(),
            to: to.clone(),
            content: Content::Structured(structured),
            forwarded: false,
        }
    }

    /// A file to `to` under a new id.
    pub fn media(to: &Jid, media: OutgoingMedia) -> Self {
        Outgoing {
            id: new_message_id(),
            to: to.clone(),
            content: Content::Media(media),
            forwarded: false,
        }
    }
}

/// A new message id as WhatsApp Web makes them: `3EB0` and 18 upper-case hex digits, random.
pub fn new_message_id() -> String {
    use rand::Rng;
    let bytes: [u8; 9] = rand::rng().random();
    let mut id = String::with_capacity(22);
    id.push_str("3EB0");
    for b in bytes {
        id.push_str(&format!("{b:02X}"));
    }
    id
}

/// A message an action (a reaction) is about.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct MessageRef {
    /// WhatsApp's id of the message.
    pub id: String,
    /// Whether the account wrote it (else the other person did).
    pub from_me: bool,
}

/// A setting of the account's own view of a personal chat, which WhatsApp keeps in the account's
/// synced app state so that the phone and every linked device show it alike. Nobody else sees it.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum ChatSetting {
    /// The chat archived (hidden from the main chat list), or brought back.
    Archived {
        /// Archived now.
        archived: bool,
    },
    /// The chat pinned to the top of the chat list, or unpinned.
    Pinned {
        /// Pinned now.
        pinned: bool,
    },
    /// A message of the chat starred, or unstarred.
    Starred {
        /// The message.
        message: MessageRef,
        /// Starred now.
        starred: bool,
    },
    /// A message of the chat deleted from the account's own devices ("Delete for me"); the
    /// other person keeps it.
    DeletedForMe {
        /// The message.
        message: MessageRef,
        /// When it was sent, which the phone uses to find it, when known.
        sent_at: Option<Timestamp>,
    },
}

/// The disappearing-messages timers WhatsApp offers for a personal chat, in seconds: off, 24
/// hours, 7 days, 90 days.
pub const DISAPPEARING_TIMERS: [u32; 4] = [0, 86_400, 604_800, 7_776_000];

/// A file a send carries, as it goes out: already converted where wafleet converts (pictures to
/// JPEG, stickers to WebP) and checked to be what its kind says.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Attachment {
    /// How it is sent: one of [`MessageKind::MEDIA`].
    pub kind: MessageKind,
    /// The file.
    pub bytes: Vec<u8>,
    /// Its MIME type, as WhatsApp is told (`image/jpeg`, `video/mp4`, `audio/ogg; codecs=opus`,
    /// `image/webp`, or a document's own).
    pub mime: String,
    /// The name a document is shown with.
    pub file_name: Option<String>,
}

impl Attachment {
    /// A picture as wafleet sends them: a JPEG ([`crate::media::compress`]).
    pub fn jpeg(bytes: Vec<u8>) -> Self {
        Attachment {
            kind: MessageKind::Image,
            bytes,
            mime: "image/jpeg".into(),
            file_name: None,
        }
    }
}

/// A file to send, with an optional caption (WhatsApp shows captions under pictures, videos and
/// documents only).
#[derive(Clone, Debug)]
pub struct OutgoingMedia {
    /// The file.
    pub file: Attachment,
    /// Its caption.
    pub caption: Option<String>,
}

/// Opens sessions; one per implementation, shared by a worker's devices.
#[async_trait::async_trait]
pub trait Link: Send + Sync + 'static {
    /// Opens `device`'s session. Returns once the attempt has started; progress arrives as events.
    async fn open(&self, device: DeviceId, mode: OpenMode) -> Result<Box<dyn Session>, LinkError>;
}

/// One device's live session.
#[async_trait::async_trait]
pub trait Session: Send + Sync {
    /// The event stream; `None` after the first call.
    fn take_events(&mut self) -> Option<mpsc::Receiver<LinkEvent>>;

    /// Sends `message`; returns the id WhatsApp has for it: `message.id`, unless the link cannot
    /// choose ids (then the receipts of a send whose worker died cannot be matched to it).
    async fn send(&self, message: &Outgoing) -> Result<String, LinkError>;

    /// Which of `phones` are on WhatsApp.
    async fn check_numbers(&self, phones: &[PhoneNumber]) -> Result<Vec<NumberCheck>, LinkError>;

    /// What WhatsApp shows of the account of `phone`; `None` when the number has no account.
    async fn user_info(&self, phone: &PhoneNumber) -> Result<Option<UserInfo>, LinkError>;

    /// The account's privacy settings.
    async fn privacy(&self) -> Result<PrivacySettings, LinkError>;

    /// The business profile of the account of `phone`; `None` when it is not a business.
    async fn business_profile(&self, phone: &PhoneNumber) -> Result<Option<BusinessProfile>, LinkError>;

    /// The profile picture of the account of `phone` (its `preview`, or the full picture);
    /// `None` when it has none, or does not show it to this account.
    async fn profile_picture(&self, phone: &PhoneNumber, preview: bool) -> Result<Option<ProfilePicture>, LinkError>;

    /// Makes `jpeg` (square, as [`crate::media::profile_picture`] makes it) the account's
    /// profile picture; returns the new picture's id.
    async fn set_profile_picture(&self, jpeg: &[u8]) -> Result<String, LinkError>;

    /// Shows the person of the personal chat `chat` that the account is typing (`typing`), or
    /// stopped (the "typing…" a phone shows while its user writes).
    async fn chat_presence(&self, chat: &Jid, typing: bool) -> Result<(), LinkError>;

    /// Makes `name` the account's push name: the name WhatsApp shows people who have not saved
    /// the number.
    async fn set_push_name(&self, name: &str) -> Result<(), LinkError>;

    /// Shows the account online (`available`) or offline to the people who may see it. WhatsApp
    /// takes this only from an account whose push name it knows: without one it is
    /// [`LinkError::Invalid`].
    async fn set_presence(&self, available: bool) -> Result<(), LinkError>;

    /// Changes the account's own `setting` of the personal chat `chat` (archive, pin, star, delete
    /// for me), as the phone does: a change of the account's synced app state, which its other
    /// devices take too.
    async fn set_chat_setting(&self, chat: &Jid, setting: &ChatSetting) -> Result<(), LinkError>;

    /// Sets the disappearing-messages timer of the personal chat `chat` to `seconds` (one of
    /// [`DISAPPEARING_TIMERS`]; 0 turns it off): a message in the chat, which both people's
    /// phones take as the chat's timer from then on.
    async fn set_disappearing(&self, chat: &Jid, seconds: u32) -> Result<(), LinkError>;

    /// Declines the call `call_id` from `caller` that is ringing on the account, as the phone's
    /// "Decline" does. WhatsApp does not answer a rejection: one of a call that has ended, or was
    /// never made, changes nothing.
    async fn reject_call(&self, caller: &Jid, call_id: &str) -> Result<(), LinkError>;

    /// Reacts to message `target` of the personal chat `chat` with `emoji` (an empty one takes
    /// the account's reaction back); returns the reaction's own message id.
    async fn react(&self, chat: &Jid, target: &MessageRef, emoji: &str) -> Result<String, LinkError>;

    /// Deletes the account's own message `id` of the personal chat `chat` for everyone (the
    /// phone's "Delete for everyone").
    async fn revoke(&self, chat: &Jid, id: &str) -> Result<(), LinkError>;

    /// Replaces the text of the account's own message `id` of the personal chat `chat` with
    /// `text` (the phone's "Edit"; WhatsApp allows it for 15 minutes after sending).
    async fn edit(&self, chat: &Jid, id: &str, text: &str) -> Result<(), LinkError>;

    /// Tells the person of the personal chat `chat` that the account read their messages `ids`
    /// (the blue ticks a phone sends when the chat is opened). Returns once the read receipt left.
    async fn mark_read(&self, chat: &Jid, ids: &[String]) -> Result<(), LinkError>;

    /// Unlinks the device from the account and forgets its credentials.
    async fn logout(&self) -> Result<(), LinkError>;

    /// What WhatsApp currently lets the account do with new chats.
    async fn restrictions(&self) -> Result<Restrictions, LinkError>;

    /// Fetches the media a received message carries, decrypted and checked against the hashes
    /// the message gave: [`LinkError::Invalid`] when it is gone from WhatsApp's servers or does
    /// not match (trying again will not help), [`LinkError::Transient`] when the fetch failed.
    async fn download(&self, media: &IncomingMedia) -> Result<Vec<u8>, LinkError>;

    /// Closes the connection but keeps the credentials (hand-off to another worker, shutdown).
    async fn close(&self);
}

/// What a person does on a simulated phone, for demo mode: the simulator implements it so the
/// dashboard can link a device without a real phone.
#[async_trait::async_trait]
pub trait SimulatedPhones: Send + Sync + 'static {
    /// The phone of `phone` scans `qr_code` (the account is created if needed).
    async fn scan_qr(&self, qr_code: &str, phone: &PhoneNumber) -> Result<(), LinkError>;
    /// The phone confirms the pair code `code`.
    async fn confirm_pair_code(&self, code: &str) -> Result<(), LinkError>;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_one_to_one_chats_are_personal() {
        for personal in [
            "60123456789@s.whatsapp.net",
            "60123456789:12@s.whatsapp.net",
            "1234567890@lid",
        ] {
            assert!(Jid(personal.into()).is_personal(), "{personal}");
        }
        for other in [
            "120363@g.us",
            "status@broadcast",
            "1234@broadcast",
            "1203@newsletter",
            "@s.whatsapp.net",
            "nonsense",
        ] {
            assert!(!Jid(other.into()).is_personal(), "{other}");
        }
        assert_eq!(Jid("60123456789:12@s.whatsapp.net".into()).user(), "60123456789");
    }

    #[test]
    fn new_chats_wait_for_a_timelock_or_a_used_up_cap_only() {
        let now = Timestamp(1_800_000_000_000);
        assert_eq!(Restrictions::default().new_chats_blocked(now), None);
        let locked = Restrictions {
            timelocked_until: Some(now.plus_secs(90)),
            new_chat_cap: None,
        };
        let (until, why) = locked.new_chats_blocked(now).expect("blocked");
        assert_eq!(until, now.plus_secs(90));
        assert!(
            why.contains("2027-01-15 08:01:30 UTC") && why.contains("timelock"),
            "{why}"
        );
        assert_eq!(locked.new_chats_blocked(now.plus_secs(90)), None, "over at its end");
        let cap = |used| Restrictions {
            timelocked_until: None,
            new_chat_cap: Some(NewChatCap {
                used,
                total: 10,
                resets_at: Some(now.plus_secs(600)),
            }),
        };
        assert_eq!(cap(9).new_chats_blocked(now), None, "room left");
        let (until, why) = cap(10).new_chats_blocked(now).expect("used up");
        assert_eq!(until, now.plus_secs(600));
        assert!(why.contains("10 of 10"), "{why}");
    }

    #[test]
    fn ack_reports_durability_once() {
        let (ack, mut rx) = Ack::new();
        assert!(rx.try_recv().is_err(), "not yet durable");
        ack.done();
        assert!(rx.try_recv().is_ok());
        let (ack, rx) = Ack::new();
        drop(ack);
        assert!(rx.blocking_recv().is_err(), "a dropped ack means not stored");
    }
}
