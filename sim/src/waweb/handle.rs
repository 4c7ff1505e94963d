//! [`WaWebHandle`]: a running front end, and the hooks through which tests play the phones and
//! the network (scanning codes, writing, unlinking, dropping connections, reading what arrived).

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;
use wa_rs_binary::builder::NodeBuilder;
use wa_rs_binary::node::Node;

use super::model::{self, ConnState, Out};
use super::{HandshakeCounts, Network, SentMessage, chat, nodes, non_personal, pair_code, pairing};
use crate::control::{ChatKind, MediaFile};
use wafleet_core::link::{ChatSetting, Jid, MessageKind};

/// A running front end; stops when dropped or on [`WaWebHandle::stop`].
pub struct WaWebHandle {
    /// Where it listens.
    pub(super) addr: SocketAddr,
    /// The shared state, for the hooks.
    pub(super) net: Arc<Network>,
    /// Ends the accept loop.
    pub(super) stop: Option<oneshot::Sender<()>>,
    /// The accept loop.
    pub(super) task: Option<JoinHandle<()>>,
}

impl WaWebHandle {
    /// The address it listens on.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The WebSocket URL for the real link (`WA_SERVER_URL`).
    pub fn url(&self) -> String {
        format!("ws://{}/ws/chat", self.addr)
    }

    /// The phone of `phone` (digits) scans the QR code `code`; returns the linked device's JID.
    pub fn scan(&self, code: &str, phone: &str) -> anyhow::Result<String> {
        pairing::scan(&mut self.net.lock(), code, phone)
    }

    /// The phone of `phone` (digits) types the pairing code `code` that a companion asking to
    /// be linked to this number shows; returns the linked device's JID once the companion
    /// finished linking. A wrong code links nothing and says so.
    pub async fn enter_code(&self, phone: &str, code: &str) -> anyhow::Result<String> {
        pair_code::enter(&self.net, phone, code).await
    }

    /// Pairing refs the companions currently waiting to be linked were given, newest last.
    pub fn pairing_refs(&self) -> Vec<Vec<String>> {
        self.net
            .lock()
            .conns
            .values()
            .filter_map(|c| match &c.state {
                ConnState::Pairing(pairing) => Some(pairing.refs.clone()),
                ConnState::LoggedIn { .. } => None,
            })
            .collect()
    }

    /// JIDs of the devices logged in now.
    pub fn logged_in(&self) -> Vec<String> {
        let model = self.net.lock();
        let mut jids: Vec<String> = model
            .conns
            .values()
            .filter_map(|c| match &c.state {
                ConnState::LoggedIn { phone, device } => Some(format!("{phone}:{device}@s.whatsapp.net")),
                ConnState::Pairing(_) => None,
            })
            .collect();
        jids.sort();
        jids
    }

    /// Linked, logged-in and pairing counts now, and logins that replaced a live connection.
    pub fn stats(&self) -> crate::control::WaWebStats {
        self.net.lock().stats()
    }

    /// The public key that signs the front end's certificate chain in place of WhatsApp's root.
    /// Clients that check the chain against WhatsApp's key (Baileys) are pointed at this one in
    /// tests, as the Rust client's test builds skip the check.
    pub fn root_key(&self) -> [u8; 32] {
        self.net.identity.root_public
    }

    /// Noise handshakes completed since the start, by pattern (XX, IK, XXfallback).
    pub fn handshakes(&self) -> HandshakeCounts {
        self.net.lock().handshakes
    }

    /// A phone installs WhatsApp: `phone` (digits) gets an account, so checks find it and
    /// messages can be exchanged with it.
    pub fn add_account(&self, phone: &str) {
        self.net.lock().account(phone);
    }

    /// The account of `phone` (digits) shows `profile` to others from now on (the fields it
    /// sets), as usync answers it.
    pub fn set_profile(&self, phone: &str, profile: crate::control::Profile) {
        let mut model = self.net.lock();
        let account = model.account(phone);
        account.profile = account.profile.updated(profile);
    }

    /// When the front end bans an account.
    pub fn ban_limits(&self) -> &crate::ban::BanLimits {
        &self.net.config.ban
    }

