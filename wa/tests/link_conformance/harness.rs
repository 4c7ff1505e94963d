//! [`WawebHarness`]: `WaLink` sessions against the simulator's WhatsApp Web front end, whose
//! simulated phones play the network's side of each check.

use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use async_trait::async_trait;
use wafleet_core::Db;
use wafleet_core::keys::KeyRing;
use wafleet_core::link::{ChatSetting, Jid, Link, MessageKind};
use wafleet_core::types::{DeviceId, PhoneNumber};
use wafleet_sim::conformance::{Action, Contact, Harness, Phones, Sent};
use wafleet_sim::control::{ChatKind, MediaFile, Profile};
use wafleet_sim::waweb::{self, WaWebConfig, WaWebHandle};
use wafleet_wa::{WaLink, WaLinkConfig, WaStore};
use whatsapp_rust::wacore::store::traits::DeviceStore;

/// The checks that cannot run against the real client and the front end, and why.
pub const UNCOVERED: &[(&str, &str)] = &[];

/// A front end with test timings, and `WaLink`s to it on one database.
pub struct WawebHarness {
    /// The simulated phones and the front end they talk through.
    phones: WawebPhones,
    /// Where the links keep each device's client state.
    db: Db,
    /// A random key sealing that state.
    keys: KeyRing,
    /// A URL nothing listens on.
    dead_url: String,
}

impl WawebHarness {
    /// Starts a front end with [`WaWebConfig::for_tests`].
    pub async fn start(db: Db) -> anyhow::Result<WawebHarness> {
        let net = waweb::start(WaWebConfig::for_tests()).await?;
        let probe = std::net::TcpListener::bind("127.0.0.1:0").context("finding a closed port")?;
        let dead_url = format!("ws://{}/ws/chat", probe.local_addr()?);
        drop(probe);
        Ok(WawebHarness {
            phones: WawebPhones(net),
            db,
            keys: KeyRing::random(),
            dead_url,
        })
    }

    fn link_to(&self, url: String) -> Arc<dyn Link> {
        Arc::new(WaLink::with_config(
            self.db.clone(),
            self.keys.clone(),
            WaLinkConfig {
                server_url: Some(url),
                connect_timeout: Duration::from_secs(2),
                // Nothing may be fetched from web.whatsapp.com.
                app_version: Some((2, 3000, 1)),
                // The simulated media host speaks plain HTTP.
                plain_http_media: true,
                ..WaLinkConfig::default()
            },
        ))
    }
}

#[async_trait]
impl Harness for WawebHarness {
    fn link(&self) -> Arc<dyn Link> {
        self.link_to(self.phones.0.url())
    }

    fn unreachable_link(&self) -> Arc<dyn Link> {
        self.link_to(self.dead_url.clone())
    }

    fn db(&self) -> &Db {
        &self.db
    }

    fn phones(&self) -> &dyn Phones {
        &self.phones
    }

    async fn has_credentials(&self, device: DeviceId) -> bool {
        WaStore::new(self.db.clone(), self.keys.clone(), device)
            .load()
            .await
            .expect("read the device's client state")
            .is_some_and(|d| d.pn.is_some())
    }

    fn uncovered(&self) -> Vec<(&'static str, &'static str)> {
        UNCOVERED.to_vec()
    }
}

/// The front end's simulated phones.
pub struct WawebPhones(WaWebHandle);

/// The account JID of a device JID (`601…:1@s.whatsapp.net` → `601…@s.whatsapp.net`).
fn account_jid(device_jid: &str) -> Jid {
    let user = device_jid.split(['@', ':']).next().unwrap_or_default();
    Jid(format!("{user}@s.whatsapp.net"))
}

#[async_trait]
impl Phones for WawebPhones {
    async fn scan(&self, code: &str, phone: &PhoneNumber) -> anyhow::Result<()> {
        self.0.scan(code, phone.digits()).map(drop)
    }

    async fn enter_pair_code(&self, phone: &PhoneNumber, code: &str) -> anyhow::Result<Jid> {
        Ok(account_jid(&self.0.enter_code(phone.digits(), code).await?))
    }

    async fn set_contact(&self, contact: &PhoneNumber, how: Contact) -> anyhow::Result<()> {
        match how {
            // Phones read what they get on their own (`read_after`).
            Contact::OnWhatsApp | Contact::ReadsEverything => self.0.add_account(contact.digits()),
            // A number has no account until it is added.
            Contact::NotOnWhatsApp => {}
            Contact::Refuses463 => self.0.refuse_463(contact.digits()),
        }
        Ok(())
    }

    async fn set_profile(&self, phone: &PhoneNumber, profile: Profile) -> anyhow::Result<()> {
        self.0.set_profile(phone.digits(), profile);
        Ok(())
    }

