//! [`SimSession`]: the caller's side of a session; every call goes to the session's task.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::{mpsc, oneshot};
use wafleet_core::link::{
    BusinessProfile, ChatSetting, Content, IncomingMedia, Jid, LinkError, LinkEvent, MessageKind, MessageRef,
    NewChatCap, NumberCheck, Outgoing, PrivacySettings, ProfilePicture, Restrictions, Session, Structured, UserInfo,
};
use wafleet_core::sync;
use wafleet_core::types::{DeviceId, PhoneNumber, Timestamp};

use crate::protocol::{MediaInfo, ServerFrame};

/// How long fetching one file may take.
const DOWNLOAD_TIMEOUT: Duration = Duration::from_secs(120);

/// A request for the session's task.
pub(crate) enum Request {
    /// Send text or a file under a chosen id.
    Send {
        id: String,
        to: Jid,
        text: Option<String>,
        media: Option<MediaInfo>,
        structured: Option<Structured>,
        forwarded: bool,
    },
    /// Check numbers.
    Check { phones: Vec<String> },
    /// Unlink.
    Logout,
    /// The account's restrictions on new chats.
    Restrictions,
    /// The profile of a number's account.
    UserInfo { phone: String },
    /// The account's privacy settings.
    Privacy,
    /// A number's profile picture.
    Picture { phone: String, preview: bool },
    /// A number's business profile.
    BusinessProfile { phone: String },
    /// A new profile picture for the account (base64).
    SetPicture { jpeg: String },
    /// A read receipt for messages of a chat.
    Read { chat: Jid, ids: Vec<String> },
    /// Typing, or stopped, in a chat.
    ChatPresence { chat: Jid, typing: bool },
    /// The account's push name.
    PushName { name: String },
    /// The account online or offline.
    Presence { available: bool },
    /// A setting of the account's own view of a chat.
    ChatSetting { chat: Jid, setting: ChatSetting },
    /// A chat's disappearing-messages timer.
    Disappearing { chat: Jid, seconds: u32 },
    /// A call declined.
    RejectCall { caller: Jid, call_id: String },
    /// A reaction to a message.
    React {
        chat: Jid,
        target: String,
        from_me: bool,
        emoji: String,
    },
    /// A deletion for everyone of an own message.
    Revoke { chat: Jid, target: String },
    /// An edit of an own message.
    Edit { chat: Jid, target: String, text: String },
}

/// What a session's task is asked to do.
pub(crate) enum Command {
    /// A request (boxed: commands stay small in each session's queue); the answer frame (or
    /// the failure) goes to the sender.
    Request(Box<Request>, oneshot::Sender<Result<ServerFrame, LinkError>>),
    /// Acknowledge a stored message.
    Ack(String),
    /// Close, keeping credentials; `done` fires when closed.
    Close(oneshot::Sender<()>),
}

/// Why calls fail once the task has ended (set by the task as it ends).
pub(crate) type Ended = Arc<Mutex<Option<LinkError>>>;

/// One device's session with the simulator.
pub struct SimSession {
    /// The device.
    pub(crate) device: DeviceId,
    /// Events, until taken.
    pub(crate) events: Option<mpsc::Receiver<LinkEvent>>,
    /// The task's command queue.
    pub(crate) commands: mpsc::Sender<Command>,
    /// Why the task ended.
    pub(crate) ended: Ended,
    /// How long a request may wait.
    pub(crate) request_timeout: Duration,
}

impl SimSession {
    fn ended_error(&self) -> LinkError {
        sync::lock(&self.ended)
            .clone()
            .unwrap_or_else(|| LinkError::Transient("the session ended".into()))
    }

    /// [`SimSession::request`] for requests the simulator answers with `Done`.
    async fn request_done(&self, request: Request) -> Result<(), LinkError> {
        match self.request(request).await? {
            ServerFrame::Done { .. } => Ok(()),
            other => Err(unexpected(&other)),
        }
    }

