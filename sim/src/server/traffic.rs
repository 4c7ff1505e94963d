//! Messages: sends from devices (with receipts and replies), injected incoming messages, acks,
//! number checks and schedules.

use std::sync::Arc;
use std::time::{Duration, Instant};

use rand::Rng;
use wafleet_core::link::{
    ChatSetting, IncomingCall, IncomingMedia, IncomingMessage, Jid, MessageKind, ReceiptKind, Structured,
};
use wafleet_core::types::Timestamp;

use crate::control::{
    ActionRecord, CallRecord, ChatKind, ChatSettingRecord, ChatStateRecord, InjectMedia, InjectMessage, Injected,
    PresenceRecord, ReadRecord, SentRecord,
};
use crate::protocol::{ErrorClass, MediaInfo, ServerFrame};

use super::world::{HEX, World, digits_of, jid_of, message_id, random_string};
use super::{ControlError, Sim};
use crate::ban;

/// A send request of a device.
pub(crate) struct SendRequest {
    /// Request number.
    pub req: u64,
    /// The id the client chose, if any.
    pub id: Option<String>,
    /// Recipient.
    pub to: Jid,
    /// Text or caption.
    pub text: Option<String>,
    /// The file, if any.
    pub media: Option<MediaInfo>,
    /// The contact card, location, link or poll, if it is one.
    pub structured: Option<Structured>,
    /// Marked "Forwarded".
    pub forwarded: bool,
}

impl Sim {
    /// A device sends a message: refused, or recorded and followed by receipts (and maybe a reply).
    pub(crate) fn send(self: &Arc<Self>, conn: u64, request: SendRequest) {
        let mut w = self.lock();
        let fail = |w: &World, class, message: &str| {
            w.push(
                conn,
                &ServerFrame::Error {
                    req: request.req,
                    class,
                    message: message.to_owned(),
                },
            );
        };
        let Some(from) = conn_account(&w, conn) else {
            return fail(&w, ErrorClass::Device, "not connected as a linked device");
        };
        if !request.to.is_personal() {
            return fail(&w, ErrorClass::Invalid, "the simulator only sends to personal chats");
        }
        let to = request.to.user().to_owned();
        let rule = w.numbers.get(&to).cloned().unwrap_or_default();
        if rule.on_whatsapp == Some(false) {
            return fail(&w, ErrorClass::Recipient, &format!("{to} is not on WhatsApp"));
        }
        if rule.refuse_463 == Some(true) {
            return fail(
                &w,
                ErrorClass::Recipient,
                "463 the recipient does not accept messages from this account",
            );
        }
        let text = request.text.filter(|t| !t.is_empty());
        if text.is_none() && request.media.is_none() {
            return fail(&w, ErrorClass::Invalid, "empty message");
        }
        let limits = ban::BanLimits::from(&self.config);
        if let Some(refusal) = ban::refusal(&w.account_mut(&from).reputation, &to, &limits, Instant::now()) {
            let why = match refusal {
                ban::Refusal::Timelocked => "the account may not message new chats now (reach-out timelock)",
                ban::Refusal::Capped => "the account's monthly cap on messages to new chats is used up",
            };
            return fail(&w, ErrorClass::Restricted, &format!("{} {why}", refusal.code()));
        }
        // The client's own id, as WhatsApp clients choose theirs; one of ours when it names none.
        let id = request
            .id
            .filter(|id| !id.is_empty() && id.len() <= 64)
            .unwrap_or_else(message_id);
        let record = SentRecord {
            id: id.clone(),
            to: jid_of(&to),
            kind: match (&request.media, &request.structured) {
                (Some(media), _) => media.kind,
                (None, Some(_)) => MessageKind::Other,
                (None, None) => MessageKind::Text,
            },
            structured: request.structured,
            forwarded: request.forwarded,
            text: text.clone(),
            media_bytes: request.media.as_ref().map(|m| m.bytes),
            mime: request.media.as_ref().map(|m| m.mime.clone()),
            file_name: request.media.and_then(|m| m.file_name),
            at: Timestamp::now(),
        };
        w.counters.sent += 1;
        w.push(
            conn,
            &ServerFrame::Sent {
                req: request.req,
                id: id.clone(),
            },
        );
        let account = w.account_mut(&from);
        account.sent.push(record);
        match ban::record_send(&mut account.reputation, &to, &limits, Instant::now()) {
            ban::Verdict::Fine => {}
            ban::Verdict::Timelocked(reason) => {
                tracing::info!(account = %from, reason, "account timelocked: new chats refused for a while");
            }
            ban::Verdict::Banned(reason) => {
                self.unlink_account(&mut w, &from, &reason, true);
                return;
            }
        }
        drop(w);
        let read = rule.read_probability.unwrap_or(self.config.read_probability);
        let reply = rule.reply_probability.unwrap_or(self.config.reply_probability);
        self.spawn_receipts(from, to, id, text, read, reply);
    }

