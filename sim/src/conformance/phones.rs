//! [`Phones`]: what the checks do on the network's side (phones scanning, typing codes, writing,
//! unlinking), so that the same checks run against any network a link can talk to.

use async_trait::async_trait;
use wafleet_core::link::{ChatSetting, Jid, MessageKind, Structured};
use wafleet_core::types::PhoneNumber;

use crate::ControlClient;
use crate::control::{ChatKind, InjectMessage, MediaFile, NumberRule, Profile};

/// How a contact's number behaves as a recipient.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Contact {
    /// It has WhatsApp and receives messages.
    OnWhatsApp,
    /// It has WhatsApp and reads every message it gets.
    ReadsEverything,
    /// It has no WhatsApp account.
    NotOnWhatsApp,
    /// The network refuses messages to it with a 463 error.
    Refuses463,
}

/// A message a linked device sent, as the network recorded it.
#[derive(Clone, Debug, PartialEq)]
pub struct Sent {
    /// WhatsApp's message id.
    pub id: String,
    /// The recipient's chat.
    pub to: Jid,
    /// Text, or the kind of file.
    pub kind: MessageKind,
    /// The text, or a file's caption.
    pub text: Option<String>,
    /// The file's size as the recipient decoded it, for files.
    pub media_bytes: Option<usize>,
    /// The file's MIME type, as the recipient was told.
    pub mime: Option<String>,
    /// A document's name.
    pub file_name: Option<String>,
    /// The contact card, location, link or poll it was, as the recipient's phone read it.
    pub structured: Option<Structured>,
    /// Marked "Forwarded".
    pub forwarded: bool,
}

/// A reaction, a deletion for everyone or an edit a linked device sent, as the network recorded
/// it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Action {
    /// The chat's account JID.
    pub chat: Jid,
    /// `reaction`, `revoke`, `edit` or `disappearing`.
    pub kind: String,
    /// The message acted on.
    pub target: String,
    /// A reaction's emoji, an edit's new text, or a disappearing-messages timer in seconds.
    pub text: Option<String>,
}

/// The phones of the simulated network, as the checks script them.
#[async_trait]
pub trait Phones: Send + Sync {
    /// The phone of `phone` scans the QR code `code`.
    async fn scan(&self, code: &str, phone: &PhoneNumber) -> anyhow::Result<()>;
    /// The phone of `phone` types the pairing code `code`; returns the linked account's JID.
    async fn enter_pair_code(&self, phone: &PhoneNumber, code: &str) -> anyhow::Result<Jid>;
    /// `contact` behaves as `how` from now on.
    async fn set_contact(&self, contact: &PhoneNumber, how: Contact) -> anyhow::Result<()>;
    /// The account of `phone` shows `profile` to others from now on (the fields it sets).
    async fn set_profile(&self, phone: &PhoneNumber, profile: Profile) -> anyhow::Result<()>;
    /// The phone of `from` writes `text` to the account of `to`; returns the message id.
    async fn write(&self, from: &PhoneNumber, to: &PhoneNumber, text: &str) -> anyhow::Result<String>;
    /// The phone of `from` writes `text` in a chat of kind `chat` that the account of `to` is in
    /// (a group, a broadcast list, its status, a newsletter it follows); returns the message id.
    async fn write_in(
        &self,
        chat: ChatKind,
        from: &PhoneNumber,
        to: &PhoneNumber,
        text: &str,
    ) -> anyhow::Result<String>;
    /// The phone of `from` sends `file` as a message of `kind` (a picture, video, voice note,
    /// document or sticker) to the account of `to`; returns the message id.
    async fn write_media(
        &self,
        from: &PhoneNumber,
        to: &PhoneNumber,
        kind: MessageKind,
        file: &MediaFile<'_>,
    ) -> anyhow::Result<String>;
    /// How the linked devices of `phone` answered the message `id` the network delivered:
    /// `Some(true)` once they took it (decrypted it), `Some(false)` when they could not decrypt
    /// or refused it, `None` before they answered.
    async fn answer(&self, phone: &PhoneNumber, id: &str) -> anyhow::Result<Option<bool>>;
    /// What the linked devices of `phone` sent, oldest first.
    async fn sent(&self, phone: &PhoneNumber) -> anyhow::Result<Vec<Sent>>;
    /// The messages the linked devices of `phone` marked read (sent a read receipt for), oldest
    /// first.
    async fn read(&self, phone: &PhoneNumber) -> anyhow::Result<Vec<String>>;
    /// The typing indicators the linked devices of `phone` showed, oldest first: the chat's
    /// account JID, and whether typing (or stopped).
    async fn chat_states(&self, phone: &PhoneNumber) -> anyhow::Result<Vec<(Jid, bool)>>;
    /// `from` calls `phone` (a voice call, or a `video` one): it rings on the account's connected
    /// devices. Returns the call's id.
    async fn ring(&self, phone: &PhoneNumber, from: &PhoneNumber, video: bool) -> anyhow::Result<String>;
    /// The calls the linked devices of `phone` declined, oldest first: the call's id and the
    /// caller.
    async fn rejected_calls(&self, phone: &PhoneNumber) -> anyhow::Result<Vec<(String, Jid)>>;
    /// The settings of their own view of chats the linked devices of `phone` changed (archive,
    /// pin, star, delete for me), oldest first: the chat's account JID and the setting.
    async fn chat_settings(&self, phone: &PhoneNumber) -> anyhow::Result<Vec<(Jid, ChatSetting)>>;
    /// The push names and presences the linked devices of `phone` sent, oldest first: the name
    /// announced, and online or offline (`None` for a push name alone).
    async fn presences(&self, phone: &PhoneNumber) -> anyhow::Result<Vec<(Option<String>, Option<bool>)>>;
    /// The reactions, deletions for everyone and edits the linked devices of `phone` sent, oldest
    /// first.
    async fn actions(&self, phone: &PhoneNumber) -> anyhow::Result<Vec<Action>>;
    /// Drops the connections of the devices of `phone` without a word; returns how many.
    async fn drop_connections(&self, phone: &PhoneNumber) -> anyhow::Result<usize>;
    /// The phone of `phone` unlinks all its devices; returns how many were linked.
    async fn unlink_all(&self, phone: &PhoneNumber) -> anyhow::Result<usize>;
    /// Messages the network keeps for the devices of `phone` until they acknowledge them.
    async fn pending(&self, phone: &PhoneNumber) -> anyhow::Result<usize>;
    /// Receipts the network keeps for the devices of `phone` until they acknowledge them.
    async fn pending_receipts(&self, phone: &PhoneNumber) -> anyhow::Result<usize>;
    /// Messages to numbers that never wrote to an account that it may send within a minute; one
    /// more gets it banned.
    async fn ban_limit(&self) -> anyhow::Result<u32>;
    /// Whether the network banned the account of `phone`.
    async fn is_banned(&self, phone: &PhoneNumber) -> anyhow::Result<bool>;
    /// Puts the account of `phone` under a reach-out timelock for `length` from now.
    async fn timelock(&self, phone: &PhoneNumber, length: std::time::Duration) -> anyhow::Result<()>;
}

