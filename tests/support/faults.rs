//! Faults for the end-to-end tests: a worker that can be killed mid-step, and links that stop at
//! the steps worth killing it at.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use wafleet_core::cache::{Invalidations, ReadCache};
use wafleet_core::keys::KeyRing;
use wafleet_core::link::{
    BusinessProfile, ChatSetting, Jid, Link, LinkError, LinkEvent, MessageRef, NumberCheck, OpenMode, Outgoing,
    PrivacySettings, ProfilePicture, Restrictions, Session, UserInfo,
};
use wafleet_core::shutdown;
use wafleet_core::types::{DeviceId, PhoneNumber};
use wafleet_core::{Db, Settings};

/// A worker process of its own, as far as the test can tell: its own runtime, database pool,
/// queue connection and link (made by `link` on that pool). Dropping the runtime (or
/// [`tokio::runtime::Runtime::shutdown_background`]) is kill -9: none of its code runs again,
/// and its sockets close.
pub fn worker_process(
    settings: &Settings,
    keys: &KeyRing,
    id: &str,
    link: impl FnOnce(Db, KeyRing) -> Arc<dyn Link> + Send + 'static,
) -> tokio::runtime::Runtime {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap();
    let (settings, keys, id) = (settings.clone(), keys.clone(), id.to_owned());
    runtime.spawn(async move {
        let db = Db::connect(&settings).await.unwrap();
        let queues = wafleet_core::queue::Queues::connect(&settings, &db).await.unwrap();
        let mut options = wafleet_workers::WorkerOptions::from_settings(&settings).expect("worker options");
        options.id = id;
        let (_alive, signal) = shutdown::channel();
        let link = link(db.clone(), keys);
        let _ = wafleet_workers::run(
            db,
            link,
            queues,
            Invalidations::Local(ReadCache::off()),
            options,
            signal,
        )
        .await;
    });
    runtime
}

/// A link whose sessions send for real and then never answer, as if the worker froze (or died)
/// between "sent on the wire" and "recorded as sent".
pub struct FreezeAfterSend(pub Arc<dyn Link>);

#[async_trait::async_trait]
impl Link for FreezeAfterSend {
    async fn open(&self, device: DeviceId, mode: OpenMode) -> Result<Box<dyn Session>, LinkError> {
        Ok(Box::new(Wrapped {
            inner: self.0.open(device, mode).await?,
            freeze_after_send: true,
        }))
    }
}

/// A link whose sessions take `delay` to open, as over a slow network or credential store.
pub struct SlowOpen {
    pub inner: Arc<dyn Link>,
    pub delay: Duration,
    /// Counts the opens under way.
    pub opens: Arc<OpensAtOnce>,
}

/// How many opens of a [`SlowOpen`] are under way, and the most there were at one moment.
#[derive(Default)]
pub struct OpensAtOnce {
    under_way: AtomicUsize,
    most: AtomicUsize,
}

impl OpensAtOnce {
    /// The most opens under way at one moment so far.
    pub fn most(&self) -> usize {
        self.most.load(Ordering::SeqCst)
    }
}

#[async_trait::async_trait]
impl Link for SlowOpen {
    async fn open(&self, device: DeviceId, mode: OpenMode) -> Result<Box<dyn Session>, LinkError> {
        let now = self.opens.under_way.fetch_add(1, Ordering::SeqCst) + 1;
        self.opens.most.fetch_max(now, Ordering::SeqCst);
        tokio::time::sleep(self.delay).await;
        let opened = self.inner.open(device, mode).await;
        self.opens.under_way.fetch_sub(1, Ordering::SeqCst);
        opened
    }
}

/// A link whose sessions hold back every event `held` picks (an incoming message, a receipt)
/// after the link has received it and before wafleet stores it: its acknowledgement never
/// fires, as if the worker stalled in its batch commit.
pub struct StallCommit {
    /// The real link.
    pub inner: Arc<dyn Link>,
    /// Which events are held.
    pub held: fn(&LinkEvent) -> bool,
}

impl StallCommit {
    /// Holds incoming messages whose text contains "stall".
    pub fn messages(inner: Arc<dyn Link>) -> StallCommit {
        StallCommit {
            inner,
            held: |event| {
                matches!(event, LinkEvent::Message { message, .. }
                    if message.text.as_deref().is_some_and(|t| t.contains("stall")))
            },
        }
    }