    /// Delivered after a latency, read after a further delay (by chance), a reply by chance.
    fn spawn_receipts(
        self: &Arc<Self>,
        from: String,
        to: String,
        id: String,
        text: Option<String>,
        read: f64,
        reply: f64,
    ) {
        let sim = Arc::clone(self);
        let (reads, replies) = {
            let mut rng = rand::rng();
            (
                rng.random_bool(read.clamp(0.0, 1.0)),
                rng.random_bool(reply.clamp(0.0, 1.0)),
            )
        };
        tokio::spawn(async move {
            tokio::time::sleep(Duration::from_millis(sim.config.delivered_ms)).await;
            sim.lock()
                .push_receipt(&from, ReceiptKind::Delivered, jid_of(&to), vec![id.clone()]);
            tokio::time::sleep(Duration::from_millis(sim.config.read_ms)).await;
            if reads {
                sim.lock()
                    .push_receipt(&from, ReceiptKind::Read, jid_of(&to), vec![id.clone()]);
            }
            if replies {
                tokio::time::sleep(Duration::from_millis(sim.config.reply_ms)).await;
                let mut w = sim.lock();
                if w.accounts.get(&from).is_some_and(|a| a.banned.is_none()) {
                    let text = format!("Re: {}", text.as_deref().unwrap_or("your picture"));
                    let message = personal_message(&to, MessageKind::Text, Some(text), None);
                    deliver(&mut w, &from, message);
                }
            }
        });
    }

    /// A message from the control API.
    pub(crate) fn inject(&self, request: InjectMessage) -> Result<Injected, ControlError> {
        let to = digits_of(&request.to)
            .ok_or_else(|| ControlError::Invalid(format!("not a phone number: {}", request.to)))?;
        let from = digits_of(&request.from)
            .ok_or_else(|| ControlError::Invalid(format!("not a phone number: {}", request.from)))?;
        let kind = request.kind.unwrap_or(MessageKind::Text);
        let media = self.media_of(kind, request.media)?;
        let mut w = self.lock();
        if !w.accounts.contains_key(&to) {
            return Err(ControlError::NotFound(format!("no account {}", request.to)));
        }
        let mut message = personal_message(&from, kind, request.text, request.push_name);
        if let Some(SentFile { mime, bytes, file_name }) = media {
            let id = random_string(b"0123456789abcdef", 24);
            message.media = Some(IncomingMedia {
                mime: mime.clone(),
                size: bytes.len() as u64,
                file_name,
                locator: format!("http://{}{}", self.addr, super::world::media_path(&id)),
            });
            w.media.insert(id, (mime, bytes));
        }
        message.chat = match request.chat {
            ChatKind::Personal => message.chat,
            ChatKind::Group => Jid(format!("120363{from}@g.us")),
            ChatKind::Broadcast => Jid(format!("{}@broadcast", random_string(b"0123456789", 10))),
            ChatKind::Status => Jid("status@broadcast".into()),
            ChatKind::Newsletter => Jid(format!("120363{from}@newsletter")),
            ChatKind::Lid | ChatKind::LidWithNumber => {
                let lid = Jid::for_lid(&crate::protocol::lid_of(&from));
                if request.chat == ChatKind::LidWithNumber {
                    message.sender_alt = Some(message.sender.clone());
                }
                message.sender = lid.clone();
                lid
            }
        };
        let id = message.id.clone();
        let queued_for = deliver(&mut w, &to, message);
        Ok(Injected { id, queued_for })
    }