    async fn request(&self, request: Request) -> Result<ServerFrame, LinkError> {
        // A task that ended (logged out, banned) may still hold queued commands a moment while it
        // reports why; a request made after that is refused at once, for the ending's reason,
        // rather than left to time out as if the simulator had not answered.
        if let Some(ended) = sync::lock(&self.ended).clone() {
            return Err(ended);
        }
        let (reply, answer) = oneshot::channel();
        if self
            .commands
            .send(Command::Request(Box::new(request), reply))
            .await
            .is_err()
        {
            return Err(self.ended_error());
        }
        match tokio::time::timeout(self.request_timeout, answer).await {
            // The request may have reached the simulator: say so, so a send is not repeated.
            Err(_) => Err(LinkError::Unconfirmed(format!(
                "no answer from the simulator within {:?}",
                self.request_timeout
            ))),
            Ok(Err(_)) => Err(match self.ended_error() {
                LinkError::Transient(reason) => LinkError::Unconfirmed(reason),
                other => other,
            }),
            Ok(Ok(Ok(ServerFrame::Error { class, message, .. }))) => Err(class.into_error(message)),
            Ok(Ok(answer)) => answer,
        }
    }

    async fn send_frame(&self, request: Request) -> Result<String, LinkError> {
        match self.request(request).await? {
            ServerFrame::Sent { id, .. } => Ok(id),
            other => Err(unexpected(&other)),
        }
    }
}

fn unexpected(frame: &ServerFrame) -> LinkError {
    LinkError::Transient(format!("unexpected answer from the simulator: {frame:?}"))
}

#[async_trait::async_trait]
impl Session for SimSession {
    fn take_events(&mut self) -> Option<mpsc::Receiver<LinkEvent>> {
        self.events.take()
    }

    #[tracing::instrument(skip(self, message), fields(device = %self.device, id = %message.id))]
    async fn send(&self, message: &Outgoing) -> Result<String, LinkError> {
        let (text, media, structured) = match &message.content {
            Content::Text(text) if text.trim().is_empty() => return Err(LinkError::Invalid("empty text".into())),
            Content::Text(text) => (Some(text.clone()), None, None),
            Content::Structured(structured) => (Some(structured.summary()), None, Some(structured.clone())),
            Content::Media(media) => {
                let file = &media.file;
                if file.bytes.is_empty() || !MessageKind::MEDIA.contains(&file.kind) {
                    return Err(LinkError::Invalid(format!(
                        "not a file to send: {} bytes as {}",
                        file.bytes.len(),
                        file.kind.as_str()
                    )));
                }
                (
                    media.caption.clone(),
                    Some(MediaInfo {
                        kind: file.kind,
                        bytes: file.bytes.len(),
                        mime: file.mime.clone(),
                        file_name: file.file_name.clone(),
                    }),
                    None,
                )
            }
        };
        self.send_frame(Request::Send {
            id: message.id.clone(),
            to: message.to.clone(),
            text,
            media,
            structured,
            forwarded: message.forwarded,
        })
        .await
    }

    #[tracing::instrument(skip(self, phones), fields(device = %self.device, count = phones.len()))]
    async fn check_numbers(&self, phones: &[PhoneNumber]) -> Result<Vec<NumberCheck>, LinkError> {
        let request = Request::Check {
            phones: phones.iter().map(|p| p.as_str().to_owned()).collect(),
        };
        match self.request(request).await? {
            ServerFrame::Checked { jids, .. } if jids.len() == phones.len() => Ok(phones
                .iter()
                .zip(jids)
                .map(|(phone, jid)| NumberCheck {
                    phone: phone.clone(),
                    jid,
                })
                .collect()),
            other => Err(unexpected(&other)),
        }
    }

    #[tracing::instrument(skip(self), fields(device = %self.device))]
    async fn user_info(&self, phone: &PhoneNumber) -> Result<Option<UserInfo>, LinkError> {
        let request = Request::UserInfo {
            phone: phone.as_str().to_owned(),
        };
        match self.request(request).await? {
            ServerFrame::UserInfo { info, .. } => Ok(info),
            other => Err(unexpected(&other)),
        }
    }