    /// Holds every receipt.
    pub fn receipts(inner: Arc<dyn Link>) -> StallCommit {
        StallCommit {
            inner,
            held: |event| matches!(event, LinkEvent::Receipt { .. }),
        }
    }
}

#[async_trait::async_trait]
impl Link for StallCommit {
    async fn open(&self, device: DeviceId, mode: OpenMode) -> Result<Box<dyn Session>, LinkError> {
        let mut inner = self.inner.open(device, mode).await?;
        let mut events = inner.take_events().expect("events");
        let (tx, rx) = tokio::sync::mpsc::channel(256);
        let held = self.held;
        tokio::spawn(async move {
            // Kept, not dropped: a dropped ack would say "not stored" at once.
            let mut holding = Vec::new();
            while let Some(event) = events.recv().await {
                if held(&event) {
                    tracing::info!(event = ?event, "holding an event before its commit");
                    holding.push(event);
                    continue;
                }
                if tx.send(event).await.is_err() {
                    break;
                }
            }
            drop(holding);
        });
        Ok(Box::new(Wrapped {
            inner: Box::new(WithEvents {
                inner,
                events: Some(rx),
            }),
            freeze_after_send: false,
        }))
    }
}

/// A session whose events come from elsewhere.
struct WithEvents {
    inner: Box<dyn Session>,
    events: Option<tokio::sync::mpsc::Receiver<LinkEvent>>,
}

#[async_trait::async_trait]
impl Session for WithEvents {
    fn take_events(&mut self) -> Option<tokio::sync::mpsc::Receiver<LinkEvent>> {
        self.events.take()
    }
    async fn send(&self, message: &Outgoing) -> Result<String, LinkError> {
        self.inner.send(message).await
    }
    async fn check_numbers(&self, phones: &[PhoneNumber]) -> Result<Vec<NumberCheck>, LinkError> {
        self.inner.check_numbers(phones).await
    }
    async fn user_info(&self, phone: &PhoneNumber) -> Result<Option<UserInfo>, LinkError> {
        self.inner.user_info(phone).await
    }
    async fn privacy(&self) -> Result<PrivacySettings, LinkError> {
        self.inner.privacy().await
    }
    async fn business_profile(&self, phone: &PhoneNumber) -> Result<Option<BusinessProfile>, LinkError> {
        self.inner.business_profile(phone).await
    }
    async fn profile_picture(&self, phone: &PhoneNumber, preview: bool) -> Result<Option<ProfilePicture>, LinkError> {
        self.inner.profile_picture(phone, preview).await
    }
    async fn set_profile_picture(&self, jpeg: &[u8]) -> Result<String, LinkError> {
        self.inner.set_profile_picture(jpeg).await
    }
    async fn mark_read(&self, chat: &Jid, ids: &[String]) -> Result<(), LinkError> {
        self.inner.mark_read(chat, ids).await
    }
    async fn chat_presence(&self, chat: &Jid, typing: bool) -> Result<(), LinkError> {
        self.inner.chat_presence(chat, typing).await
    }

    async fn set_push_name(&self, name: &str) -> Result<(), LinkError> {
        self.inner.set_push_name(name).await
    }

    async fn set_presence(&self, available: bool) -> Result<(), LinkError> {
        self.inner.set_presence(available).await
    }

    async fn set_chat_setting(&self, chat: &Jid, setting: &ChatSetting) -> Result<(), LinkError> {
        self.inner.set_chat_setting(chat, setting).await
    }

    async fn set_disappearing(&self, chat: &Jid, seconds: u32) -> Result<(), LinkError> {
        self.inner.set_disappearing(chat, seconds).await
    }

