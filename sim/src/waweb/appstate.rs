//! App state (`w:sync:app:state`): the account's synced settings, contacts and chat state, in
//! collections encrypted with keys the phone shares with each companion.
//!
//! The simulated accounts hold no app state yet: every collection is empty at version 0. What a
//! new companion needs is still what WhatsApp gives it: the phone's share of the app state key
//! right after linking (a protocol message, end-to-end encrypted like any other), and answers to
//! its sync requests that name every collection it asked for.

use std::sync::Arc;

use rand::Rng;
use wa_rs_binary::builder::NodeBuilder;
use wa_rs_binary::node::Node;
use wa_rs_proto::whatsapp as wa;

use super::Network;
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

/// Answers a sync request: each requested `<collection>`, empty, at version 0.
pub(crate) fn answer_sync(request: &Node) -> Node {
    let Some(sync) = request.get_optional_child("sync") else {
        return error(request, 400, "bad-request");
    };
    let collections: Vec<Node> = sync
        .get_children_by_tag("collection")
        .filter_map(|c| attr(c, "name"))
        .map(|name| {
            NodeBuilder::new("collection")
                .attr("name", name)
                .attr("version", "0")
                .build()
        })
        .collect();
    result(request, vec![NodeBuilder::new("sync").children(collections).build()])
}

/// The phone of `phone` shares its app state key with its newly linked companion `device`, as
/// phones do right after linking (the companion waits for it before its first sync).
pub(crate) async fn share_key(net: Arc<Network>, phone: String, device: u16) {
    let key = {
        let mut model = net.lock();
        let account = model.account(&phone);
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
    if let Err(err) = super::chat::phone_sends_to(&net, &phone, &phone, &[device], message).await {
        tracing::warn!(error = %format!("{err:#}"), %phone, device, "sharing the app state key failed");
    }
}
