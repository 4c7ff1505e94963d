//! [`WaSession`]: one device's live WhatsApp client.

use std::collections::HashSet;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use wafleet_core::link::{
    BusinessCategory, BusinessHours, BusinessProfile, ChatSetting, Content, IncomingMedia, Jid, LinkError, LinkEvent,
    MessageKind, MessageRef, NumberCheck, Outgoing, OutgoingMedia, PrivacySettings, ProfilePicture, Restrictions,
    Session, Structured, UserInfo,
};
use wafleet_core::sync;
use wafleet_core::types::{DeviceId, PhoneNumber};
use whatsapp_rust::Client;
use whatsapp_rust::Jid as WaJid;
use whatsapp_rust::bot::BotHandle;
use whatsapp_rust::media::{
    AudioOptions, DocumentOptions, ImageOptions, VideoOptions, audio_message, document_message, image_message,
    video_message,
};
use whatsapp_rust::send::{RevokeType, SendOptions};
use whatsapp_rust::upload::UploadOptions;
use whatsapp_rust::wacore::iq::devices::RemoveCompanionDeviceSpec;
use whatsapp_rust::waproto::whatsapp as wa;

use super::acks::SendAcks;
use super::errors::{classify_iq, classify_nack, classify_send};
use crate::WaStore;

/// How long the unlink request may take before logout reports a transient failure.
const LOGOUT_TIMEOUT: Duration = Duration::from_secs(20);
/// How long a close may take before the client's task is aborted.
const DISCONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// How long a sent message waits for WhatsApp's acknowledgement before it is reported as
/// unconfirmed (it may or may not have arrived; it is never sent again).
const ACK_TIMEOUT: Duration = Duration::from_secs(20);

/// One device's session. Dropping it without [`Session::close`] stops its tasks.
pub struct WaSession {
    /// The device, for logs.
    device: DeviceId,
    /// The device's WhatsApp state.
    store: WaStore,
    /// The client.
    client: Arc<Client>,
    /// Ordered events, until taken.
    events: Option<mpsc::Receiver<LinkEvent>>,
    /// The client's run loop; dropping it aborts the client.
    bot: Mutex<Option<BotHandle>>,
    /// Moves events to the session's channel.
    pump: Mutex<Option<JoinHandle<()>>>,
    /// Sends waiting for WhatsApp's answer.
    acks: SendAcks,
    /// Numbers WhatsApp confirmed during this session, so that only the first send to each
    /// pays for the check.
    registered: Mutex<HashSet<String>>,
}

impl WaSession {
    pub(crate) fn new(
        device: DeviceId,
        store: WaStore,
        bot: BotHandle,
        events: mpsc::Receiver<LinkEvent>,
        pump: JoinHandle<()>,
        acks: SendAcks,
    ) -> WaSession {
        WaSession {
            device,
            store,
            client: bot.client(),
            events: Some(events),
            bot: Mutex::new(Some(bot)),
            pump: Mutex::new(Some(pump)),
            acks,
            registered: Mutex::new(HashSet::new()),
        }
    }

    /// Fails unless the client is logged in, so that sends say why instead of timing out: as
    /// the device's problem once it was logged out (its store is retired then), as a passing
    /// one while it connects.
    fn ready(&self) -> Result<(), LinkError> {
        if self.store.is_retired() {
            Err(LinkError::Device("the device was logged out: link it again".into()))
        } else if self.client.is_logged_in() {
            Ok(())
        } else {
            Err(LinkError::Transient(
                "the session is not connected to WhatsApp yet".into(),
            ))
        }
    }

    /// Disconnects (the client flushes what it holds: the device, buffered receipts, its Signal
    /// cache), stops the client's tasks, and retires the store so that nothing this session
    /// still holds can write after the device's next session has started.
    async fn shut_down(&self) {
        if tokio::time::timeout(DISCONNECT_TIMEOUT, self.client.disconnect())
            .await
            .is_err()
        {
            tracing::warn!(device = %self.device, timeout = ?DISCONNECT_TIMEOUT, "the disconnect did not finish; aborting the client");
        }
        self.stop_tasks();
        self.store.retire().await;
    }