    async fn write(&self, from: &PhoneNumber, to: &PhoneNumber, text: &str) -> anyhow::Result<String> {
        self.0.send_text(from.digits(), to.digits(), text).await
    }

    async fn write_in(
        &self,
        chat: ChatKind,
        from: &PhoneNumber,
        to: &PhoneNumber,
        text: &str,
    ) -> anyhow::Result<String> {
        self.0.send_in(chat, from.digits(), to.digits(), text).await
    }

    async fn write_media(
        &self,
        from: &PhoneNumber,
        to: &PhoneNumber,
        kind: MessageKind,
        file: &MediaFile<'_>,
    ) -> anyhow::Result<String> {
        self.0.send_media(from.digits(), to.digits(), kind, file).await
    }

    async fn answer(&self, _phone: &PhoneNumber, id: &str) -> anyhow::Result<Option<bool>> {
        Ok(self.0.answer(id))
    }

    async fn sent(&self, phone: &PhoneNumber) -> anyhow::Result<Vec<Sent>> {
        Ok(self
            .0
            .sent(phone.digits())
            .into_iter()
            .map(|m| Sent {
                media_bytes: self.0.media_bytes(&m).ok().map(|b| b.len()),
                mime: m.media.as_ref().and_then(|f| f.mime.clone()),
                file_name: m.media.as_ref().and_then(|f| f.file_name.clone()),
                structured: m.structured.clone(),
                forwarded: m.forwarded,
                kind: MessageKind::from_name(&m.kind),
                to: account_jid(&m.to),
                id: m.id,
                text: m.text,
            })
            .collect())
    }

    async fn read(&self, phone: &PhoneNumber) -> anyhow::Result<Vec<String>> {
        Ok(self.0.read_by(phone.digits()))
    }

    async fn actions(&self, phone: &PhoneNumber) -> anyhow::Result<Vec<Action>> {
        Ok(self
            .0
            .sent(phone.digits())
            .into_iter()
            .filter(|m| ["reaction", "revoke", "edit", "disappearing"].contains(&m.kind.as_str()))
            .map(|m| Action {
                chat: account_jid(&m.to),
                text: m.text,
                kind: m.kind,
                target: m.target.unwrap_or_default(),
            })
            .collect())
    }

    async fn presences(&self, phone: &PhoneNumber) -> anyhow::Result<Vec<(Option<String>, Option<bool>)>> {
        Ok(self.0.presences(phone.digits()))
    }

    async fn ring(&self, phone: &PhoneNumber, from: &PhoneNumber, video: bool) -> anyhow::Result<String> {
        Ok(self.0.call(phone.digits(), from.digits(), video))
    }

    async fn rejected_calls(&self, phone: &PhoneNumber) -> anyhow::Result<Vec<(String, Jid)>> {
        Ok(self
            .0
            .rejected_calls(phone.digits())
            .into_iter()
            .map(|(id, caller)| (id, Jid(caller)))
            .collect())
    }

    async fn chat_settings(&self, phone: &PhoneNumber) -> anyhow::Result<Vec<(Jid, ChatSetting)>> {
        Ok(self.0.chat_settings(phone.digits()))
    }

    async fn chat_states(&self, phone: &PhoneNumber) -> anyhow::Result<Vec<(Jid, bool)>> {
        Ok(self
            .0
            .chat_states(phone.digits())
            .into_iter()
            .map(|(chat, typing)| (account_jid(&chat), typing))
            .collect())
    }

    async fn drop_connections(&self, phone: &PhoneNumber) -> anyhow::Result<usize> {
        Ok(self.0.drop_connections(phone.digits()))
    }

    async fn unlink_all(&self, phone: &PhoneNumber) -> anyhow::Result<usize> {
        Ok(self.0.logout(phone.digits()))
    }

    async fn pending(&self, phone: &PhoneNumber) -> anyhow::Result<usize> {
        Ok(self.0.pending_messages(phone.digits()))
    }

    async fn pending_receipts(&self, phone: &PhoneNumber) -> anyhow::Result<usize> {
        Ok(self.0.pending_receipts(phone.digits()))
    }

    async fn ban_limit(&self) -> anyhow::Result<u32> {
        Ok(self.0.ban_limits().strangers_per_minute)
    }

    async fn is_banned(&self, phone: &PhoneNumber) -> anyhow::Result<bool> {
        Ok(self.0.is_banned(phone.digits()))
    }

    async fn timelock(&self, phone: &PhoneNumber, length: std::time::Duration) -> anyhow::Result<()> {
        self.0.timelock(phone.digits(), length);
        Ok(())
    }
}
