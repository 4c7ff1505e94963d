//! `w:profile:picture`: where an account's profile picture is, served by the media host
//! (`<picture id url direct_path type/>`), or 404 when it has none, as WhatsApp answers; and a
//! linked device setting its account's picture (`<picture type="image">{jpeg}</picture>`).

use wa_rs_binary::builder::NodeBuilder;
use wa_rs_binary::node::{Node, NodeContent};

use super::media::MediaStore;
use super::model::Model;
use super::nodes::{attr, error, result};

/// Whether `node` is a profile picture IQ (a query or a change).
pub(crate) fn is_picture_iq(node: &Node) -> bool {
    node.tag == "iq" && attr(node, "xmlns").as_deref() == Some("w:profile:picture")
}

/// Answers a profile picture IQ from a connection logged in as a device of `phone` (`None`: not
/// logged in, refused).
pub(crate) fn handle(model: &mut Model, media: &MediaStore, phone: Option<&str>, request: &Node) -> Node {
    match (attr(request, "type").as_deref(), phone) {
        (Some("get"), Some(_)) => answer(model, media, request),
        (Some("set"), Some(phone)) => set(model, media, phone, request),
        _ => error(request, 400, "bad-request"),
    }
}

/// The account of `phone` takes the picture in the request (its own, without a `target`).
fn set(model: &mut Model, media: &MediaStore, phone: &str, request: &Node) -> Node {
    let jpeg = match request.get_optional_child("picture").and_then(|p| p.content.as_ref()) {
        Some(NodeContent::Bytes(bytes)) if !bytes.is_empty() => bytes.clone(),
        _ => return error(request, 400, "bad-request"),
    };
    if attr(request, "target").is_some() {
        // Group pictures are not modelled; a personal account changes only its own.
        return error(request, 403, "forbidden");
    }
    let account = model.account(phone);
    let id = crate::control::next_picture_id(account.profile.picture_id.as_deref());
    account.profile.picture_id = Some(id.clone());
    media.put_at(&crate::control::profile_picture_path(phone, &id), jpeg);
    result(request, vec![NodeBuilder::new("picture").attr("id", id).build()])
}

/// Answers a profile picture query for its `target`.
fn answer(model: &Model, media: &MediaStore, request: &Node) -> Node {
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
    // A picture the account did not upload through a device shows the simulator's own.
    if media.get(&direct_path).is_none() {
        media.put_at(&direct_path, crate::control::PROFILE_PICTURE.to_vec());
    }
    let picture = NodeBuilder::new("picture")
        .attr("id", id)
        .attr("url", format!("http://{}{direct_path}", media.host()))
        .attr("direct_path", direct_path)
        .attr("type", kind)
        .build();
    result(request, vec![picture])
}