    fn stop_tasks(&self) {
        if let Some(bot) = sync::lock(&self.bot).take() {
            bot.abort();
        }
        if let Some(pump) = sync::lock(&self.pump).take() {
            pump.abort();
        }
    }

    /// Fails with [`LinkError::Recipient`] when `to` (a phone-number JID) has no WhatsApp account:
    /// the client sends to such a number without complaint (the stanza reaches nobody), so the
    /// number is checked first, once per session.
    async fn ensure_registered(&self, to: &WaJid) -> Result<(), LinkError> {
        if !to.is_pn() {
            return Ok(());
        }
        let user = to.user.to_string();
        let known = sync::lock(&self.registered).contains(&user);
        if known {
            return Ok(());
        }
        if self
            .registered_users(std::slice::from_ref(&user))
            .await?
            .contains(&user)
        {
            sync::lock(&self.registered).insert(user);
            Ok(())
        } else {
            Err(LinkError::Recipient(format!("{user} is not on WhatsApp")))
        }
    }

    /// Which of the numbers (digits) WhatsApp says have an account.
    async fn registered_users(&self, digits: &[String]) -> Result<HashSet<String>, LinkError> {
        let jids: Vec<WaJid> = digits.iter().map(|d| WaJid::pn(d.as_str())).collect();
        let results = self
            .client
            .contacts()
            .is_on_whatsapp(&jids)
            .await
            .map_err(|e| LinkError::Transient(format!("checking numbers: {e}")))?;
        Ok(results
            .into_iter()
            .filter(|r| r.is_registered)
            .filter_map(|r| {
                // A number's answer may name its LID first and the number beside it.
                let pn = r.pn_jid.filter(WaJid::is_pn).or(Some(r.jid).filter(WaJid::is_pn))?;
                Some(pn.user.to_string())
            })
            .collect())
    }

    /// The message to send for `content`, its media uploaded first.
    async fn message_for(&self, content: &Content) -> Result<wa::Message, LinkError> {
        match content {
            Content::Text(text) if text.trim().is_empty() => Err(LinkError::Invalid("empty text".into())),
            Content::Text(text) => Ok(wa::Message {
                conversation: Some(text.clone()),
                ..Default::default()
            }),
            Content::Media(media) => self.media(media).await,
            Content::Structured(structured) => structured_message(structured),
        }
    }

    /// The message for a file: uploaded (encrypted, as WhatsApp does) for its kind, then the
    /// kind's message pointing at it.
    async fn media(&self, media: &OutgoingMedia) -> Result<wa::Message, LinkError> {
        let file = &media.file;
        let media_type = super::received::media_type(file.kind.as_str()).filter(|_| !file.bytes.is_empty());
        let Some(media_type) = media_type else {
            return Err(LinkError::Invalid(format!(
                "not a file to send: {} bytes as {}",
                file.bytes.len(),
                file.kind.as_str()
            )));
        };
        let upload = self
            .client
            .upload(file.bytes.clone(), media_type, UploadOptions::default())
            .await
            .map_err(|e| LinkError::Transient(format!("uploading the {}: {e:#}", file.kind.as_str())))?;
        let (caption, mimetype) = (media.caption.clone(), Some(file.mime.clone()));
        Ok(match file.kind {
            MessageKind::Video => video_message(
                upload,
                VideoOptions {
                    caption,
                    mimetype,
                    ..VideoOptions::default()
                },
            ),
            MessageKind::Audio => audio_message(
                upload,
                AudioOptions {
                    mimetype,
                    ..AudioOptions::default()
                },
            ),
            MessageKind::Document => document_message(
                upload,
                DocumentOptions {
                    mimetype,
                    file_name: file.file_name.clone(),
                    title: file.file_name.clone(),
                    caption,
                    ..DocumentOptions::default()
                },
            ),
            // No builder for stickers: the same fields as the others, without a caption.
            MessageKind::Sticker => wa::Message {
                sticker_message: whatsapp_rust::buffa::MessageField::some(wa::message::StickerMessage {
                    url: Some(upload.url),
                    direct_path: Some(upload.direct_path),
                    media_key: Some(upload.media_key.to_vec()),
                    file_sha256: Some(upload.file_sha256.to_vec()),
                    file_enc_sha256: Some(upload.file_enc_sha256.to_vec()),
                    file_length: Some(upload.file_length),
                    media_key_timestamp: Some(upload.media_key_timestamp),
                    mimetype,
                    ..Default::default()
                }),
                ..Default::default()
            },
            _ => image_message(
                upload,
                ImageOptions {
                    caption,
                    mimetype,
                    ..ImageOptions::default()
                },
            ),
        })
    }
}

