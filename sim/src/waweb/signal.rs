//! The Signal endpoint of a simulated phone (an account's device 0): its identity and prekeys,
//! the sessions it holds with linked devices, and encrypting and decrypting one-to-one messages
//! with libsignal exactly as a real phone would ([`SenderKeys`] for groups and status updates).

use std::collections::HashMap;

use anyhow::Context;
use async_trait::async_trait;
use prost::Message as _;
use rand::rngs::OsRng;
use rand::{Rng, TryRngCore};
use wa_rs_binary::builder::NodeBuilder;
use wa_rs_binary::node::Node;
use wa_rs_core::messages::MessageUtils;
use wa_rs_libsignal::protocol::{
    CiphertextMessage, CiphertextMessageType, Direction, GenericSignedPreKey, IdentityChange, IdentityKey,
    IdentityKeyPair, IdentityKeyStore, KeyPair, PreKeyBundle, PreKeyId, PreKeyRecord, PreKeySignalMessage, PreKeyStore,
    ProtocolAddress, PublicKey, SessionRecord, SessionStore, SignalMessage, SignalProtocolError, SignedPreKeyId,
    SignedPreKeyRecord, SignedPreKeyStore, Timestamp, UsePQRatchet, message_decrypt, message_encrypt,
    process_prekey_bundle,
};
use wa_rs_proto::whatsapp as wa;

use super::model::Registration;
use super::sender_keys::SenderKeys;

type SignalResult<T> = Result<T, SignalProtocolError>;

/// The id of each phone's (only) signed prekey.
const SIGNED_PREKEY_ID: u32 = 1;

/// A phone's keys and sessions, in memory.
pub(crate) struct PhoneSignal {
    /// Its identity.
    identity: IdentityKeyPair,
    /// Its registration id.
    registration_id: u32,
    /// Its signed prekey.
    signed_prekey: SignedPreKeyRecord,
    /// One-time prekeys handed out and not used yet.
    prekeys: HashMap<u32, PreKeyRecord>,
    /// The next one-time prekey id.
    next_prekey: u32,
    /// Sessions by the peer device's address.
    sessions: HashMap<ProtocolAddress, SessionRecord>,
    /// Identities of peers seen (trust on first use, as phones do).
    identities: HashMap<ProtocolAddress, IdentityKey>,
    /// Its sender keys, for groups and status updates.
    pub sender_keys: SenderKeys,
}

impl PhoneSignal {
    /// A phone with fresh keys.
    pub fn generate() -> PhoneSignal {
        let mut rng = rand::rng();
        let identity = IdentityKeyPair::generate(&mut rng);
        let signed = KeyPair::generate(&mut rng);
        let signature = identity
            .private_key()
            .calculate_signature(&signed.public_key.serialize(), &mut rng)
            .map(|s| s.to_vec())
            .unwrap_or_default();
        let now = Timestamp::from_epoch_millis(super::nodes::now_secs() * 1000);
        PhoneSignal {
            identity,
            registration_id: rng.random_range(1..16380),
            signed_prekey: SignedPreKeyRecord::new(SIGNED_PREKEY_ID.into(), now, &signed, &signature),
            prekeys: HashMap::new(),
            next_prekey: 1,
            sessions: HashMap::new(),
            identities: HashMap::new(),
            sender_keys: SenderKeys::default(),
        }
    }

    /// The phone's identity key pair (which is also the account's ADV signing key).
    pub fn identity_key_pair(&self) -> KeyPair {
        KeyPair::new(*self.identity.public_key(), self.identity.private_key().clone())
    }

    /// The prekey bundle of this phone as a `<user>` of a prekey fetch answer, with a fresh
    /// one-time prekey.
    pub fn bundle_node(&mut self, jid: &str) -> anyhow::Result<Node> {
        let id = self.next_prekey;
        self.next_prekey += 1;
        let one_time = KeyPair::generate(&mut rand::rng());
        self.prekeys
            .insert(id, PreKeyRecord::new(PreKeyId::from(id), &one_time));
        let signed_public = self.signed_prekey.public_key()?;
        Ok(bundle_node(
            jid,
            self.registration_id,
            self.identity.public_key().public_key_bytes(),
            Some((id, one_time.public_key.public_key_bytes())),
            (
                SIGNED_PREKEY_ID,
                signed_public.public_key_bytes(),
                &self.signed_prekey.signature()?,
            ),
        ))
    }