    /// The file a message of `kind` carries: `media` as given, or a sample; `None` for kinds
    /// without one.
    fn media_of(&self, kind: MessageKind, media: Option<InjectMedia>) -> Result<Option<SentFile>, ControlError> {
        use base64::Engine as _;
        if !matches!(
            kind,
            MessageKind::Image | MessageKind::Video | MessageKind::Audio | MessageKind::Document | MessageKind::Sticker
        ) {
            return Ok(None);
        }
        let media = media.unwrap_or_default();
        let (sample, sample_mime) = crate::control::sample_media(kind, media.size.unwrap_or(4096));
        let bytes = match &media.data {
            Some(data) => base64::engine::general_purpose::STANDARD
                .decode(data)
                .map_err(|e| ControlError::Invalid(format!("media.data is not base64: {e}")))?,
            None => sample,
        };
        let mime = media.mime.unwrap_or_else(|| sample_mime.to_owned());
        let file_name = media
            .file_name
            .or_else(|| (kind == MessageKind::Document).then(|| "document.pdf".to_owned()));
        Ok(Some(SentFile { mime, bytes, file_name }))
    }

    /// The device of `conn` stored message or receipt `id`.
    pub(crate) fn ack(&self, conn: u64, id: &str) {
        let mut w = self.lock();
        let Some(token) = w.conns.get(&conn).and_then(|c| c.token.clone()) else {
            return;
        };
        let Some(device) = w.devices.get_mut(&token) else {
            return;
        };
        let position = device.pending.iter().position(|m| m.id == id);
        if let Some(at) = position {
            device.pending.remove(at);
        } else if let Some(at) = device.pending_receipts.iter().position(|r| {
            matches!(r, ServerFrame::Receipt { id: rid, .. }
                | ServerFrame::LidMapping { id: rid, .. }
                | ServerFrame::ContactName { id: rid, .. } if rid == id)
        }) {
            device.pending_receipts.remove(at);
            return;
        }
        w.counters.acks += 1;
        if w.flood.is_some() {
            let account = device_account(&w, &token);
            super::flood::on_ack(&mut w, &account, id, position.is_some());
        }
    }

    /// What the account of `conn`'s device may do with new chats now.
    pub(crate) fn restrictions(&self, conn: u64, req: u64) {
        let mut w = self.lock();
        let Some(from) = requester_account(&w, conn, req) else {
            return;
        };
        let limits = ban::BanLimits::from(&self.config);
        let state = w
            .account_mut(&from)
            .reputation
            .restrictions(&limits, Instant::now(), Timestamp::now().millis());
        w.push(conn, &ServerFrame::Restrictions { req, state });
    }

    /// Where the profile picture of the account of `phone` is served (by this simulator), if its
    /// number's rule gives it one.
    pub(crate) fn picture(&self, conn: u64, req: u64, phone: &str, preview: bool) {
        let w = self.lock();
        let picture = digits_of(phone).and_then(|digits| {
            let id = w.numbers.get(&digits)?.profile.picture_id.clone()?;
            let url = format!(
                "http://{}{}",
                self.addr,
                crate::control::profile_picture_path(&digits, &id)
            );
            Some(wafleet_core::link::ProfilePicture { id, url, preview })
        });
        w.push(conn, &ServerFrame::Picture { req, picture });
    }

    /// The business profile of the account of `phone`, as its number's rule gives it.
    pub(crate) fn business_profile(&self, conn: u64, req: u64, phone: &str) {
        let w = self.lock();
        let profile = digits_of(phone).and_then(|digits| w.numbers.get(&digits)?.profile.business.clone());
        w.push(conn, &ServerFrame::BusinessProfile { req, profile });
    }

    /// The device of `conn` makes `jpeg` (base64) its account's profile picture, under a new id.
    pub(crate) fn set_picture(&self, conn: u64, req: u64, jpeg: &str) {
        use base64::Engine;
        let mut w = self.lock();
        let Some(account) = requester_account(&w, conn, req) else {
            return;
        };
        let Ok(bytes) = base64::engine::general_purpose::STANDARD.decode(jpeg) else {
            let frame = ServerFrame::Error {
                req,
                class: ErrorClass::Invalid,
                message: "the picture is not base64".into(),
            };
            return w.push(conn, &frame);
        };
        let rule = w
            .numbers
            .entry(account.clone())
            .or_insert_with(|| crate::control::NumberRule {
                phone: format!("+{account}"),
                ..Default::default()
            });
        let id = crate::control::next_picture_id(rule.profile.picture_id.as_deref());
        rule.profile.picture_id = Some(id.clone());
        w.pictures.insert(account, bytes);
        w.push(conn, &ServerFrame::PictureSet { req, id });
    }