/// Marks `message` "Forwarded" as WhatsApp's apps do: its content's context says it was
/// forwarded, once. A plain text becomes an extended text, the kind that has a context.
fn mark_forwarded(message: &mut wa::Message) {
    use whatsapp_rust::buffa::MessageField;
    if let Some(text) = message.conversation.take() {
        message.extended_text_message = MessageField::some(wa::message::ExtendedTextMessage {
            text: Some(text),
            ..Default::default()
        });
    }
    let forwarded = || {
        MessageField::some(wa::ContextInfo {
            is_forwarded: Some(true),
            forwarding_score: Some(1),
            ..Default::default()
        })
    };
    macro_rules! mark {
        ($($field:ident),*) => {
            $(if let Some(inner) = message.$field.as_option_mut() {
                inner.context_info = forwarded();
            })*
        };
    }
    mark!(
        extended_text_message,
        image_message,
        video_message,
        audio_message,
        document_message,
        sticker_message,
        contact_message,
        location_message
    );
}

/// The message for a contact card, location, link or poll, as WhatsApp's apps build them.
fn structured_message(structured: &Structured) -> Result<wa::Message, LinkError> {
    use whatsapp_rust::buffa::MessageField;
    let mut message = wa::Message::default();
    match structured {
        Structured::Contact { name, phone } => {
            message.contact_message = MessageField::some(wa::message::ContactMessage {
                display_name: Some(name.clone()),
                vcard: Some(Structured::vcard(name, phone)),
                ..Default::default()
            });
        }
        Structured::Location { latitude, longitude } => {
            message.location_message = MessageField::some(wa::message::LocationMessage {
                degrees_latitude: Some(*latitude),
                degrees_longitude: Some(*longitude),
                ..Default::default()
            });
        }
        Structured::Link { url, .. } => {
            message.extended_text_message = MessageField::some(wa::message::ExtendedTextMessage {
                text: Some(structured.summary()),
                matched_text: Some(url.clone()),
                ..Default::default()
            });
        }
        Structured::Poll {
            question,
            options,
            selectable,
        } => {
            if options.len() < 2 || *selectable < 1 || *selectable as usize > options.len() {
                return Err(LinkError::Invalid(format!(
                    "a poll needs 2 or more options and 1 to {} selectable",
                    options.len()
                )));
            }
            let poll = wa::message::PollCreationMessage {
                name: Some(question.clone()),
                options: options
                    .iter()
                    .map(|name| wa::message::poll_creation_message::Option {
                        option_name: Some(name.clone()),
                        option_hash: None,
                    })
                    .collect(),
                selectable_options_count: Some(*selectable),
                ..Default::default()
            };
            // As WhatsApp Web: version 3 for a single choice, the first for several.
            if *selectable == 1 {
                message.poll_creation_message_v3 = MessageField::some(poll);
            } else {
                message.poll_creation_message = MessageField::some(poll);
            }
            // Voters derive the key of their encrypted votes from this secret.
            let secret: [u8; 32] = rand::random();
            message.message_context_info = MessageField::some(wa::MessageContextInfo {
                message_secret: Some(secret.to_vec()),
                ..Default::default()
            });
        }
    }
    Ok(message)
}

impl Drop for WaSession {
    fn drop(&mut self) {
        self.stop_tasks();
    }
}