    /// Whether the account of `phone` (digits) is banned.
    pub fn is_banned(&self, phone: &str) -> bool {
        super::bans::banned(&self.net.lock(), phone).is_some()
    }

    /// Puts the account of `phone` (digits) under a reach-out timelock for `length`, as a breach
    /// of the ban thresholds does: its messages to new chats are refused with 463 until then.
    pub fn timelock(&self, phone: &str, length: std::time::Duration) {
        self.net
            .lock()
            .account(phone)
            .reputation
            .timelock(std::time::Instant::now(), length);
    }

    /// Applies a new-chat cap of `cap` messages per cycle to the account of `phone` (digits).
    pub fn set_new_chat_cap(&self, phone: &str, cap: u32) {
        self.net.lock().account(phone).reputation.cap_override = Some(cap);
    }

    /// From now on the network refuses messages to `phone` (digits) with a 463 error, as it
    /// does for a new chat without a privacy token.
    pub fn refuse_463(&self, phone: &str) {
        let mut model = self.net.lock();
        model.account(phone);
        model.refuses_463.insert(phone.to_owned());
    }

    /// Messages the linked devices of `phone` (digits) have not acknowledged yet: they are
    /// delivered again on each device's next connection.
    pub fn pending_messages(&self, phone: &str) -> usize {
        self.net.lock().pending_count(phone, model::Class::Message)
    }

    /// Receipts the linked devices of `phone` (digits) have not acknowledged yet.
    pub fn pending_receipts(&self, phone: &str) -> usize {
        self.net.lock().pending_count(phone, model::Class::Receipt)
    }

    /// One-time prekeys the device `jid` uploaded and nobody used yet (`None`: not linked).
    pub fn prekey_count(&self, jid: &str) -> Option<usize> {
        let key = device_key(jid)?;
        Some(self.net.lock().devices.get(&key)?.registration.prekeys.len())
    }

    /// Keepalive pings the logged-in device `jid` sent on its current connection.
    pub fn pings_from(&self, jid: &str) -> u32 {
        let model = self.net.lock();
        device_key(jid)
            .and_then(|(phone, device)| model.conn_of(&phone, device))
            .and_then(|id| model.conns.get(&id))
            .map_or(0, |c| c.pings)
    }

    /// The server pings the logged-in device `jid` and waits for its answer (`urn:xmpp:ping`).
    pub async fn ping(&self, jid: &str, timeout: Duration) -> anyhow::Result<()> {
        let (tx, rx) = oneshot::channel();
        {
            let mut model = self.net.lock();
            let (phone, device) = device_key(jid).context("not a device JID")?;
            let conn = model.conn_of(&phone, device).context("the device is not connected")?;
            let id = model.iq_id();
            model.waiters.insert(id.clone(), tx);
            let ping = nodes::iq(id, "get", "urn:xmpp:ping")
                .children([wa_rs_binary::builder::NodeBuilder::new("ping").build()])
                .build();
            model.send(conn, ping);
        }
        let answer = tokio::time::timeout(timeout, rx)
            .await
            .context("no answer to the ping")?
            .context("the connection closed")?;
        anyhow::ensure!(
            nodes::attr(&answer, "type").as_deref() == Some("result"),
            "the ping was answered with an error"
        );
        Ok(())
    }

    /// The phone of `from` sends `text` to every linked device of `to` (digits); returns the
    /// message id. Devices that are offline get it when they are back, and each device gets it
    /// again on every connection until it acknowledges it.
    pub async fn send_text(&self, from: &str, to: &str, text: &str) -> anyhow::Result<String> {
        let message = wa_rs_proto::whatsapp::Message {
            conversation: Some(text.to_owned()),
            ..Default::default()
        };
        chat::phone_sends(&self.net, from, to, message).await
    }

    /// The phone of `from` writes `text` in a chat of kind `chat` (a group, a broadcast list, a
    /// status update, a newsletter; or a personal chat, addressed by number or by LID) that the
    /// account of `to` is in; every linked device of `to` gets it as WhatsApp sends it. Returns
    /// the message id.
    pub async fn send_in(&self, chat: ChatKind, from: &str, to: &str, text: &str) -> anyhow::Result<String> {
        non_personal::phone_writes_in(&self.net, chat, from, to, text).await
    }