/// The simulator's own network, through its control API.
#[async_trait]
impl Phones for ControlClient {
    async fn scan(&self, code: &str, phone: &PhoneNumber) -> anyhow::Result<()> {
        ControlClient::scan(self, code, phone.as_str()).await.map(drop)
    }

    async fn enter_pair_code(&self, _phone: &PhoneNumber, code: &str) -> anyhow::Result<Jid> {
        // The simulator knows which companion shows which code; the number is implied.
        Ok(self.confirm_pair_code(code).await?.jid)
    }

    async fn set_contact(&self, contact: &PhoneNumber, how: Contact) -> anyhow::Result<()> {
        let mut rule = NumberRule {
            phone: contact.as_str().into(),
            on_whatsapp: Some(how != Contact::NotOnWhatsApp),
            ..NumberRule::default()
        };
        match how {
            Contact::ReadsEverything => rule.read_probability = Some(1.0),
            Contact::Refuses463 => rule.refuse_463 = Some(true),
            Contact::OnWhatsApp | Contact::NotOnWhatsApp => {}
        }
        self.set_number(&rule).await.map(drop)
    }

    async fn set_profile(&self, phone: &PhoneNumber, profile: Profile) -> anyhow::Result<()> {
        let rule = NumberRule {
            phone: phone.as_str().into(),
            profile,
            ..NumberRule::default()
        };
        self.set_number(&rule).await.map(drop)
    }

    async fn write(&self, from: &PhoneNumber, to: &PhoneNumber, text: &str) -> anyhow::Result<String> {
        Ok(self.inject_text(to.as_str(), from.as_str(), text).await?.id)
    }

    async fn write_in(
        &self,
        chat: ChatKind,
        from: &PhoneNumber,
        to: &PhoneNumber,
        text: &str,
    ) -> anyhow::Result<String> {
        let message = InjectMessage {
            to: to.as_str().into(),
            from: from.as_str().into(),
            chat,
            text: Some(text.into()),
            kind: None,
            push_name: None,
            media: None,
        };
        Ok(self.inject(&message).await?.id)
    }