/// A personal chat's JID in the client's type.
fn recipient(to: &Jid) -> Result<WaJid, LinkError> {
    if !to.is_personal() {
        return Err(LinkError::Invalid(format!("`{to}` is not a personal chat")));
    }
    to.0.parse()
        .map_err(|e| LinkError::Invalid(format!("`{to}` is not a JID: {e}")))
}

#[async_trait]
impl Session for WaSession {
    fn take_events(&mut self) -> Option<mpsc::Receiver<LinkEvent>> {
        self.events.take()
    }

    /// Sends under `message.id` and waits for WhatsApp's acknowledgement: a refusal (463 and the
    /// like) fails the send; no answer in time reports it as unconfirmed, never as sent.
    #[tracing::instrument(skip_all, fields(device = %self.device, to = %message.to, id = %message.id))]
    async fn send(&self, message: &Outgoing) -> Result<String, LinkError> {
        let to = recipient(&message.to)?;
        let mut body = self.message_for(&message.content).await?;
        if message.forwarded {
            mark_forwarded(&mut body);
        }
        self.ready()?;
        self.ensure_registered(&to).await?;
        let answer = self.acks.wait_for(&message.id);
        self.client
            .send_message_with_options(to, body, SendOptions::default().with_message_id(message.id.clone()))
            .await
            .map_err(|e| classify_send("sending", &e))?;
        match answer.answer(ACK_TIMEOUT).await {
            Some(None) => Ok(message.id.clone()),
            Some(Some(code)) => {
                Err(super::restrictions::explain_refusal(&self.client, &code, classify_nack(&code)).await)
            }
            None => Err(LinkError::Unconfirmed(format!(
                "WhatsApp did not acknowledge the message within {ACK_TIMEOUT:?}"
            ))),
        }
    }

    #[tracing::instrument(skip_all, fields(device = %self.device, count = phones.len()))]
    async fn check_numbers(&self, phones: &[PhoneNumber]) -> Result<Vec<NumberCheck>, LinkError> {
        if phones.is_empty() {
            return Ok(Vec::new());
        }
        self.ready()?;
        let digits: Vec<String> = phones.iter().map(|p| p.digits().to_owned()).collect();
        let found = self.registered_users(&digits).await?;
        Ok(phones
            .iter()
            .map(|phone| NumberCheck {
                phone: phone.clone(),
                jid: found.contains(phone.digits()).then(|| Jid::for_phone(phone)),
            })
            .collect())
    }

    /// Asks whether the number is on WhatsApp first: a usync profile query answers for numbers
    /// without an account too, with nothing in it.
    #[tracing::instrument(skip_all, fields(device = %self.device))]
    async fn user_info(&self, phone: &PhoneNumber) -> Result<Option<UserInfo>, LinkError> {
        self.ready()?;
        let digits = phone.digits().to_owned();
        if !self
            .registered_users(std::slice::from_ref(&digits))
            .await?
            .contains(&digits)
        {
            return Ok(None);
        }
        let jid = WaJid::pn(digits.as_str());
        let mut answers = self
            .client
            .contacts()
            .get_user_info(std::slice::from_ref(&jid))
            .await
            .map_err(|e| LinkError::Transient(format!("reading the profile: {e}")))?;
        // Answered under the number's JID, or (as WhatsApp may) its LID.
        let answer = answers.remove(&jid).or_else(|| answers.into_values().next());
        Ok(Some(UserInfo {
            jid: Jid::for_phone(phone),
            about: answer.as_ref().and_then(|a| a.status.clone()).filter(|s| !s.is_empty()),
            picture_id: answer.as_ref().and_then(|a| a.picture_id.clone()),
            verified_name: answer.as_ref().and_then(|a| a.verified_name.as_ref()?.name.clone()),
            devices: answer.map(|a| a.devices).unwrap_or_default(),
        }))
    }