    /// The phone of `phone` (digits) saves `name` for `contact` (digits) in its address book,
    /// or removes the contact when `name` is empty; its companions get the change through app
    /// state sync (at once when online, else when they next sync).
    pub fn save_contact(&self, phone: &str, contact: &str, name: &str) -> anyhow::Result<()> {
        super::contacts::save(&mut self.net.lock(), phone, contact, name)
    }

    /// WhatsApp tells the linked devices of `phone` (digits) which number the LID of `contact`
    /// (digits) stands for, as a history sync chunk of the phone does.
    pub async fn reveal_number(&self, phone: &str, contact: &str) -> anyhow::Result<()> {
        super::history::reveal(&self.net, phone, contact).await
    }

    /// How the linked devices answered message `id` from a phone: `Some(true)` once one took it
    /// (decrypted it, or for plaintext acknowledged it), `Some(false)` when one could not
    /// decrypt it or refused it, `None` before any answered.
    pub fn answer(&self, id: &str) -> Option<bool> {
        self.net.lock().answers.get(id).copied()
    }

    /// The phone of `from` sends an image (uploaded to the media host, encrypted as WhatsApp
    /// does) with `caption` to every linked device of `to`; returns the message id.
    pub async fn send_image(&self, from: &str, to: &str, image: &[u8], caption: &str) -> anyhow::Result<String> {
        let file = MediaFile {
            bytes: image,
            mime: "image/jpeg",
            caption: Some(caption),
            file_name: None,
        };
        self.send_media(from, to, MessageKind::Image, &file).await
    }

    /// The phone of `from` sends `file` as a message of `kind` (a picture, video, voice note,
    /// document or sticker: uploaded to the media host, encrypted as WhatsApp does) to every
    /// linked device of `to`; returns the message id.
    pub async fn send_media(
        &self,
        from: &str,
        to: &str,
        kind: MessageKind,
        file: &MediaFile<'_>,
    ) -> anyhow::Result<String> {
        use wa_rs_proto::whatsapp::message as m;
        let encrypted = wa_rs_core::upload::encrypt_media(file.bytes, media_type(kind)?)?;
        let direct_path = self.net.media.put(encrypted.data_to_upload);
        let url = Some(format!("https://{}{direct_path}", self.net.media.host()));
        let (direct_path, mimetype) = (Some(direct_path), Some(file.mime.to_owned()));
        let media_key = Some(encrypted.media_key.to_vec());
        let file_sha256 = Some(encrypted.file_sha256.to_vec());
        let file_enc_sha256 = Some(encrypted.file_enc_sha256.to_vec());
        let file_length = Some(file.bytes.len() as u64);
        let caption = file.caption.map(str::to_owned);
        // Every kind's message has these fields (and a caption where the kind has one).
        macro_rules! media {
            ($kind:ident $(, $extra:ident)*) => {
                Some(Box::new(m::$kind {
                    url,
                    direct_path,
                    mimetype,
                    media_key,
                    file_sha256,
                    file_enc_sha256,
                    file_length,
                    $($extra,)*
                    ..Default::default()
                }))
            };
        }
        let mut message = wa_rs_proto::whatsapp::Message::default();
        match kind {
            MessageKind::Image => message.image_message = media!(ImageMessage, caption),
            MessageKind::Video => message.video_message = media!(VideoMessage, caption),
            MessageKind::Audio => message.audio_message = media!(AudioMessage),
            MessageKind::Document => {
                let file_name = file.file_name.map(str::to_owned);
                message.document_message = media!(DocumentMessage, caption, file_name);
            }
            _ => message.sticker_message = media!(StickerMessage),
        }
        chat::phone_sends(&self.net, from, to, message).await
    }

