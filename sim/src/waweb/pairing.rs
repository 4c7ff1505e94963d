//! Linking a companion by QR code: refs for the companion to show, a phone that scans one and
//! vouches for the companion's identity key (the ADV signed device identity), and the
//! companion's counter-signature that completes the link.

use anyhow::{Context, bail};
use base64::Engine as _;
use base64::prelude::BASE64_STANDARD;
use hmac::{Hmac, Mac};
use prost::Message as _;
use rand::Rng;
use wa_rs_binary::builder::NodeBuilder;
use wa_rs_binary::node::{Node, NodeContent};
use wa_rs_libsignal::protocol::PublicKey;
use wa_rs_proto::whatsapp as wa;

use super::model::{ConnState, LinkedDevice, Model, Out, Pairing};
use super::nodes::{iq, now_secs, stream_error};

/// Prefix of the phone's signature over a companion's identity (`ADV_PREFIX_ACCOUNT_SIGNATURE`).
const ACCOUNT_SIGNATURE_PREFIX: &[u8] = &[6, 0];
/// Prefix of the companion's counter-signature (`ADV_PREFIX_DEVICE_SIGNATURE_GENERATE`).
const DEVICE_SIGNATURE_PREFIX: &[u8] = &[6, 1];

/// A new pairing ref, in the shape WhatsApp uses (opaque, comma-free).
pub(crate) fn new_ref() -> String {
    let bytes: [u8; 18] = rand::rng().random();
    format!("2@{}", BASE64_STANDARD.encode(bytes))
}

/// The `pair-device` IQ that gives a companion a ref to show as a QR code.
pub(crate) fn pair_device(id: String, pairing_ref: &str) -> Node {
    iq(id, "set", "md")
        .children([NodeBuilder::new("pair-device")
            .children([NodeBuilder::new("ref").bytes(pairing_ref.as_bytes().to_vec()).build()])
            .build()])
        .build()
}

/// What a QR code carries: `ref,noise key,identity key,adv secret` (base64 keys), and since
/// 2025 a fifth part, the companion's platform (`…,adv secret,1`); WhatsApp Web and Baileys
/// show it behind `https://wa.me/settings/linked_devices#`, which the phone's camera accepts too.
pub(crate) struct QrPayload {
    /// The ref the server issued.
    pub pairing_ref: String,
    /// The companion's Noise static key.
    pub noise_key: [u8; 32],
    /// The companion's Signal identity key.
    pub identity_key: [u8; 32],
    /// The secret the phone authenticates the device identity with.
    pub adv_secret: [u8; 32],
}

/// The link prefix a QR code may carry before its fields.
const QR_LINK_PREFIX: &str = "https://wa.me/settings/linked_devices#";

impl QrPayload {
    /// Parses a QR code as the phone's camera reads it.
    pub fn parse(code: &str) -> anyhow::Result<QrPayload> {
        let body = code.trim();
        let body = body.strip_prefix(QR_LINK_PREFIX).unwrap_or(body);
        let parts: Vec<&str> = body.split(',').collect();
        let (pairing_ref, noise, identity, adv) = match parts[..] {
            [pairing_ref, noise, identity, adv] => (pairing_ref, noise, identity, adv),
            [pairing_ref, noise, identity, adv, platform] => {
                if platform.is_empty() || !platform.bytes().all(|b| b.is_ascii_digit()) {
                    bail!("a QR code's fifth part is the companion's platform, a number");
                }
                (pairing_ref, noise, identity, adv)
            }
            _ => bail!("a QR code has four or five comma-separated parts"),
        };
        let key = |b64: &str, what: &str| -> anyhow::Result<[u8; 32]> {
            BASE64_STANDARD
                .decode(b64)
                .with_context(|| format!("the {what} is not base64"))?
                .try_into()
                .map_err(|_| anyhow::anyhow!("the {what} is not 32 bytes"))
        };
        Ok(QrPayload {
            pairing_ref: pairing_ref.to_owned(),
            noise_key: key(noise, "noise key")?,
            identity_key: key(identity, "identity key")?,
            adv_secret: key(adv, "ADV secret")?,
        })
    }
}

/// The phone of `phone` scans `code`: the connection that shows it (its newest ref) gets a
/// `pair-success` with a device identity signed by the account. Returns the device's JID.
pub(crate) fn scan(model: &mut Model, code: &str, phone: &str) -> anyhow::Result<String> {
    let qr = QrPayload::parse(code)?;
    let conn_id = model
        .conns
        .iter()
        .find_map(|(id, conn)| match &conn.state {
            ConnState::Pairing(p)
                if p.linking.is_none()
                    && p.refs.last() == Some(&qr.pairing_ref)
                    && p.registration.noise_key == qr.noise_key =>
            {
                Some(*id)
            }
            _ => None,
        })
        .context("no companion shows this QR code (expired, already linked, or never issued)")?;
    link(model, conn_id, phone, &qr.identity_key, &qr.adv_secret)
}