    #[tracing::instrument(skip(self), fields(device = %self.device))]
    async fn profile_picture(&self, phone: &PhoneNumber, preview: bool) -> Result<Option<ProfilePicture>, LinkError> {
        let request = Request::Picture {
            phone: phone.as_str().to_owned(),
            preview,
        };
        match self.request(request).await? {
            ServerFrame::Picture { picture, .. } => Ok(picture),
            other => Err(unexpected(&other)),
        }
    }

    #[tracing::instrument(skip(self, jpeg), fields(device = %self.device, bytes = jpeg.len()))]
    async fn set_profile_picture(&self, jpeg: &[u8]) -> Result<String, LinkError> {
        use base64::Engine;
        if jpeg.is_empty() {
            return Err(LinkError::Invalid("empty picture".into()));
        }
        let request = Request::SetPicture {
            jpeg: base64::engine::general_purpose::STANDARD.encode(jpeg),
        };
        match self.request(request).await? {
            ServerFrame::PictureSet { id, .. } => Ok(id),
            other => Err(unexpected(&other)),
        }
    }

    #[tracing::instrument(skip(self), fields(device = %self.device))]
    async fn business_profile(&self, phone: &PhoneNumber) -> Result<Option<BusinessProfile>, LinkError> {
        let request = Request::BusinessProfile {
            phone: phone.as_str().to_owned(),
        };
        match self.request(request).await? {
            ServerFrame::BusinessProfile { profile, .. } => Ok(profile),
            other => Err(unexpected(&other)),
        }
    }

    #[tracing::instrument(skip(self), fields(device = %self.device))]
    async fn privacy(&self) -> Result<PrivacySettings, LinkError> {
        match self.request(Request::Privacy).await? {
            ServerFrame::Privacy { settings, .. } => Ok(settings),
            other => Err(unexpected(&other)),
        }
    }

    #[tracing::instrument(skip(self), fields(device = %self.device))]
    async fn react(&self, chat: &Jid, target: &MessageRef, emoji: &str) -> Result<String, LinkError> {
        let request = Request::React {
            chat: chat.clone(),
            target: target.id.clone(),
            from_me: target.from_me,
            emoji: emoji.to_owned(),
        };
        match self.request(request).await? {
            ServerFrame::Sent { id, .. } => Ok(id),
            other => Err(unexpected(&other)),
        }
    }

    #[tracing::instrument(skip(self), fields(device = %self.device))]
    async fn revoke(&self, chat: &Jid, id: &str) -> Result<(), LinkError> {
        let request = Request::Revoke {
            chat: chat.clone(),
            target: id.to_owned(),
        };
        match self.request(request).await? {
            ServerFrame::Sent { .. } => Ok(()),
            other => Err(unexpected(&other)),
        }
    }

    #[tracing::instrument(skip(self, text), fields(device = %self.device))]
    async fn edit(&self, chat: &Jid, id: &str, text: &str) -> Result<(), LinkError> {
        if text.trim().is_empty() {
            return Err(LinkError::Invalid("empty text".into()));
        }
        let request = Request::Edit {
            chat: chat.clone(),
            target: id.to_owned(),
            text: text.to_owned(),
        };
        match self.request(request).await? {
            ServerFrame::Sent { .. } => Ok(()),
            other => Err(unexpected(&other)),
        }
    }

    #[tracing::instrument(skip(self), fields(device = %self.device))]
    async fn chat_presence(&self, chat: &Jid, typing: bool) -> Result<(), LinkError> {
        let request = Request::ChatPresence {
            chat: chat.clone(),
            typing,
        };
        self.request_done(request).await
    }

    #[tracing::instrument(skip(self), fields(device = %self.device))]
    async fn set_push_name(&self, name: &str) -> Result<(), LinkError> {
        let request = Request::PushName { name: name.to_owned() };
        self.request_done(request).await
    }