    /// The privacy settings of the account of `conn`'s device: WhatsApp's defaults, with those its
    /// number's rule changes.
    pub(crate) fn privacy(&self, conn: u64, req: u64) {
        let w = self.lock();
        let Some(account) = requester_account(&w, conn, req) else {
            return;
        };
        let profile = w
            .numbers
            .get(&account)
            .map(|rule| rule.profile.clone())
            .unwrap_or_default();
        let settings = profile.privacy_settings();
        w.push(conn, &ServerFrame::Privacy { req, settings });
    }

    /// The device of `conn` sent a read receipt for messages `ids` of `chat`: recorded on its
    /// account, answered once recorded.
    pub(crate) fn read(&self, conn: u64, req: u64, chat: &Jid, ids: Vec<String>) {
        let mut w = self.lock();
        let Some(account) = about_a_chat(&w, conn, req, chat) else {
            return;
        };
        if ids.is_empty() {
            let message = "a read receipt names the messages read".into();
            let class = ErrorClass::Invalid;
            return w.push(conn, &ServerFrame::Error { req, class, message });
        }
        let at = Timestamp::now();
        let records = ids.into_iter().map(|id| ReadRecord {
            chat: chat.clone(),
            id,
            at,
        });
        w.account_mut(&account).read.extend(records);
        w.push(conn, &ServerFrame::Done { req });
    }

    /// The device of `conn` shows (`typing`) or stops showing that its account is typing in
    /// `chat`: recorded on its account, answered once recorded.
    pub(crate) fn chat_presence(&self, conn: u64, req: u64, chat: &Jid, typing: bool) {
        let mut w = self.lock();
        let Some(account) = about_a_chat(&w, conn, req, chat) else {
            return;
        };
        let record = ChatStateRecord {
            chat: chat.clone(),
            typing,
            at: Timestamp::now(),
        };
        w.account_mut(&account).chat_states.push(record);
        w.push(conn, &ServerFrame::Done { req });
    }

    /// The device of `conn` makes `name` its account's push name: kept, recorded, answered.
    pub(crate) fn push_name(&self, conn: u64, req: u64, name: &str) {
        let mut w = self.lock();
        let Some(account) = requester_account(&w, conn, req) else {
            return;
        };
        let account = w.account_mut(&account);
        account.push_name = Some(name.to_owned());
        account.presences.push(PresenceRecord {
            name: Some(name.to_owned()),
            available: None,
            at: Timestamp::now(),
        });
        w.push(conn, &ServerFrame::Done { req });
    }

    /// The device of `conn` shows its account online (`available`) or offline: recorded with the
    /// account's push name, or refused when it has none (as WhatsApp's clients do not send it).
    pub(crate) fn presence(&self, conn: u64, req: u64, available: bool) {
        let mut w = self.lock();
        let Some(account) = requester_account(&w, conn, req) else {
            return;
        };
        let account = w.account_mut(&account);
        let Some(name) = account.push_name.clone() else {
            let frame = ServerFrame::Error {
                req,
                class: ErrorClass::Invalid,
                message: wafleet_core::link::NO_PUSH_NAME.into(),
            };
            return w.push(conn, &frame);
        };
        account.presences.push(PresenceRecord {
            name: Some(name),
            available: Some(available),
            at: Timestamp::now(),
        });
        w.push(conn, &ServerFrame::Done { req });
    }

    /// `caller` (digits) calls the account of `digits`: the call rings on its connected devices
    /// (one that is not connected misses it). Returns the call's id.
    pub(crate) fn ring(&self, digits: &str, caller: &str, video: bool) -> String {
        let mut w = self.lock();
        let call = IncomingCall {
            id: random_string(HEX, 32),
            from: jid_of(caller),
            name: None,
            platform: Some("android".into()),
            version: Some("2.25.1.7".into()),
            video,
            at: Timestamp::now(),
        };
        let frame = ServerFrame::Call { call: call.clone() };
        for conn in w.account_conns(digits) {
            w.push(conn, &frame);
        }
        let id = call.id.clone();
        w.account_mut(digits).calls.push(CallRecord { call, rejected: false });
        id
    }