    /// The file of a sent picture, video, audio, document or sticker, fetched from the media host
    /// and decrypted with the message's media key, as the recipient's phone would.
    pub fn media_bytes(&self, message: &SentMessage) -> anyhow::Result<Vec<u8>> {
        let file = message.media.as_ref().context("not a message with a file")?;
        let path = file.direct_path.as_deref().context("no direct path")?;
        let blob = self
            .net
            .media
            .get(path)
            .context("nothing uploaded at the direct path")?;
        wa_rs_core::download::DownloadUtils::verify_and_decrypt(
            &blob,
            file.media_key.as_deref().context("no media key")?,
            media_type(file.kind)?,
        )
    }

    /// What the linked devices of `phone` sent to phones, oldest first.
    pub fn sent(&self, phone: &str) -> Vec<SentMessage> {
        self.net
            .lock()
            .sent
            .iter()
            .filter(|m| m.from == phone)
            .cloned()
            .collect()
    }

    /// The messages the linked devices of `phone` sent a read receipt for, oldest first.
    pub fn read_by(&self, phone: &str) -> Vec<String> {
        let model = self.net.lock();
        model
            .receipts
            .iter()
            .filter(|(p, _, kind)| p == phone && kind == "read")
            .map(|(_, id, _)| id.clone())
            .collect()
    }

    /// `from` (digits) calls `phone` (digits): a voice (or `video`) call's offer, as WhatsApp's
    /// servers relay it, rings on every logged-in device of the account. Returns the call's id.
    pub fn call(&self, phone: &str, from: &str, video: bool) -> String {
        let mut model = self.net.lock();
        let call_id: String = {
            use rand::Rng;
            let bytes: [u8; 16] = rand::rng().random();
            bytes.iter().map(|b| format!("{b:02X}")).collect()
        };
        let caller = format!("{from}@s.whatsapp.net");
        let mut offer = NodeBuilder::new("offer")
            .attr("call-id", call_id.as_str())
            .attr("call-creator", caller.as_str());
        let mut media = vec![
            NodeBuilder::new("audio")
                .attr("enc", "opus")
                .attr("rate", "16000")
                .build(),
            NodeBuilder::new("audio")
                .attr("enc", "opus")
                .attr("rate", "8000")
                .build(),
        ];
        if video {
            media.push(NodeBuilder::new("video").build());
        }
        offer = offer.children(media);
        let stanza = NodeBuilder::new("call")
            .attr("from", caller.as_str())
            .attr("id", model.iq_id())
            .attr("t", nodes::now_secs().to_string())
            .attr("platform", "android")
            .attr("version", "2.25.1.7")
            .children([offer.build()])
            .build();
        for conn in model.logged_in_conns(phone) {
            model.send(conn, stanza.clone());
        }
        call_id
    }

    /// The calls the linked devices of `phone` declined, oldest first: (the call's id, the
    /// caller's JID as the rejection named it).
    pub fn rejected_calls(&self, phone: &str) -> Vec<(String, String)> {
        let model = self.net.lock();
        model
            .rejected_calls
            .iter()
            .filter(|(p, _, _)| p == phone)
            .map(|(_, id, caller)| (id.clone(), caller.clone()))
            .collect()
    }

    /// The settings of their own view of chats the linked devices of `phone` changed (archive,
    /// pin, star, delete for me), oldest first.
    pub fn chat_settings(&self, phone: &str) -> Vec<(Jid, ChatSetting)> {
        let model = self.net.lock();
        model
            .chat_settings
            .iter()
            .filter(|(p, _, _)| p == phone)
            .map(|(_, chat, setting)| (chat.clone(), setting.clone()))
            .collect()
    }

    /// The push names and presences the linked devices of `phone` sent, oldest first: (the name
    /// announced, online or offline; `None` for a push name alone).
    pub fn presences(&self, phone: &str) -> Vec<(Option<String>, Option<bool>)> {
        let model = self.net.lock();
        model
            .presences
            .iter()
            .filter(|(p, _, _)| p == phone)
            .map(|(_, name, available)| (name.clone(), *available))
            .collect()
    }

    /// The typing indicators the linked devices of `phone` showed, oldest first: (the chat,
    /// typing or stopped).
    pub fn chat_states(&self, phone: &str) -> Vec<(String, bool)> {
        let model = self.net.lock();
        model
            .chat_states
            .iter()
            .filter(|(p, _, _)| p == phone)
            .map(|(_, chat, typing)| (chat.clone(), *typing))
            .collect()
    }