    async fn reject_call(&self, caller: &Jid, call_id: &str) -> Result<(), LinkError> {
        self.inner.reject_call(caller, call_id).await
    }
    async fn react(&self, chat: &Jid, target: &MessageRef, emoji: &str) -> Result<String, LinkError> {
        self.inner.react(chat, target, emoji).await
    }
    async fn revoke(&self, chat: &Jid, id: &str) -> Result<(), LinkError> {
        self.inner.revoke(chat, id).await
    }
    async fn edit(&self, chat: &Jid, id: &str, text: &str) -> Result<(), LinkError> {
        self.inner.edit(chat, id, text).await
    }
    async fn logout(&self) -> Result<(), LinkError> {
        self.inner.logout().await
    }
    async fn restrictions(&self) -> Result<Restrictions, LinkError> {
        self.inner.restrictions().await
    }
    async fn download(&self, media: &wafleet_core::link::IncomingMedia) -> Result<Vec<u8>, LinkError> {
        self.inner.download(media).await
    }
    async fn close(&self) {
        self.inner.close().await
    }
}

/// A session that may never answer after a send.
struct Wrapped {
    inner: Box<dyn Session>,
    freeze_after_send: bool,
}

#[async_trait::async_trait]
impl Session for Wrapped {
    fn take_events(&mut self) -> Option<tokio::sync::mpsc::Receiver<LinkEvent>> {
        self.inner.take_events()
    }
    async fn send(&self, message: &Outgoing) -> Result<String, LinkError> {
        let id = self.inner.send(message).await?;
        if self.freeze_after_send {
            std::future::pending::<()>().await;
        }
        Ok(id)
    }
    async fn check_numbers(&self, phones: &[PhoneNumber]) -> Result<Vec<NumberCheck>, LinkError> {
        self.inner.check_numbers(phones).await
    }
    async fn user_info(&self, phone: &PhoneNumber) -> Result<Option<UserInfo>, LinkError> {
        self.inner.user_info(phone).await
    }
    async fn privacy(&self) -> Result<PrivacySettings, LinkError> {
        self.inner.privacy().await
    }
    async fn business_profile(&self, phone: &PhoneNumber) -> Result<Option<BusinessProfile>, LinkError> {
        self.inner.business_profile(phone).await
    }
    async fn profile_picture(&self, phone: &PhoneNumber, preview: bool) -> Result<Option<ProfilePicture>, LinkError> {
        self.inner.profile_picture(phone, preview).await
    }
    async fn set_profile_picture(&self, jpeg: &[u8]) -> Result<String, LinkError> {
        self.inner.set_profile_picture(jpeg).await
    }
    async fn mark_read(&self, chat: &Jid, ids: &[String]) -> Result<(), LinkError> {
        self.inner.mark_read(chat, ids).await
    }
    async fn chat_presence(&self, chat: &Jid, typing: bool) -> Result<(), LinkError> {
        self.inner.chat_presence(chat, typing).await
    }

    async fn set_push_name(&self, name: &str) -> Result<(), LinkError> {
        self.inner.set_push_name(name).await
    }

    async fn set_presence(&self, available: bool) -> Result<(), LinkError> {
        self.inner.set_presence(available).await
    }

    async fn set_chat_setting(&self, chat: &Jid, setting: &ChatSetting) -> Result<(), LinkError> {
        self.inner.set_chat_setting(chat, setting).await
    }

    async fn set_disappearing(&self, chat: &Jid, seconds: u32) -> Result<(), LinkError> {
        self.inner.set_disappearing(chat, seconds).await
    }

    async fn reject_call(&self, caller: &Jid, call_id: &str) -> Result<(), LinkError> {
        self.inner.reject_call(caller, call_id).await
    }
    async fn react(&self, chat: &Jid, target: &MessageRef, emoji: &str) -> Result<String, LinkError> {
        self.inner.react(chat, target, emoji).await
    }
    async fn revoke(&self, chat: &Jid, id: &str) -> Result<(), LinkError> {
        self.inner.revoke(chat, id).await
    }
    async fn edit(&self, chat: &Jid, id: &str, text: &str) -> Result<(), LinkError> {
        self.inner.edit(chat, id, text).await
    }
    async fn logout(&self) -> Result<(), LinkError> {
        self.inner.logout().await
    }
    async fn restrictions(&self) -> Result<Restrictions, LinkError> {
        self.inner.restrictions().await
    }
    async fn download(&self, media: &wafleet_core::link::IncomingMedia) -> Result<Vec<u8>, LinkError> {
        self.inner.download(media).await
    }
    async fn close(&self) {
        self.inner.close().await
    }
}