    /// The device of `conn` declines call `call_id` from `caller`: marked rejected when it is
    /// one of its account's, answered either way (WhatsApp does not answer a rejection).
    pub(crate) fn reject_call(&self, conn: u64, req: u64, caller: Jid, call_id: String) {
        let mut w = self.lock();
        let Some(account) = requester_account(&w, conn, req) else {
            return;
        };
        let calls = &mut w.account_mut(&account).calls;
        if let Some(record) = calls.iter_mut().find(|r| r.call.id == call_id && r.call.from == caller) {
            record.rejected = true;
        }
        w.push(conn, &ServerFrame::Done { req });
    }

    /// The device of `conn` changes its account's own `setting` of `chat`: recorded, answered.
    pub(crate) fn chat_setting(&self, conn: u64, req: u64, chat: &Jid, setting: ChatSetting) {
        let mut w = self.lock();
        let Some(account) = about_a_chat(&w, conn, req, chat) else {
            return;
        };
        let record = ChatSettingRecord {
            chat: chat.clone(),
            setting,
            at: Timestamp::now(),
        };
        w.account_mut(&account).chat_settings.push(record);
        w.push(conn, &ServerFrame::Done { req });
    }

    /// The device of `conn` sent `action` (a reaction, a deletion for everyone, an edit, a
    /// disappearing-messages timer) in `chat`: recorded on its account under a new id, which the
    /// answer carries. Only the account's own messages can be deleted for everyone or edited.
    pub(crate) fn act(&self, conn: u64, req: u64, chat: &Jid, mut action: ActionRecord) {
        let mut w = self.lock();
        let Some(account) = about_a_chat(&w, conn, req, chat) else {
            return;
        };
        let own = w.account_mut(&account).sent.iter().any(|m| m.id == action.target);
        if ["revoke", "edit"].contains(&action.kind.as_str()) && !own {
            let message = format!("message {} was not sent by this account", action.target);
            let class = ErrorClass::Invalid;
            return w.push(conn, &ServerFrame::Error { req, class, message });
        }
        action.id = message_id();
        let id = action.id.clone();
        w.account_mut(&account).actions.push(action);
        w.push(conn, &ServerFrame::Sent { req, id });
    }

    /// Which numbers have an account.
    pub(crate) fn check(&self, conn: u64, req: u64, phones: &[String]) {
        let w = self.lock();
        let jids = phones
            .iter()
            .map(|phone| {
                let digits = digits_of(phone)?;
                let on = w.numbers.get(&digits).and_then(|r| r.on_whatsapp).unwrap_or(true);
                on.then(|| jid_of(&digits))
            })
            .collect();
        w.push(conn, &ServerFrame::Checked { req, jids });
    }

    /// The profile of the account of `phone`, as its number's rule describes it: the phone
    /// (device 0) and the account's linked devices, numbered from 1 in the order they linked.
    pub(crate) fn user_info(&self, conn: u64, req: u64, phone: &str) {
        let w = self.lock();
        let info = digits_of(phone).and_then(|digits| {
            let rule = w.numbers.get(&digits);
            if !rule.and_then(|r| r.on_whatsapp).unwrap_or(true) {
                return None;
            }
            let linked = w.accounts.get(&digits).map_or(0, |account| {
                account
                    .devices
                    .iter()
                    .filter(|token| w.devices.get(*token).is_some_and(|d| !d.unlinked))
                    .count()
            });
            let mut devices = vec![0];
            devices.extend((1..=linked).map(|n| u16::try_from(n).unwrap_or(u16::MAX)));
            let profile = rule.map(|r| r.profile.clone()).unwrap_or_default();
            Some(wafleet_core::link::UserInfo {
                jid: jid_of(&digits),
                about: profile.about,
                picture_id: profile.picture_id,
                verified_name: profile.business_name,
                devices,
            })
        });
        w.push(conn, &ServerFrame::UserInfo { req, info });
    }