    #[tracing::instrument(skip_all, fields(device = %self.device, preview))]
    async fn profile_picture(&self, phone: &PhoneNumber, preview: bool) -> Result<Option<ProfilePicture>, LinkError> {
        self.ready()?;
        let jid = WaJid::pn(phone.digits());
        let picture = self
            .client
            .contacts()
            .get_profile_picture(&jid, preview)
            .await
            .map_err(|e| LinkError::Transient(format!("reading the profile picture: {e}")))?;
        Ok(picture.map(|picture| ProfilePicture {
            id: picture.id,
            url: picture.url,
            preview,
        }))
    }

    #[tracing::instrument(skip_all, fields(device = %self.device, bytes = jpeg.len()))]
    async fn set_profile_picture(&self, jpeg: &[u8]) -> Result<String, LinkError> {
        if jpeg.is_empty() {
            return Err(LinkError::Invalid("empty picture".into()));
        }
        self.ready()?;
        self.client
            .profile()
            .set_profile_picture(jpeg.to_vec())
            .await
            .map(|set| set.id)
            .map_err(|e| LinkError::Transient(format!("setting the profile picture: {e}")))
    }

    #[tracing::instrument(skip_all, fields(device = %self.device))]
    async fn business_profile(&self, phone: &PhoneNumber) -> Result<Option<BusinessProfile>, LinkError> {
        self.ready()?;
        let jid = WaJid::pn(phone.digits());
        let profile = self
            .client
            .get_business_profile(&jid)
            .await
            .map_err(|e| classify_iq(format!("reading the business profile: {e}"), &e))?;
        Ok(profile.map(|profile| BusinessProfile {
            description: profile.description,
            email: profile.email,
            address: profile.address,
            websites: profile.website,
            categories: profile
                .categories
                .into_iter()
                .map(|category| BusinessCategory {
                    id: category.id,
                    name: category.name,
                })
                .collect(),
            hours_timezone: profile.business_hours.timezone,
            hours: profile
                .business_hours
                .business_config
                .unwrap_or_default()
                .into_iter()
                .map(|day| BusinessHours {
                    day: day.day_of_week.as_str().to_owned(),
                    mode: day.mode.as_str().to_owned(),
                    open_minute: day.open_time,
                    close_minute: day.close_time,
                })
                .collect(),
        }))
    }

    #[tracing::instrument(skip_all, fields(device = %self.device))]
    async fn privacy(&self) -> Result<PrivacySettings, LinkError> {
        self.ready()?;
        let answer = self
            .client
            .fetch_privacy_settings()
            .await
            .map_err(|e| classify_iq(format!("reading the privacy settings: {e}"), &e))?;
        Ok(answer
            .settings
            .into_iter()
            .map(|setting| (setting.category.as_str().to_owned(), setting.value.as_str().to_owned()))
            .collect())
    }

    /// Sends a reaction message (its key names the target and whether the account wrote it), as
    /// WhatsApp Web does.
    #[tracing::instrument(skip_all, fields(device = %self.device, chat = %chat, target = %target.id))]
    async fn react(&self, chat: &Jid, target: &MessageRef, emoji: &str) -> Result<String, LinkError> {
        let to = recipient(chat)?;
        self.ready()?;
        let key = wa::MessageKey {
            remote_jid: Some(to.to_string()),
            from_me: Some(target.from_me),
            id: Some(target.id.clone()),
            participant: None,
        };
        self.client
            .send_reaction(to, key, emoji)
            .await
            .map(|sent| sent.message_id)
            .map_err(|e| classify_send("reacting", &e))
    }

    /// Sends the sender's revoke (`protocolMessage` REVOKE, `edit="7"`) for the account's own
    /// message.
    #[tracing::instrument(skip_all, fields(device = %self.device, chat = %chat, id))]
    async fn revoke(&self, chat: &Jid, id: &str) -> Result<(), LinkError> {
        let to = recipient(chat)?;
        self.ready()?;
        self.client
            .revoke_message(to, id, RevokeType::Sender)
            .await
            .map_err(|e| classify_send("deleting for everyone", &e))
    }

