//! A phone's sender keys: how it encrypts one message for every member of a group or every
//! viewer of its status at once (`skmsg`), and the distribution message that gives each of
//! their devices the key, sent to each device pairwise.

use std::collections::HashMap;

use async_trait::async_trait;
use prost::Message as _;
use rand::TryRngCore;
use rand::rngs::OsRng;
use wa_rs_binary::builder::NodeBuilder;
use wa_rs_binary::node::Node;
use wa_rs_core::messages::MessageUtils;
use wa_rs_libsignal::protocol::{
    SenderKeyName, SenderKeyRecord, SenderKeyStore, SignalProtocolError, create_sender_key_distribution_message,
    group_encrypt,
};
use wa_rs_proto::whatsapp as wa;

/// The sender keys a phone created, one per chat it sends to with them (a group's JID,
/// `status@broadcast`).
#[derive(Default)]
pub(crate) struct SenderKeys(HashMap<SenderKeyName, SenderKeyRecord>);

impl SenderKeys {
    /// The message that shares the phone's sender key for `chat` (created on first use): the
    /// content of a pairwise `pkmsg`/`msg` to each receiving device.
    pub async fn distribution(&mut self, chat: &str) -> anyhow::Result<wa::Message> {
        let skdm = create_sender_key_distribution_message(&name(chat), self, &mut OsRng.unwrap_err()).await?;
        Ok(wa::Message {
            sender_key_distribution_message: Some(wa::message::SenderKeyDistributionMessage {
                group_id: Some(chat.to_owned()),
                axolotl_sender_key_distribution_message: Some(skdm.serialized().to_vec()),
            }),
            ..Default::default()
        })
    }

    /// `message` encrypted once for everyone in `chat` with the phone's sender key for it (which
    /// [`SenderKeys::distribution`] created): the `<enc type="skmsg">` node.
    pub async fn encrypt(&mut self, chat: &str, message: &wa::Message) -> anyhow::Result<Node> {
        let plain = MessageUtils::pad_message_v2(message.encode_to_vec());
        let sealed = group_encrypt(self, &name(chat), &plain, &mut OsRng.unwrap_err()).await?;
        Ok(NodeBuilder::new("enc")
            .attr("v", "2")
            .attr("type", "skmsg")
            .bytes(sealed.serialized().to_vec())
            .build())
    }
}

/// The key's name in the phone's own store: one sender (the phone) per chat.
fn name(chat: &str) -> SenderKeyName {
    SenderKeyName::new(chat.to_owned(), "phone".to_owned())
}

#[async_trait]
impl SenderKeyStore for SenderKeys {
    async fn store_sender_key(
        &mut self,
        name: &SenderKeyName,
        record: &SenderKeyRecord,
    ) -> Result<(), SignalProtocolError> {
        self.0.insert(name.clone(), record.clone());
        Ok(())
    }

    async fn load_sender_key(&mut self, name: &SenderKeyName) -> Result<Option<SenderKeyRecord>, SignalProtocolError> {
        Ok(self.0.get(name).cloned())
    }
}
