//! `w:profile:picture` queries: where an account's profile picture is, served by the media host
//! (`<picture id url direct_path type/>`), or 404 when it has none, as WhatsApp answers.

use wa_rs_binary::builder::NodeBuilder;
use wa_rs_binary::node::Node;

use super::media::MediaStore;
use super::model::Model;
use super::nodes::{attr, error, result};

/// Whether `node` asks for a profile picture.
pub(crate) fn is_query(node: &Node) -> bool {
    node.tag == "iq"
        && attr(node, "xmlns").as_deref() == Some("w:profile:picture")
        && attr(node, "type").as_deref() == Some("get")
}

/// Answers a profile picture query for its `target`.
pub(crate) fn answer(model: &Model, media: &MediaStore, request: &Node) -> Node {
    let kind = request
        .get_optional_child("picture")
        .and_then(|picture| attr(picture, "type"))
        .unwrap_or_else(|| "image".to_owned());
    let Some((phone, _)) = attr(request, "target").and_then(|jid| super::chat::resolve(model, &jid)) else {
        return error(request, 404, "item-not-found");
    };
    let Some(id) = model
        .accounts
        .get(&phone)
        .and_then(|account| account.profile.picture_id.clone())
    else {
        return error(request, 404, "item-not-found");
    };
    let direct_path = crate::control::profile_picture_path(&phone, &id);
    media.put_at(&direct_path, crate::control::PROFILE_PICTURE.to_vec());
    let picture = NodeBuilder::new("picture")
        .attr("id", id)
        .attr("url", format!("http://{}{direct_path}", media.host()))
        .attr("direct_path", direct_path)
        .attr("type", kind)
        .build();
    result(request, vec![picture])
}