    /// Receipts linked devices sent for message `id`: their types (`delivery`, `read`, …).
    pub fn receipts_for(&self, id: &str) -> Vec<String> {
        let model = self.net.lock();
        model
            .receipts
            .iter()
            .filter(|(_, i, _)| i == id)
            .map(|(_, _, k)| k.clone())
            .collect()
    }

    /// The phone of `phone` unlinks all its devices (Linked devices → Log out): connected ones
    /// are told at once (`device_removed`), the others are refused when they next log in.
    /// Returns how many were linked.
    pub fn logout(&self, phone: &str) -> usize {
        let mut model = self.net.lock();
        let devices: Vec<(String, u16)> = model.devices.keys().filter(|(p, _)| p == phone).cloned().collect();
        for key in &devices {
            model.devices.remove(key);
            model.pending.remove(key);
            if let Some(conn) = model.conn_of(&key.0, key.1)
                && let Some(c) = model.conns.remove(&conn)
            {
                let _ = c.tx.send(Out::Last(nodes::conflict("device_removed")));
            }
        }
        devices.len()
    }

    /// Drops the connections of the logged-in devices of `phone` (digits) without a word, as a
    /// network failure would. Returns how many there were.
    pub fn drop_connections(&self, phone: &str) -> usize {
        let mut model = self.net.lock();
        let before = model.conns.len();
        // Dropping a connection's sender ends its task, which closes the socket.
        model
            .conns
            .retain(|_, c| !matches!(&c.state, ConnState::LoggedIn { phone: p, .. } if p == phone));
        before - model.conns.len()
    }

    /// Ends the connection of the logged-in device `jid` as replaced by another connection of
    /// the same device (`conflict type=replaced`). Returns whether it was connected.
    pub fn replace(&self, jid: &str) -> bool {
        self.end_stream(jid, nodes::conflict("replaced"))
    }

    /// Ends the connection of the logged-in device `jid` with `<stream:error code=…>` (503:
    /// service unavailable, 515: restart, others: errors). Returns whether it was connected.
    pub fn stream_error(&self, jid: &str, code: &str) -> bool {
        self.end_stream(jid, nodes::stream_error(code))
    }

    fn end_stream(&self, jid: &str, last: Node) -> bool {
        let mut model = self.net.lock();
        let Some(conn) = device_key(jid).and_then(|(phone, device)| model.conn_of(&phone, device)) else {
            return false;
        };
        model
            .conns
            .remove(&conn)
            .is_some_and(|c| c.tx.send(Out::Last(last)).is_ok())
    }

    /// Whether `jid` is a linked device.
    pub fn is_linked(&self, jid: &str) -> bool {
        device_key(jid).is_some_and(|key| self.net.lock().devices.contains_key(&key))
    }

    /// Stops listening and drops every connection.
    pub async fn stop(mut self) {
        self.shut();
        if let Some(task) = self.task.take() {
            let _ = task.await;
        }
    }

    fn shut(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        // Dropping the senders ends every connection's task.
        self.net.lock().conns.clear();
    }
}

impl Drop for WaWebHandle {
    fn drop(&mut self) {
        self.shut();
    }
}

/// (number, device id) of a device JID such as `60123456789:3@s.whatsapp.net`.
fn device_key(jid: &str) -> Option<(String, u16)> {
    let user = jid.split('@').next()?;
    let (phone, device) = user.split_once(':').unwrap_or((user, "0"));
    Some((phone.to_owned(), device.parse().ok()?))
}

/// The media type a file of a message of `kind` is encrypted for (its keys are derived for it).
fn media_type(kind: MessageKind) -> anyhow::Result<wa_rs_core::download::MediaType> {
    use wa_rs_core::download::MediaType;
    Ok(match kind {
        MessageKind::Image => MediaType::Image,
        MessageKind::Video => MediaType::Video,
        MessageKind::Audio => MediaType::Audio,
        MessageKind::Document => MediaType::Document,
        MessageKind::Sticker => MediaType::Sticker,
        other => anyhow::bail!("a message of kind {other:?} carries no file"),
    })
}
