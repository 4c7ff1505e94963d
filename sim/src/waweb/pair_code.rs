//! Linking a companion with a pairing code typed on the phone, as WhatsApp does it:
//!
//! 1. `companion_hello`: the companion sends its ephemeral key wrapped with the code (PBKDF2 +
//!    AES-CTR) and gets a pairing ref; the server never learns the code.
//! 2. The phone's user types the code ([`enter`]): the phone unwraps the companion's key, wraps an
//!    ephemeral key of its own with the same code and sends it with its identity key
//!    (`link_code_companion_reg` notification).
//! 3. `companion_finish`: the companion sends a key bundle (its identity, the phone's identity, a
//!    random secret) encrypted under the two ephemeral keys' agreement. Only a phone that typed
//!    the right code can open it; it derives the new ADV secret from the bundle and vouches for
//!    the companion with a `pair-success`, as after a QR scan.

use std::sync::Arc;
use std::time::Duration;

use aes_gcm::aead::{Aead, KeyInit};
use anyhow::{Context, bail};
use hkdf::Hkdf;
use sha2::Sha256;
use tokio::sync::oneshot;
use wa_rs_binary::builder::NodeBuilder;
use wa_rs_binary::node::Node;
use wa_rs_core::pair_code::PairCodeUtils;
use wa_rs_libsignal::protocol::{KeyPair, PublicKey};

use super::Network;
use super::model::{ConnState, Model, Out};
use super::nodes::{attr, child_bytes, error, result};

/// How long [`enter`] waits for the companion to finish after the code was typed.
const FINISH_TIMEOUT: Duration = Duration::from_secs(30);

/// A companion that asked for a pairing code and waits for the phone.
pub(crate) struct CodeRequest {
    /// The number the companion wants to be linked to.
    pub phone: String,
    /// The ref the server gave it; `companion_finish` names it.
    pub pairing_ref: String,
    /// The companion's ephemeral key, wrapped with the code (salt, IV, ciphertext).
    pub wrapped_ephemeral: Vec<u8>,
    /// Set once the phone's user typed a code.
    pub entered: Option<Entered>,
}

/// What the phone keeps between typing the code and the companion's key bundle.
pub(crate) struct Entered {
    /// The phone's ephemeral key pair for this link.
    primary_ephemeral: KeyPair,
    /// The companion's ephemeral key as unwrapped with the typed code (garbage if it was wrong).
    companion_ephemeral: [u8; 32],
    /// Told the outcome: the linked device's JID, or why it failed.
    done: oneshot::Sender<anyhow::Result<String>>,
}

/// Whether `node` is a pair-code request (`link_code_companion_reg`).
pub(crate) fn is_request(node: &Node) -> bool {
    node.tag == "iq" && node.get_optional_child("link_code_companion_reg").is_some()
}

/// Answers a companion's `companion_hello` or `companion_finish` on connection `conn`.
pub(crate) fn on_request(model: &mut Model, conn: u64, node: &Node) {
    let Some(reg) = node.get_optional_child("link_code_companion_reg") else {
        return;
    };
    let answer = match attr(reg, "stage").as_deref() {
        Some("companion_hello") => hello(model, conn, node, reg),
        Some("companion_finish") => finish(model, conn, node, reg),
        _ => Err((400, "bad-request", "unknown stage".into())),
    };
    let answer = answer.unwrap_or_else(|(code, text, why)| {
        tracing::info!(%why, "pair-code request refused");
        error(node, code, text)
    });
    model.send(conn, answer);
}

