//! App state (`w:sync:app:state`): the account's synced settings, contacts and chat state, in
//! collections encrypted with keys the phone shares with each companion.
//!
//! A new companion gets what WhatsApp gives it: the phone's share of the app state key right
//! after linking (a protocol message, end-to-end encrypted like any other), and answers to its
//! sync requests that name every collection it asked for. The one collection the simulated
//! accounts fill is the address book ([`super::contacts`]): its patches after the version asked
//! for. The patches a companion sends (archiving or pinning a chat, starring a message, deleting
//! one for itself) are accepted and read as the account's phone reads them, decrypted with the
//! key it shared: the settings they make are recorded for the tests. They are not kept as
//! collection versions, so a later sync brings the companion nothing of them back.

use std::sync::Arc;

use anyhow::Context as _;
use prost::Message as _;
use rand::Rng;
use wa_rs_binary::builder::NodeBuilder;
use wa_rs_binary::node::{Node, NodeContent};
use wa_rs_proto::whatsapp as wa;
use wafleet_core::link::{ChatSetting, Jid, MessageRef};
use wafleet_core::types::Timestamp;

use super::Network;
use super::model::Model;
use super::nodes::{attr, error, now_secs, result};

/// The app state key every simulated account shares with its companions: id and key data.
pub(crate) struct AppStateKey {
    /// The key's id (WhatsApp's are six bytes).
    pub id: Vec<u8>,
    /// The 32 bytes the collections' MAC and encryption keys are derived from.
    pub data: [u8; 32],
}

impl AppStateKey {
    /// A fresh key.
    pub fn generate() -> AppStateKey {
        let mut rng = rand::rng();
        let id: [u8; 6] = rng.random();
        AppStateKey {
            id: id.to_vec(),
            data: rng.random(),
        }
    }
}

/// Answers a sync request from a device of `phone`: each requested `<collection>` with its
/// patches after the version the device has (none but the address book's); the patches the
/// request carries are read as the phone reads them, their chat settings recorded.
pub(crate) fn answer_sync(model: &mut Model, phone: &str, request: &Node) -> Node {
    let Some(sync) = request.get_optional_child("sync") else {
        return error(request, 400, "bad-request");
    };
    for collection in sync.get_children_by_tag("collection") {
        for patch in collection.get_children_by_tag("patch") {
            let Some(NodeContent::Bytes(bytes)) = &patch.content else {
                continue;
            };
            match chat_settings(model, phone, bytes) {
                Ok(settings) => model.chat_settings.extend(settings),
                Err(err) => tracing::warn!(%phone, error = %format!("{err:#}"), "unreadable app state patch"),
            }
        }
    }
    let collections: Vec<Node> = sync
        .get_children_by_tag("collection")
        .filter_map(|c| {
            let name = attr(c, "name")?;
            // A device that asks for a snapshot has nothing yet.
            let has: u64 = attr(c, "version").and_then(|v| v.parse().ok()).unwrap_or(0);
            let collection = NodeBuilder::new("collection").attr("name", name.as_str());
            if name != super::contacts::COLLECTION {
                return Some(collection.attr("version", "0").build());
            }
            let book = &model.account(phone).address_book;
            let patches = book
                .after(has)
                .iter()
                .map(|patch| NodeBuilder::new("patch").bytes(patch.clone()).build());
            Some(
                collection
                    .attr("version", book.version().to_string())
                    .children([NodeBuilder::new("patches").children(patches).build()])
                    .build(),
            )
        })
        .collect();
    result(request, vec![NodeBuilder::new("sync").children(collections).build()])
}