/// Sends `pair-success` to connection `conn_id` for the account of `phone`.
pub(crate) fn link(
    model: &mut Model,
    conn_id: u64,
    phone: &str,
    identity_key: &[u8; 32],
    adv_secret: &[u8; 32],
) -> anyhow::Result<String> {
    let account = model.account(phone);
    let device = account.next_device;
    account.next_device += 1;
    let lid = account.lid.clone();
    let identity = signed_device_identity(&account.adv_key, identity_key, adv_secret, device)?;
    let id = model.iq_id();
    let conn = model.conns.get_mut(&conn_id).context("the companion went away")?;
    let ConnState::Pairing(pairing) = &mut conn.state else {
        bail!("the companion is not pairing");
    };
    let Pairing {
        registration, linking, ..
    } = &mut **pairing;
    if registration.identity != identity_key {
        bail!("the QR code's identity key is not the one the companion registered");
    }
    let linked = LinkedDevice {
        phone: phone.to_owned(),
        device,
        registration: registration.clone(),
    };
    let jid = linked.jid();
    let success = iq(id.clone(), "set", "md")
        .attr("t", now_secs().to_string())
        .children([NodeBuilder::new("pair-success")
            .children([
                NodeBuilder::new("device-identity")
                    .attr("key-index", device.to_string())
                    .bytes(identity)
                    .build(),
                NodeBuilder::new("platform").attr("name", "smba").build(),
                NodeBuilder::new("device")
                    .attr("jid", jid.clone())
                    .attr("lid", format!("{lid}:{device}@lid"))
                    .build(),
                NodeBuilder::new("biz").attr("name", format!("Sim {phone}")).build(),
            ])
            .build()])
        .build();
    *linking = Some((id, linked));
    let _ = conn.tx.send(Out::Node(success));
    Ok(jid)
}

/// The `ADVSignedDeviceIdentityHMAC` a phone gives a companion: details (device id, key index,
/// time) signed by the account key over the companion's identity, wrapped in an HMAC with the
/// companion's ADV secret.
fn signed_device_identity(
    account: &wa_rs_libsignal::protocol::KeyPair,
    identity_key: &[u8; 32],
    adv_secret: &[u8; 32],
    device: u16,
) -> anyhow::Result<Vec<u8>> {
    let details = wa::AdvDeviceIdentity {
        raw_id: Some(rand::rng().random()),
        timestamp: Some(now_secs()),
        key_index: Some(u32::from(device)),
        account_type: None,
        device_type: None,
    }
    .encode_to_vec();
    let message = [ACCOUNT_SIGNATURE_PREFIX, &details, identity_key].concat();
    let signature = account
        .private_key
        .calculate_signature(&message, &mut rand::rng())
        .context("signing the device identity")?;
    let signed = wa::AdvSignedDeviceIdentity {
        details: Some(details),
        account_signature_key: Some(account.public_key.public_key_bytes().to_vec()),
        account_signature: Some(signature.to_vec()),
        device_signature: None,
    }
    .encode_to_vec();
    let mut mac = <Hmac<sha2::Sha256> as Mac>::new_from_slice(adv_secret).context("ADV secret")?;
    mac.update(&signed);
    Ok(wa::AdvSignedDeviceIdentityHmac {
        details: Some(signed),
        hmac: Some(mac.finalize().into_bytes().to_vec()),
        account_type: None,
    }
    .encode_to_vec())
}

/// What a node meant for a pairing in progress.
pub(crate) enum Signed {
    /// It is not the answer to a `pair-success`.
    NotASignature,
    /// The companion's signature did not hold: not linked.
    Refused,
    /// The companion (number, device id) is linked.
    Linked(String, u16),
}

/// The companion answered `pair-success` with its counter-signed identity: when the signature
/// holds, the device is linked and the stream restarts (515) so that it logs in.
pub(crate) fn on_signed(model: &mut Model, conn_id: u64, node: &Node) -> Signed {
    let Some(conn) = model.conns.get_mut(&conn_id) else {
        return Signed::NotASignature;
    };
    let ConnState::Pairing(pairing) = &mut conn.state else {
        return Signed::NotASignature;
    };
    let linking = &mut pairing.linking;
    let id = node.attrs.get("id").map(|v| v.to_string_value());
    if linking.as_ref().map(|(pending, _)| Some(pending)) != Some(id.as_ref()) {
        return Signed::NotASignature;
    }
    let Some((_, linked)) = linking.take() else {
        return Signed::NotASignature;
    };
    let tx = conn.tx.clone();
    match verify_device_signature(model, &linked, node) {
        Ok(()) => {
            tracing::info!(jid = %linked.jid(), "companion linked");
            model.pairings += 1;
            let key = (linked.phone.clone(), linked.device);
            model.devices.insert(key.clone(), linked);
            let _ = tx.send(Out::Last(stream_error("515")));
            Signed::Linked(key.0, key.1)
        }
        Err(err) => {
            tracing::warn!(%err, "the companion's signed identity does not hold; not linked");
            let _ = tx.send(Out::Last(stream_error("401")));
            Signed::Refused
        }
    }
}

/// Checks the companion's device signature over (details, its identity, the account key).
fn verify_device_signature(model: &Model, linked: &LinkedDevice, node: &Node) -> anyhow::Result<()> {
    let bytes = node
        .get_optional_child("pair-device-sign")
        .and_then(|n| n.get_optional_child("device-identity"))
        .and_then(|n| match &n.content {
            Some(NodeContent::Bytes(b)) => Some(b.clone()),
            _ => None,
        })
        .context("no device-identity in the answer")?;
    let signed = wa::AdvSignedDeviceIdentity::decode(bytes.as_slice()).context("decoding the identity")?;
    let account = model.accounts.get(&linked.phone).context("the account is gone")?;
    let account_key = account.adv_key.public_key.public_key_bytes();
    let message = [
        DEVICE_SIGNATURE_PREFIX,
        signed.details(),
        &linked.registration.identity,
        account_key,
    ]
    .concat();
    let identity = PublicKey::from_djb_public_key_bytes(&linked.registration.identity)?;
    // The companion may leave the account key out of its answer (Baileys does, as WhatsApp Web
    // once did): the server knows it. One that is there must be the account's.
    if signed
        .account_signature_key
        .as_deref()
        .is_some_and(|key| key != account_key)
    {
        bail!("the answer names another account key");
    }
    if !identity.verify_signature(&message, signed.device_signature()) {
        bail!("device signature mismatch");
    }
    Ok(())
}