    async fn write_media(
        &self,
        from: &PhoneNumber,
        to: &PhoneNumber,
        kind: MessageKind,
        file: &MediaFile<'_>,
    ) -> anyhow::Result<String> {
        Ok(self.inject_file(to.as_str(), from.as_str(), kind, file).await?.id)
    }

    async fn answer(&self, _phone: &PhoneNumber, _id: &str) -> anyhow::Result<Option<bool>> {
        // The simulator's protocol carries messages in the clear: a device can read every one it
        // gets (whether it acknowledged them, `pending` tells).
        Ok(Some(true))
    }

    async fn sent(&self, phone: &PhoneNumber) -> anyhow::Result<Vec<Sent>> {
        Ok(ControlClient::sent(self, phone.as_str())
            .await?
            .into_iter()
            .map(|m| Sent {
                id: m.id,
                to: m.to,
                kind: m.kind,
                text: m.text,
                media_bytes: m.media_bytes,
                mime: m.mime,
                file_name: m.file_name,
                structured: m.structured,
                forwarded: m.forwarded,
            })
            .collect())
    }

    async fn read(&self, phone: &PhoneNumber) -> anyhow::Result<Vec<String>> {
        Ok(ControlClient::read(self, phone.as_str())
            .await?
            .into_iter()
            .map(|r| r.id)
            .collect())
    }

    async fn actions(&self, phone: &PhoneNumber) -> anyhow::Result<Vec<Action>> {
        Ok(ControlClient::actions(self, phone.as_str())
            .await?
            .into_iter()
            .map(|a| Action {
                chat: a.chat,
                kind: a.kind,
                target: a.target,
                text: a.text,
            })
            .collect())
    }

    async fn ring(&self, phone: &PhoneNumber, from: &PhoneNumber, video: bool) -> anyhow::Result<String> {
        self.place_call(phone.as_str(), from.as_str(), video).await
    }

    async fn rejected_calls(&self, phone: &PhoneNumber) -> anyhow::Result<Vec<(String, Jid)>> {
        Ok(ControlClient::calls(self, phone.as_str())
            .await?
            .into_iter()
            .filter(|c| c.rejected)
            .map(|c| (c.call.id, c.call.from))
            .collect())
    }

    async fn chat_settings(&self, phone: &PhoneNumber) -> anyhow::Result<Vec<(Jid, ChatSetting)>> {
        Ok(ControlClient::chat_settings(self, phone.as_str())
            .await?
            .into_iter()
            .map(|s| (s.chat, s.setting))
            .collect())
    }

    async fn presences(&self, phone: &PhoneNumber) -> anyhow::Result<Vec<(Option<String>, Option<bool>)>> {
        Ok(ControlClient::presences(self, phone.as_str())
            .await?
            .into_iter()
            .map(|p| (p.name, p.available))
            .collect())
    }

    async fn chat_states(&self, phone: &PhoneNumber) -> anyhow::Result<Vec<(Jid, bool)>> {
        Ok(ControlClient::chat_states(self, phone.as_str())
            .await?
            .into_iter()
            .map(|s| (s.chat, s.typing))
            .collect())
    }

    async fn drop_connections(&self, phone: &PhoneNumber) -> anyhow::Result<usize> {
        self.disconnect(phone.as_str()).await
    }

    async fn unlink_all(&self, phone: &PhoneNumber) -> anyhow::Result<usize> {
        self.logout(phone.as_str()).await
    }

    async fn pending(&self, phone: &PhoneNumber) -> anyhow::Result<usize> {
        Ok(account_state(self, phone).await?.map_or(0, |a| a.pending))
    }

    async fn pending_receipts(&self, phone: &PhoneNumber) -> anyhow::Result<usize> {
        Ok(account_state(self, phone).await?.map_or(0, |a| a.pending_receipts))
    }

    async fn ban_limit(&self) -> anyhow::Result<u32> {
        Ok(self.config().await?.ban_strangers_per_minute)
    }

    async fn is_banned(&self, phone: &PhoneNumber) -> anyhow::Result<bool> {
        Ok(account_state(self, phone).await?.is_some_and(|a| a.banned))
    }

    async fn timelock(&self, phone: &PhoneNumber, length: std::time::Duration) -> anyhow::Result<()> {
        let restrict = crate::control::Restrict {
            timelock_secs: Some(length.as_secs()),
            ..Default::default()
        };
        self.restrict(phone.as_str(), &restrict).await
    }
}

/// The simulator's view of the account of `phone`, if it has one.
async fn account_state(
    control: &ControlClient,
    phone: &PhoneNumber,
) -> anyhow::Result<Option<crate::control::AccountView>> {
    let state = control.state().await?;
    Ok(state.accounts.into_iter().find(|a| a.phone == phone.as_str()))
}