    #[tracing::instrument(skip(self), fields(device = %self.device))]
    async fn set_chat_setting(&self, chat: &Jid, setting: &ChatSetting) -> Result<(), LinkError> {
        let request = Request::ChatSetting {
            chat: chat.clone(),
            setting: setting.clone(),
        };
        self.request_done(request).await
    }

    #[tracing::instrument(skip(self), fields(device = %self.device))]
    async fn reject_call(&self, caller: &Jid, call_id: &str) -> Result<(), LinkError> {
        let request = Request::RejectCall {
            caller: caller.clone(),
            call_id: call_id.to_owned(),
        };
        self.request_done(request).await
    }

    #[tracing::instrument(skip(self), fields(device = %self.device))]
    async fn set_disappearing(&self, chat: &Jid, seconds: u32) -> Result<(), LinkError> {
        let request = Request::Disappearing {
            chat: chat.clone(),
            seconds,
        };
        match self.request(request).await? {
            ServerFrame::Sent { .. } => Ok(()),
            other => Err(unexpected(&other)),
        }
    }

    #[tracing::instrument(skip(self), fields(device = %self.device))]
    async fn set_presence(&self, available: bool) -> Result<(), LinkError> {
        self.request_done(Request::Presence { available }).await
    }

    #[tracing::instrument(skip(self, ids), fields(device = %self.device, count = ids.len()))]
    async fn mark_read(&self, chat: &Jid, ids: &[String]) -> Result<(), LinkError> {
        if ids.is_empty() {
            return Ok(());
        }
        let request = Request::Read {
            chat: chat.clone(),
            ids: ids.to_vec(),
        };
        self.request_done(request).await
    }

    #[tracing::instrument(skip(self), fields(device = %self.device))]
    async fn logout(&self) -> Result<(), LinkError> {
        match self.request(Request::Logout).await? {
            ServerFrame::LogoutDone { .. } => Ok(()),
            other => Err(unexpected(&other)),
        }
    }

    #[tracing::instrument(skip(self), fields(device = %self.device))]
    async fn restrictions(&self) -> Result<Restrictions, LinkError> {
        match self.request(Request::Restrictions).await? {
            ServerFrame::Restrictions { state, .. } => Ok(Restrictions {
                timelocked_until: state.timelocked_until_ms.map(Timestamp),
                new_chat_cap: state.cap.map(|(used, total, ends)| NewChatCap {
                    used: used.into(),
                    total: total.into(),
                    resets_at: Some(Timestamp(ends)),
                }),
            }),
            other => Err(unexpected(&other)),
        }
    }

    /// The simulator serves the file over HTTP at the locator (as WhatsApp's media hosts do),
    /// so the download does not go through the session's socket.
    #[tracing::instrument(skip_all, fields(device = %self.device, bytes = media.size))]
    async fn download(&self, media: &IncomingMedia) -> Result<Vec<u8>, LinkError> {
        static HTTP: std::sync::OnceLock<reqwest::Client> = std::sync::OnceLock::new();
        let http = HTTP.get_or_init(|| {
            reqwest::Client::builder()
                .timeout(DOWNLOAD_TIMEOUT)
                .build()
                .unwrap_or_default()
        });
        let failed = |e: reqwest::Error| LinkError::Transient(format!("downloading the media: {e}"));
        let response = http.get(&media.locator).send().await.map_err(failed)?;
        if response.status() == reqwest::StatusCode::NOT_FOUND {
            return Err(LinkError::Invalid("the media is gone from the server".into()));
        }
        let bytes = response
            .error_for_status()
            .map_err(failed)?
            .bytes()
            .await
            .map_err(failed)?;
        Ok(bytes.to_vec())
    }

    #[tracing::instrument(skip(self), fields(device = %self.device))]
    async fn close(&self) {
        let (done, closed) = oneshot::channel();
        if self.commands.send(Command::Close(done)).await.is_ok() {
            let _ = closed.await;
        }
    }
}
