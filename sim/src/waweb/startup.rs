//! What a client asks about itself after logging in, before and while it goes active: A/B
//! props, privacy settings, the blocklist, the digest of its keys on the server, its privacy
//! tokens. Each gets the answer WhatsApp gives an account with default settings.

use sha1::{Digest, Sha1};
use wa_rs_binary::builder::NodeBuilder;
use wa_rs_binary::node::Node;

use super::model::Model;
use super::nodes::{attr, error, result};

/// The A/B props hash the server reports; unchanged, so a client that has it asks for deltas.
const PROPS_HASH: &str = "sim-props-1";

/// Privacy settings of a new account, as `(category, value)`.
/// `abt` `<props>`: no experiments.
pub(crate) fn props(request: &Node) -> Node {
    let asked_hash = request.get_optional_child("props").and_then(|p| attr(p, "hash"));
    let mut props = NodeBuilder::new("props")
        .attr("protocol", "1")
        .attr("ab_key", "sim")
        .attr("hash", PROPS_HASH)
        .attr("refresh", "86400");
    if asked_hash.as_deref() == Some(PROPS_HASH) {
        props = props.attr("delta_update", "true");
    }
    result(request, vec![props.build()])
}

/// `privacy` `<privacy/>`: the account's settings (WhatsApp's defaults unless changed).
pub(crate) fn privacy(model: &Model, phone: &str, request: &Node) -> Node {
    let settings = model
        .accounts
        .get(phone)
        .map(|account| account.profile.privacy_settings())
        .unwrap_or_else(|| crate::control::Profile::default().privacy_settings());
    let categories = settings.into_iter().map(|(name, value)| {
        NodeBuilder::new("category")
            .attr("name", name)
            .attr("value", value)
            .build()
    });
    result(request, vec![NodeBuilder::new("privacy").children(categories).build()])
}

/// `blocklist`: nobody is blocked.
pub(crate) fn blocklist(request: &Node) -> Node {
    result(request, vec![NodeBuilder::new("list").build()])
}

/// `encrypt` `<digest/>`: the keys the server holds for the device, and their SHA-1 (identity,
/// signed prekey, its signature, then each one-time prekey), which the client compares with its
/// own.
pub(crate) fn key_digest(model: &Model, device: &(String, u16), request: &Node) -> Node {
    let Some(linked) = model.devices.get(device) else {
        return error(request, 404, "item-not-found");
    };
    let r = &linked.registration;
    let id3 = |id: u32| id.to_be_bytes()[1..].to_vec();
    let mut hash = Sha1::new();
    hash.update(&r.identity);
    hash.update(&r.signed_prekey.1);
    hash.update(&r.signed_prekey.2);
    for (_, key) in &r.prekeys {
        hash.update(key);
    }
    let ids = r
        .prekeys
        .iter()
        .map(|(id, _)| NodeBuilder::new("id").bytes(id3(*id)).build());
    let digest = NodeBuilder::new("digest")
        .children([
            NodeBuilder::new("type").bytes(vec![5]).build(),
            NodeBuilder::new("registration")
                .bytes(r.registration_id.to_be_bytes().to_vec())
                .build(),
            NodeBuilder::new("identity").bytes(r.identity.clone()).build(),
            NodeBuilder::new("skey")
                .children([
                    NodeBuilder::new("id").bytes(id3(r.signed_prekey.0)).build(),
                    NodeBuilder::new("value").bytes(r.signed_prekey.1.clone()).build(),
                    NodeBuilder::new("signature").bytes(r.signed_prekey.2.clone()).build(),
                ])
                .build(),
            NodeBuilder::new("list").children(ids).build(),
            NodeBuilder::new("hash").bytes(hash.finalize().to_vec()).build(),
        ])
        .build();
    result(request, vec![digest])
}

/// `privacy` `<tokens>`: the client issues trusted-contact tokens to people it writes to; each
/// is answered with the token's bytes.
pub(crate) fn issue_tokens(request: &Node) -> Node {
    use rand::Rng;
    let tokens = request
        .get_optional_child("tokens")
        .map(|t| t.get_children_by_tag("token").cloned().collect::<Vec<_>>())
        .unwrap_or_default()
        .into_iter()
        .filter_map(|token| {
            let bytes: [u8; 16] = rand::rng().random();
            Some(
                NodeBuilder::new("token")
                    .attr("jid", attr(&token, "jid")?)
                    .attr("t", attr(&token, "t")?)
                    .attr("type", "trusted_contact")
                    .bytes(bytes.to_vec())
                    .build(),
            )
        });
    result(request, vec![NodeBuilder::new("tokens").children(tokens).build()])
}