    /// Incoming messages for `to` at a steady rate until the schedule changes or the account goes.
    pub(crate) fn schedule(self: &Arc<Self>, to: &str, per_minute: f64, from: Vec<String>) -> Result<(), ControlError> {
        let mut w = self.lock();
        let account = w
            .accounts
            .get_mut(to)
            .ok_or_else(|| ControlError::NotFound(format!("no account {to}")))?;
        account.schedule_generation += 1;
        let generation = account.schedule_generation;
        let senders: Vec<String> = from.iter().filter_map(|p| digits_of(p)).collect();
        if per_minute <= 0.0 || senders.is_empty() {
            return Ok(());
        }
        let (sim, to) = (Arc::clone(self), to.to_owned());
        tokio::spawn(async move {
            let period = Duration::from_secs_f64(60.0 / per_minute);
            for n in 0u64.. {
                tokio::time::sleep(period).await;
                let mut w = sim.lock();
                if w.closed || w.accounts.get(&to).is_none_or(|a| a.schedule_generation != generation) {
                    break;
                }
                let sender = &senders[(n as usize) % senders.len()];
                let message = personal_message(sender, MessageKind::Text, Some(format!("Scheduled message {n}")), None);
                deliver(&mut w, &to, message);
            }
        });
        Ok(())
    }
}

/// The account of `conn`'s device, for request `req`; `None` once the refusal is answered (the
/// connection is not a linked device's).
fn requester_account(w: &World, conn: u64, req: u64) -> Option<String> {
    let account = conn_account(w, conn);
    if account.is_none() {
        let (class, message) = (ErrorClass::Device, "not connected as a linked device".to_owned());
        w.push(conn, &ServerFrame::Error { req, class, message });
    }
    account
}

/// The account of `conn`'s device, for request `req` about the personal chat `chat`; `None`
/// once the refusal is answered (the device is not linked, or the chat is not a person's).
fn about_a_chat(w: &World, conn: u64, req: u64, chat: &Jid) -> Option<String> {
    let account = requester_account(w, conn, req)?;
    if chat.is_personal() {
        return Some(account);
    }
    let (class, message) = (ErrorClass::Invalid, format!("`{chat}` is not a personal chat"));
    w.push(conn, &ServerFrame::Error { req, class, message });
    None
}

/// The account (digits) of the device connected on `conn`, if one is.
fn conn_account(w: &World, conn: u64) -> Option<String> {
    let token = w.conns.get(&conn)?.token.as_deref()?;
    w.devices.get(token).map(|d| d.account.clone())
}

/// The account (digits) of the device with `token`.
fn device_account(w: &World, token: &str) -> String {
    w.devices.get(token).map(|d| d.account.clone()).unwrap_or_default()
}

/// A new personal-chat message from `from` (digits).
pub(super) fn personal_message(
    from: &str,
    kind: MessageKind,
    text: Option<String>,
    push_name: Option<String>,
) -> IncomingMessage {
    IncomingMessage {
        id: message_id(),
        chat: jid_of(from),
        sender: jid_of(from),
        sender_alt: None,
        from_me: false,
        push_name,
        kind,
        text,
        sent_at: Timestamp::now(),
        history: false,
        media: None,
    }
}

/// A file a person sends in a message.
struct SentFile {
    mime: String,
    bytes: Vec<u8>,
    file_name: Option<String>,
}

/// Queues `message` for every linked device of `to` (digits) and sends it to the connected ones.
pub(super) fn deliver(w: &mut World, to: &str, message: IncomingMessage) -> usize {
    w.counters.injected += 1;
    let Some(account) = w.accounts.get_mut(to) else {
        return 0;
    };
    account.received += 1;
    if message.chat.is_personal() {
        ban::record_incoming(&mut account.reputation, message.sender.user());
    }
    let tokens = account.devices.clone();
    let mut queued = 0;
    for token in tokens {
        let Some(device) = w.devices.get_mut(&token) else {
            continue;
        };
        if device.unlinked {
            continue;
        }
        device.pending.push(message.clone());
        queued += 1;
        if let Some(conn) = device.conn {
            w.push(
                conn,
                &ServerFrame::Message {
                    message: message.clone(),
                },
            );
        }
    }
    queued
}