    /// Encrypts `message` for the linked device `to` (a session is started from `device`'s
    /// registered keys when there is none). Returns the `<enc>` node.
    pub async fn encrypt(
        &mut self,
        to: &ProtocolAddress,
        device: &mut Registration,
        message: &wa::Message,
    ) -> anyhow::Result<Node> {
        if self.sessions.get(to).is_none_or(|s| s.session_state().is_none()) {
            let prekey = device.prekeys.pop();
            let bundle = PreKeyBundle::new(
                device.registration_id,
                to.device_id(),
                prekey
                    .map(|(id, key)| Ok::<_, SignalProtocolError>((PreKeyId::from(id), djb(&key)?)))
                    .transpose()?,
                SignedPreKeyId::from(device.signed_prekey.0),
                djb(&device.signed_prekey.1)?,
                device.signed_prekey.2.clone(),
                IdentityKey::new(djb(&device.identity)?),
            )?;
            let mut sessions = SessionMap(std::mem::take(&mut self.sessions));
            let outcome = process_prekey_bundle(
                to,
                &mut sessions,
                &mut Identities(self),
                &bundle,
                // A Send generator: the thread-local one cannot be held across an await.
                &mut OsRng.unwrap_err(),
                UsePQRatchet::No,
            )
            .await;
            self.sessions = sessions.0;
            outcome.context("starting a session from the device's prekeys")?;
        }
        let plain = MessageUtils::pad_message_v2(message.encode_to_vec());
        let mut sessions = SessionMap(std::mem::take(&mut self.sessions));
        let outcome = message_encrypt(&plain, to, &mut sessions, &mut Identities(self)).await;
        self.sessions = sessions.0;
        let sealed = outcome.context("encrypting")?;
        let kind = match sealed.message_type() {
            CiphertextMessageType::PreKey => "pkmsg",
            _ => "msg",
        };
        Ok(NodeBuilder::new("enc")
            .attr("v", "2")
            .attr("type", kind)
            .bytes(sealed.serialize().to_vec())
            .build())
    }

    /// Decrypts an `<enc>` of type `kind` (`pkmsg` or `msg`) from the device `from`.
    pub async fn decrypt(&mut self, from: &ProtocolAddress, kind: &str, bytes: &[u8]) -> anyhow::Result<wa::Message> {
        let sealed = match kind {
            "pkmsg" => CiphertextMessage::PreKeySignalMessage(PreKeySignalMessage::try_from(bytes)?),
            "msg" => CiphertextMessage::SignalMessage(SignalMessage::try_from(bytes)?),
            other => anyhow::bail!("cannot decrypt `{other}` messages"),
        };
        let mut sessions = SessionMap(std::mem::take(&mut self.sessions));
        let mut keys = Keys {
            prekeys: std::mem::take(&mut self.prekeys),
            signed: self.signed_prekey.clone(),
        };
        let signed = Keys {
            prekeys: HashMap::new(),
            signed: self.signed_prekey.clone(),
        };
        let outcome = message_decrypt(
            &sealed,
            from,
            &mut sessions,
            &mut Identities(self),
            &mut keys,
            &signed,
            &mut OsRng.unwrap_err(),
            UsePQRatchet::No,
        )
        .await;
        self.sessions = sessions.0;
        self.prekeys = keys.prekeys;
        let plain = outcome.context("decrypting")?;
        let unpadded = MessageUtils::unpad_message_ref(&plain, 2)?;
        Ok(wa::Message::decode(unpadded)?)
    }
}

