//! The phone's address book as app state: each name the phone saves for a contact is a
//! `contact` mutation in the account's `critical_unblock_low` collection, encrypted and
//! authenticated with the account's app state key as the phone does it (wa-rs-appstate's LTHash
//! and MACs), one numbered patch per change. A companion that syncs the collection from version
//! `v` gets every patch after `v`; one online when a name changes is told by a `server_sync`
//! notification and fetches it.

use std::collections::HashMap;

use anyhow::Context as _;
use hmac::{Hmac, Mac};
use prost::Message as _;
use rand::Rng;
use wa_rs_appstate::hash::{HashState, generate_content_mac, generate_patch_mac};
use wa_rs_binary::builder::NodeBuilder;
use wa_rs_proto::whatsapp as wa;
use wa_rs_proto::whatsapp::syncd_mutation::SyncdOperation;

use super::appstate::AppStateKey;
use super::model::Model;
use super::nodes::now_secs;

/// The collection saved contacts live in.
pub(crate) const COLLECTION: &str = "critical_unblock_low";

/// An account's `critical_unblock_low` collection.
#[derive(Default)]
pub(crate) struct AddressBook {
    /// Its patches, encoded; the `i`th has version `i + 1`.
    patches: Vec<Vec<u8>>,
    /// The LTHash of what is set after the last patch.
    hash: HashState,
    /// The value MAC of each index MAC set now: what a later mutation of that index replaces.
    values: HashMap<Vec<u8>, Vec<u8>>,
}

impl AddressBook {
    /// The collection's version: how many patches it has.
    pub fn version(&self) -> u64 {
        self.patches.len() as u64
    }

    /// The patches after `version`, encoded, oldest first.
    pub fn after(&self, version: u64) -> &[Vec<u8>] {
        let from = usize::try_from(version).unwrap_or(usize::MAX).min(self.patches.len());
        &self.patches[from..]
    }

    /// The phone saves `name` for `contact` (digits) whose LID is `lid`, or removes the contact
    /// from its address book when `name` is empty: one patch, sealed with `key`.
    pub fn save(&mut self, key: &AppStateKey, contact: &str, lid: &str, name: &str) -> anyhow::Result<()> {
        let keys = wa_rs_appstate::expand_app_state_keys(&key.data);
        let index = serde_json::to_vec(&["contact", &format!("{contact}@s.whatsapp.net")])?;
        let index_mac = {
            let mut mac = Hmac::<sha2::Sha256>::new_from_slice(&keys.index).context("an index key")?;
            mac.update(&index);
            mac.finalize().into_bytes().to_vec()
        };
        let operation = if name.is_empty() {
            SyncdOperation::Remove
        } else {
            SyncdOperation::Set
        };
        let action = wa::SyncActionValue {
            timestamp: i64::try_from(now_secs() * 1000).ok(),
            contact_action: (!name.is_empty()).then(|| wa::sync_action_value::ContactAction {
                full_name: Some(name.to_owned()),
                first_name: name.split_whitespace().next().map(str::to_owned),
                lid_jid: Some(format!("{lid}@lid")),
                save_on_primary_addressbook: Some(true),
                ..Default::default()
            }),
            ..Default::default()
        };
        let data = wa::SyncActionData {
            index: Some(index),
            value: Some(action),
            padding: Some(Vec::new()),
            version: Some(2),
        };
        let iv: [u8; 16] = rand::rng().random();
        let mut blob = iv.to_vec();
        wa_rs_libsignal::crypto::aes_256_cbc_encrypt_into(
            &data.encode_to_vec(),
            &keys.value_encryption,
            &iv,
            &mut blob,
        )
        .map_err(|e| anyhow::anyhow!("encrypting a contact: {e:?}"))?;
        let value_mac = generate_content_mac(operation, &blob, &key.id, &keys.value_mac);
        blob.extend_from_slice(&value_mac);
        let key_id = || {
            Some(wa::KeyId {
                id: Some(key.id.clone()),
            })
        };
        let mutation = wa::SyncdMutation {
            operation: Some(operation as i32),
            record: Some(wa::SyncdRecord {
                index: Some(wa::SyncdIndex {
                    blob: Some(index_mac.clone()),
                }),
                value: Some(wa::SyncdValue { blob: Some(blob) }),
                key_id: key_id(),
            }),
        };
        let values = &self.values;
        let (_, updated) = self.hash.update_hash(std::slice::from_ref(&mutation), |index_mac, _| {
            Ok(values.get(index_mac).cloned())
        });
        updated?;
        match operation {
            SyncdOperation::Set => self.values.insert(index_mac, value_mac),
            SyncdOperation::Remove => self.values.remove(&index_mac),
        };
        let version = self.version() + 1;
        self.hash.version = version;
        let mut patch = wa::SyncdPatch {
            version: Some(wa::SyncdVersion { version: Some(version) }),
            mutations: vec![mutation],
            snapshot_mac: Some(self.hash.generate_snapshot_mac(COLLECTION, &keys.snapshot_mac)),
            key_id: key_id(),
            ..Default::default()
        };
        patch.patch_mac = Some(generate_patch_mac(&patch, COLLECTION, &keys.patch_mac, version));
        self.patches.push(patch.encode_to_vec());
        Ok(())
    }
}

/// The phone of `phone` saves `name` for `contact` (digits; an empty name removes it), and every
/// companion of the account online now is told the collection changed.
pub(crate) fn save(model: &mut Model, phone: &str, contact: &str, name: &str) -> anyhow::Result<()> {
    let lid = model.account(contact).lid.clone();
    let account = model.account(phone);
    account.address_book.save(&account.app_state_key, contact, &lid, name)?;
    let version = account.address_book.version();
    for conn in model.logged_in_conns(phone) {
        let notification = NodeBuilder::new("notification")
            .attr("from", wa_rs_binary::jid::SERVER_JID)
            .attr("id", model.iq_id())
            .attr("type", "server_sync")
            .attr("t", now_secs().to_string())
            .children([NodeBuilder::new("collection")
                .attr("name", COLLECTION)
                .attr("version", version.to_string())
                .build()])
            .build();
        model.send(conn, notification);
    }
    Ok(())
}