    /// Sends WhatsApp Web's edit (`protocolMessage` MESSAGE_EDIT carrying the new text,
    /// `edit="1"`) of the account's own message.
    #[tracing::instrument(skip_all, fields(device = %self.device, chat = %chat, id))]
    async fn edit(&self, chat: &Jid, id: &str, text: &str) -> Result<(), LinkError> {
        let to = recipient(chat)?;
        if text.trim().is_empty() {
            return Err(LinkError::Invalid("empty text".into()));
        }
        self.ready()?;
        let new_content = wa::Message {
            conversation: Some(text.to_owned()),
            ..Default::default()
        };
        self.client
            .edit_message(to, id, new_content)
            .await
            .map(drop)
            .map_err(|e| classify_send("editing", &e))
    }

    /// Sends `<chatstate>` with `<composing/>` or `<paused/>`, as WhatsApp Web does while its user
    /// types.
    #[tracing::instrument(skip_all, fields(device = %self.device, chat = %chat, typing))]
    async fn chat_presence(&self, chat: &Jid, typing: bool) -> Result<(), LinkError> {
        let to = recipient(chat)?;
        self.ready()?;
        let states = self.client.chatstate();
        let sent = if typing {
            states.send_composing(&to).await
        } else {
            states.send_paused(&to).await
        };
        sent.map_err(|e| LinkError::Transient(format!("sending a typing indicator: {e}")))
    }

    /// Writes the setting as WhatsApp Web does: one mutation of the account's app state
    /// (`archive`, `pin_v1`, `star`, `deleteMessageForMe`), encrypted with the newest app state
    /// key the phone shared, sent as a patch of its collection.
    #[tracing::instrument(skip_all, fields(device = %self.device, chat = %chat))]
    async fn set_chat_setting(&self, chat: &Jid, setting: &ChatSetting) -> Result<(), LinkError> {
        use whatsapp_rust::AppStateError;
        let jid = recipient(chat)?;
        self.ready()?;
        let actions = self.client.chat_actions();
        let done = match setting {
            ChatSetting::Archived { archived: true } => actions.archive_chat(&jid, None).await,
            ChatSetting::Archived { archived: false } => actions.unarchive_chat(&jid, None).await,
            ChatSetting::Pinned { pinned: true } => actions.pin_chat(&jid).await,
            ChatSetting::Pinned { pinned: false } => actions.unpin_chat(&jid).await,
            ChatSetting::Starred { message, starred: true } => {
                actions.star_message(&jid, None, &message.id, message.from_me).await
            }
            ChatSetting::Starred {
                message,
                starred: false,
            } => actions.unstar_message(&jid, None, &message.id, message.from_me).await,
            ChatSetting::DeletedForMe { message, sent_at } => {
                let sent_at = sent_at.map(|t| t.millis() / 1000);
                actions
                    .delete_message_for_me(&jid, None, &message.id, message.from_me, true, sent_at)
                    .await
            }
        };
        done.map_err(|e| match e {
            AppStateError::InvalidRequest(why) => LinkError::Invalid(why),
            other => LinkError::Transient(format!("changing the chat's setting: {other}")),
        })
    }

    /// Sends WhatsApp Web's `<call><reject call-id call-creator count="0"/></call>` to the caller
    /// (who also created the call: wafleet answers only personal calls).
    #[tracing::instrument(skip_all, fields(device = %self.device, caller = %caller, call_id))]
    async fn reject_call(&self, caller: &Jid, call_id: &str) -> Result<(), LinkError> {
        let peer = recipient(caller)?;
        self.ready()?;
        self.client
            .voip()
            .reject_call(call_id, &peer, &peer)
            .await
            .map_err(|e| match e {
                whatsapp_rust::CallError::EmptyCallId => LinkError::Invalid("no call id".into()),
                other => LinkError::Transient(format!("declining the call: {other}")),
            })
    }

    /// Sends WhatsApp Web's `protocolMessage` EPHEMERAL_SETTING to the chat.
    #[tracing::instrument(skip_all, fields(device = %self.device, chat = %chat, seconds))]
    async fn set_disappearing(&self, chat: &Jid, seconds: u32) -> Result<(), LinkError> {
        let to = recipient(chat)?;
        self.ready()?;
        self.client
            .set_chat_disappearing_timer(to, seconds)
            .await
            .map(drop)
            .map_err(|e| classify_send("setting the disappearing timer", &e))
    }