/// The chat settings a patch from a device of `phone` makes, decrypted with the account's key:
/// (the account, the chat, the setting). Mutations of other kinds (the push name, mutes,
/// contacts) are left out.
fn chat_settings(model: &mut Model, phone: &str, patch: &[u8]) -> anyhow::Result<Vec<(String, Jid, ChatSetting)>> {
    let patch = wa::SyncdPatch::decode(patch).context("not a SyncdPatch")?;
    let key = &model.account(phone).app_state_key;
    let keys = wa_rs_appstate::expand_app_state_keys(&key.data);
    let mut settings = Vec::new();
    for mutation in &patch.mutations {
        let record = mutation.record.as_ref().context("a mutation without a record")?;
        let key_id = record.key_id.as_ref().and_then(|k| k.id.as_deref()).unwrap_or_default();
        anyhow::ensure!(key_id == key.id, "encrypted with a key the phone did not share");
        let operation = wa::syncd_mutation::SyncdOperation::try_from(mutation.operation.unwrap_or_default())
            .context("an unknown operation")?;
        let decoded = wa_rs_appstate::decode_record(operation, record, &keys, key_id, true)
            .map_err(|e| anyhow::anyhow!("undecryptable mutation: {e}"))?;
        if let Some(setting) = decoded
            .action_value
            .as_ref()
            .and_then(|v| setting_of(&decoded.index, v))
        {
            settings.push((phone.to_owned(), Jid(decoded.index[1].clone()), setting));
        }
    }
    Ok(settings)
}

/// The chat setting a mutation's index (`["archive", chat]`, `["pin_v1", chat]`, `["star", chat,
/// id, fromMe, participant]`, `["deleteMessageForMe", …]`) and value make, if it is one.
fn setting_of(index: &[String], value: &wa::SyncActionValue) -> Option<ChatSetting> {
    let message = || {
        Some(MessageRef {
            id: index.get(2)?.clone(),
            from_me: index.get(3)? == "1",
        })
    };
    match index.first()?.as_str() {
        _ if index.len() < 2 => None,
        "archive" => Some(ChatSetting::Archived {
            archived: value.archive_chat_action.as_ref()?.archived?,
        }),
        "pin_v1" => Some(ChatSetting::Pinned {
            pinned: value.pin_action.as_ref()?.pinned?,
        }),
        "star" => Some(ChatSetting::Starred {
            message: message()?,
            starred: value.star_action.as_ref()?.starred?,
        }),
        "deleteMessageForMe" => Some(ChatSetting::DeletedForMe {
            message: message()?,
            sent_at: value
                .delete_message_for_me_action
                .as_ref()?
                .message_timestamp
                .map(|secs| Timestamp(secs * 1000)),
        }),
        _ => None,
    }
}

/// The phone of `phone` shares its app state key with its newly linked companion `device`, as
/// phones do right after linking (the companion waits for it before its first sync).
pub(crate) async fn share_key(net: &Arc<Network>, phone: &str, device: u16) {
    let key = {
        let mut model = net.lock();
        let account = model.account(phone);
        (account.app_state_key.id.clone(), account.app_state_key.data)
    };
    let share = wa::message::AppStateSyncKeyShare {
        keys: vec![wa::message::AppStateSyncKey {
            key_id: Some(wa::message::AppStateSyncKeyId { key_id: Some(key.0) }),
            key_data: Some(wa::message::AppStateSyncKeyData {
                key_data: Some(key.1.to_vec()),
                fingerprint: Some(wa::message::AppStateSyncKeyFingerprint {
                    raw_id: Some(rand::rng().random()),
                    current_index: Some(0),
                    device_indexes: vec![0, u32::from(device)],
                }),
                timestamp: i64::try_from(now_secs() * 1000).ok(),
            }),
        }],
    };
    let message = wa::Message {
        protocol_message: Some(Box::new(wa::message::ProtocolMessage {
            r#type: Some(wa::message::protocol_message::Type::AppStateSyncKeyShare as i32),
            app_state_sync_key_share: Some(share),
            ..Default::default()
        })),
        ..Default::default()
    };
    if let Err(err) = super::chat::phone_sends_to(net, phone, phone, &[device], message).await {
        tracing::warn!(error = %format!("{err:#}"), %phone, device, "sharing the app state key failed");
    }
}