/// A `<user>` of a prekey fetch answer.
pub(crate) fn bundle_node(
    jid: &str,
    registration_id: u32,
    identity: &[u8],
    prekey: Option<(u32, &[u8])>,
    signed: (u32, &[u8], &[u8]),
) -> Node {
    let id3 = |id: u32| id.to_be_bytes()[1..].to_vec();
    let mut children = vec![
        NodeBuilder::new("registration")
            .bytes(registration_id.to_be_bytes().to_vec())
            .build(),
        NodeBuilder::new("type").bytes(vec![5]).build(),
        NodeBuilder::new("identity").bytes(identity.to_vec()).build(),
    ];
    if let Some((id, key)) = prekey {
        children.push(
            NodeBuilder::new("key")
                .children([
                    NodeBuilder::new("id").bytes(id3(id)).build(),
                    NodeBuilder::new("value").bytes(key.to_vec()).build(),
                ])
                .build(),
        );
    }
    children.push(
        NodeBuilder::new("skey")
            .children([
                NodeBuilder::new("id").bytes(id3(signed.0)).build(),
                NodeBuilder::new("value").bytes(signed.1.to_vec()).build(),
                NodeBuilder::new("signature").bytes(signed.2.to_vec()).build(),
            ])
            .build(),
    );
    NodeBuilder::new("user").attr("jid", jid).children(children).build()
}

fn djb(bytes: &[u8]) -> SignalResult<PublicKey> {
    PublicKey::from_djb_public_key_bytes(bytes).map_err(Into::into)
}

/// Sessions, borrowed out of a [`PhoneSignal`] for one libsignal call.
struct SessionMap(HashMap<ProtocolAddress, SessionRecord>);

#[async_trait]
impl SessionStore for SessionMap {
    async fn load_session(&self, address: &ProtocolAddress) -> SignalResult<Option<SessionRecord>> {
        Ok(self.0.get(address).cloned())
    }

    async fn store_session(&mut self, address: &ProtocolAddress, record: &SessionRecord) -> SignalResult<()> {
        self.0.insert(address.clone(), record.clone());
        Ok(())
    }
}

/// The identity part of a [`PhoneSignal`].
struct Identities<'a>(&'a mut PhoneSignal);

#[async_trait]
impl IdentityKeyStore for Identities<'_> {
    async fn get_identity_key_pair(&self) -> SignalResult<IdentityKeyPair> {
        Ok(self.0.identity.clone())
    }

    async fn get_local_registration_id(&self) -> SignalResult<u32> {
        Ok(self.0.registration_id)
    }

    async fn save_identity(
        &mut self,
        address: &ProtocolAddress,
        identity: &IdentityKey,
    ) -> SignalResult<IdentityChange> {
        let previous = self.0.identities.insert(address.clone(), *identity);
        Ok(IdentityChange::from_changed(previous.is_some_and(|p| p != *identity)))
    }

    async fn is_trusted_identity(
        &self,
        _address: &ProtocolAddress,
        _identity: &IdentityKey,
        _direction: Direction,
    ) -> SignalResult<bool> {
        Ok(true)
    }

    async fn get_identity(&self, address: &ProtocolAddress) -> SignalResult<Option<IdentityKey>> {
        Ok(self.0.identities.get(address).copied())
    }
}

/// Prekeys, borrowed out of a [`PhoneSignal`] for one libsignal call.
struct Keys {
    /// One-time prekeys.
    prekeys: HashMap<u32, PreKeyRecord>,
    /// The signed prekey.
    signed: SignedPreKeyRecord,
}

#[async_trait]
impl PreKeyStore for Keys {
    async fn get_pre_key(&self, prekey_id: PreKeyId) -> SignalResult<PreKeyRecord> {
        self.prekeys
            .get(&u32::from(prekey_id))
            .cloned()
            .ok_or(SignalProtocolError::InvalidPreKeyId)
    }

    async fn save_pre_key(&mut self, prekey_id: PreKeyId, record: &PreKeyRecord) -> SignalResult<()> {
        self.prekeys.insert(prekey_id.into(), record.clone());
        Ok(())
    }

    async fn remove_pre_key(&mut self, prekey_id: PreKeyId) -> SignalResult<()> {
        self.prekeys.remove(&u32::from(prekey_id));
        Ok(())
    }
}

#[async_trait]
impl SignedPreKeyStore for Keys {
    async fn get_signed_pre_key(&self, _id: SignedPreKeyId) -> SignalResult<SignedPreKeyRecord> {
        Ok(self.signed.clone())
    }

    async fn save_signed_pre_key(&mut self, _id: SignedPreKeyId, _record: &SignedPreKeyRecord) -> SignalResult<()> {
        Ok(())
    }
}