    /// Sets the push name as WhatsApp Web does: `<presence name="…"/>` at once, then the
    /// `setting_pushName` app state mutation for the account's other devices.
    #[tracing::instrument(skip_all, fields(device = %self.device))]
    async fn set_push_name(&self, name: &str) -> Result<(), LinkError> {
        self.ready()?;
        self.client.profile().set_push_name(name).await.map_err(|e| match e {
            whatsapp_rust::ProfileError::InvalidArgument(why) => LinkError::Invalid(why),
            other => LinkError::Transient(format!("setting the push name: {other}")),
        })
    }

    /// Sends `<presence type="available|unavailable" name="…"/>`; refused by the client while
    /// the account has no push name.
    #[tracing::instrument(skip_all, fields(device = %self.device, available))]
    async fn set_presence(&self, available: bool) -> Result<(), LinkError> {
        use whatsapp_rust::PresenceError;
        self.ready()?;
        let presence = self.client.presence();
        let sent = if available {
            presence.set_available().await
        } else {
            presence.set_unavailable().await
        };
        sent.map_err(|e| match e {
            PresenceError::PushNameEmpty => LinkError::Invalid(wafleet_core::link::NO_PUSH_NAME.into()),
            other => LinkError::Transient(format!("sending presence: {other}")),
        })
    }

    /// Sends the read receipt the phone sends when a chat is opened (`<receipt type="read">`),
    /// in stanzas of at most 256 ids as WhatsApp Web does.
    #[tracing::instrument(skip_all, fields(device = %self.device, chat = %chat, count = ids.len()))]
    async fn mark_read(&self, chat: &Jid, ids: &[String]) -> Result<(), LinkError> {
        let to = recipient(chat)?;
        if ids.is_empty() {
            return Ok(());
        }
        self.ready()?;
        let ids: Vec<&str> = ids.iter().map(String::as_str).collect();
        self.client
            .mark_as_read(&to, None, &ids)
            .await
            .map_err(|e| LinkError::Transient(format!("sending a read receipt: {e:#}")))
    }

    /// Unlinks the device from its phone (the same request WhatsApp Web makes), then wipes what
    /// was stored for it. The wipe happens only once WhatsApp confirmed the unlink, so a failure
    /// leaves a device that still works.
    #[tracing::instrument(skip_all, fields(device = %self.device))]
    async fn logout(&self) -> Result<(), LinkError> {
        self.ready()?;
        let Some(pn) = self.client.pn() else {
            return Err(LinkError::Device("the device is not linked".into()));
        };
        match tokio::time::timeout(LOGOUT_TIMEOUT, self.client.execute(RemoveCompanionDeviceSpec::new(&pn))).await {
            Ok(Ok(())) => {}
            Ok(Err(e)) => return Err(classify_iq(format!("unlinking: {e}"), &e)),
            Err(_) => {
                return Err(LinkError::Transient(format!(
                    "unlinking: no answer within {LOGOUT_TIMEOUT:?}"
                )));
            }
        }
        self.shut_down().await;
        self.store
            .wipe()
            .await
            .map_err(|e| LinkError::Transient(format!("forgetting the device's state: {e}")))
    }

    #[tracing::instrument(skip_all, fields(device = %self.device))]
    async fn restrictions(&self) -> Result<Restrictions, LinkError> {
        self.ready()?;
        super::restrictions::read(&self.client).await
    }

    #[tracing::instrument(skip_all, fields(device = %self.device, bytes = media.size))]
    async fn download(&self, media: &IncomingMedia) -> Result<Vec<u8>, LinkError> {
        self.ready()?;
        super::received::download(&self.client, media).await
    }

    /// Closes the connection and keeps the credentials (hand-off, shutdown).
    #[tracing::instrument(skip_all, fields(device = %self.device))]
    async fn close(&self) {
        self.shut_down().await;
    }
}