/// A refusal: IQ error code, error text, and the reason for the log.
type Refusal = (u16, &'static str, String);

/// Stage 1: remember the companion's wrapped key and give it a ref.
fn hello(model: &mut Model, conn: u64, node: &Node, reg: &Node) -> Result<Node, Refusal> {
    let phone = attr(reg, "jid")
        .and_then(|jid| jid.split('@').next().map(str::to_owned))
        .filter(|p| p.len() >= 7 && p.bytes().all(|b| b.is_ascii_digit()))
        .ok_or((400, "bad-request", "no phone number in the request".into()))?;
    let wrapped = child_bytes(reg, "link_code_pairing_wrapped_companion_ephemeral_pub")
        .filter(|w| w.len() == 80)
        .ok_or((400, "bad-request", "no wrapped ephemeral key".into()))?;
    let noise_key = child_bytes(reg, "companion_server_auth_key_pub");
    let Some(ConnState::Pairing(pairing)) = model.conns.get_mut(&conn).map(|c| &mut c.state) else {
        return Err((401, "not-authorized", "the connection is not pairing".into()));
    };
    if noise_key.as_deref() != Some(pairing.registration.noise_key.as_slice()) {
        return Err((400, "bad-request", "the server auth key is not the connection's".into()));
    }
    let pairing_ref = super::pairing::new_ref();
    pairing.code_request = Some(CodeRequest {
        phone,
        pairing_ref: pairing_ref.clone(),
        wrapped_ephemeral: wrapped,
        entered: None,
    });
    Ok(result(
        node,
        vec![
            NodeBuilder::new("link_code_companion_reg")
                .children([NodeBuilder::new("link_code_pairing_ref")
                    .bytes(pairing_ref.into_bytes())
                    .build()])
                .build(),
        ],
    ))
}

/// Stage 3: the phone opens the key bundle and links the companion.
fn finish(model: &mut Model, conn: u64, node: &Node, reg: &Node) -> Result<Node, Refusal> {
    let named_ref = child_bytes(reg, "link_code_pairing_ref").unwrap_or_default();
    let Some(ConnState::Pairing(pairing)) = model.conns.get_mut(&conn).map(|c| &mut c.state) else {
        return Err((401, "not-authorized", "the connection is not pairing".into()));
    };
    let request = pairing
        .code_request
        .take_if(|r| r.pairing_ref.as_bytes() == named_ref && r.entered.is_some())
        .ok_or((404, "item-not-found", "no typed code waits for this ref".into()))?;
    let identity: [u8; 32] = pairing.registration.identity.as_slice().try_into().unwrap_or([0; 32]);
    let entered = request.entered.expect("checked above");
    let phone = request.phone;
    let primary = &model.account(&phone).adv_key;
    let opened = open_bundle(&entered, primary, &identity, reg);
    let outcome = match opened {
        Ok(adv_secret) => super::pairing::link(model, conn, &phone, &identity, &adv_secret),
        Err(err) => Err(err),
    };
    let answer = match &outcome {
        Ok(_) => Ok(result(node, Vec::new())),
        Err(err) => Err((401, "not-authorized", format!("{err:#}"))),
    };
    let _ = entered.done.send(outcome);
    answer
}

/// Decrypts the companion's key bundle with the ephemeral agreement, checks it names both
/// identities, and derives the ADV secret the phone signs the device identity with.
fn open_bundle(entered: &Entered, primary: &KeyPair, identity: &[u8; 32], reg: &Node) -> anyhow::Result<[u8; 32]> {
    let wrapped = child_bytes(reg, "link_code_pairing_wrapped_key_bundle").context("no key bundle")?;
    if wrapped.len() < 32 + 12 + 16 {
        bail!("the key bundle is too short");
    }
    let companion_ephemeral = PublicKey::from_djb_public_key_bytes(&entered.companion_ephemeral)?;
    let ephemeral_shared = entered
        .primary_ephemeral
        .private_key
        .calculate_agreement(&companion_ephemeral)?;
    let (salt, rest) = wrapped.split_at(32);
    let (iv, ciphertext) = rest.split_at(12);
    let mut key = [0u8; 32];
    Hkdf::<Sha256>::new(Some(salt), &ephemeral_shared)
        .expand(b"link_code_pairing_key_bundle_encryption_key", &mut key)
        .map_err(|_| anyhow::anyhow!("deriving the bundle key"))?;
    let bundle = aes_gcm::Aes256Gcm::new_from_slice(&key)
        .context("bundle cipher")?
        .decrypt(aes_gcm::Nonce::from_slice(iv), ciphertext)
        .map_err(|_| {
            anyhow::anyhow!("the key bundle does not open: the code typed on the phone is not the companion's")
        })?;
    let [companion_id, primary_id, random] = [0, 32, 64].map(|at| bundle.get(at..at + 32).unwrap_or_default());
    if companion_id != identity || child_bytes(reg, "companion_identity_public").as_deref() != Some(identity) {
        bail!("the key bundle names another companion identity");
    }
    if primary_id != primary.public_key.public_key_bytes() || random.len() != 32 {
        bail!("the key bundle names another phone");
    }
    let identity_shared = primary
        .private_key
        .calculate_agreement(&PublicKey::from_djb_public_key_bytes(identity)?)?;
    let secret = [&ephemeral_shared[..], &identity_shared, random].concat();
    let mut adv_secret = [0u8; 32];
    Hkdf::<Sha256>::new(None, &secret)
        .expand(b"adv_secret", &mut adv_secret)
        .map_err(|_| anyhow::anyhow!("deriving the ADV secret"))?;
    Ok(adv_secret)
}

/// The phone of `phone` types `code` (Linked devices → Link with phone number): the companion
/// waiting for this number is sent the phone's wrapped key, and linked once its key bundle
/// opens. Returns the linked device's JID; a wrong code fails when the bundle does not open.
pub(crate) async fn enter(net: &Arc<Network>, phone: &str, code: &str) -> anyhow::Result<String> {
    // Phones show the code as `XXXX-XXXX`; the dash is not part of it.
    let code: String = code.trim().replace('-', "").to_uppercase();
    if !PairCodeUtils::validate_code(&code) {
        bail!("a pairing code is 8 characters of 1-9 and A-Z without I, O and U");
    }
    let (conn, wrapped) = {
        let model = net.lock();
        model
            .conns
            .iter()
            .find_map(|(id, c)| match &c.state {
                ConnState::Pairing(p) => p
                    .code_request
                    .as_ref()
                    .filter(|r| r.phone == phone && r.entered.is_none())
                    .map(|r| (*id, r.wrapped_ephemeral.clone())),
                ConnState::LoggedIn { .. } => None,
            })
            .context("no companion waits for a code for this number")?
    };
    // Two PBKDF2 runs of 131,072 rounds: off the async threads.
    let typed = code.clone();
    let (companion_ephemeral, primary_ephemeral, wrapped_primary) = tokio::task::spawn_blocking(move || {
        let companion = PairCodeUtils::decrypt_primary_ephemeral_pub(&wrapped, &typed)?;
        let primary = KeyPair::generate(&mut rand::rng());
        let key: [u8; 32] = primary.public_key.public_key_bytes().try_into()?;
        anyhow::Ok((companion, primary, PairCodeUtils::encrypt_ephemeral_pub(&key, &typed)))
    })
    .await
    .context("the key unwrapping task")??;
    let (done, outcome) = oneshot::channel();
    {
        let mut model = net.lock();
        let identity = model.account(phone).adv_key.public_key.public_key_bytes().to_vec();
        let id = model.iq_id();
        let c = model.conns.get_mut(&conn).context("the companion went away")?;
        let ConnState::Pairing(pairing) = &mut c.state else {
            bail!("the companion is no longer pairing");
        };
        let request = pairing
            .code_request
            .as_mut()
            .context("the companion's request is gone")?;
        request.entered = Some(Entered {
            primary_ephemeral,
            companion_ephemeral,
            done,
        });
        let pairing_ref = request.pairing_ref.clone().into_bytes();
        let notification = NodeBuilder::new("notification")
            .attr("from", wa_rs_binary::jid::SERVER_JID)
            .attr("id", id)
            .attr("type", "link_code_companion_reg")
            .children([NodeBuilder::new("link_code_companion_reg")
                .attr("stage", "primary_hello")
                .children([
                    NodeBuilder::new("link_code_pairing_wrapped_primary_ephemeral_pub")
                        .bytes(wrapped_primary.to_vec())
                        .build(),
                    NodeBuilder::new("primary_identity_pub").bytes(identity).build(),
                    NodeBuilder::new("link_code_pairing_ref").bytes(pairing_ref).build(),
                ])
                .build()])
            .build();
        let _ = c.tx.send(Out::Node(notification));
    }
    tokio::time::timeout(FINISH_TIMEOUT, outcome)
        .await
        .context("the companion did not finish linking")?
        .context("the companion went away")?
}
