//! Small builders and readers for the binary nodes the front end exchanges.

use wa_rs_binary::builder::NodeBuilder;
use wa_rs_binary::jid::SERVER_JID;
use wa_rs_binary::node::{Node, NodeContent};

/// An IQ from the server.
pub(crate) fn iq(id: String, kind: &str, xmlns: &str) -> NodeBuilder {
    NodeBuilder::new("iq")
        .attr("from", SERVER_JID)
        .attr("id", id)
        .attr("type", kind)
        .attr("xmlns", xmlns)
}

/// The `result` answer to the client's IQ `request`, with `children`.
pub(crate) fn result(request: &Node, children: Vec<Node>) -> Node {
    let mut builder = NodeBuilder::new("iq")
        .attr("from", SERVER_JID)
        .attr("id", attr(request, "id").unwrap_or_default())
        .attr("type", "result");
    if !children.is_empty() {
        builder = builder.children(children);
    }
    builder.build()
}

/// An `error` answer to the client's IQ `request`.
pub(crate) fn error(request: &Node, code: u16, text: &str) -> Node {
    NodeBuilder::new("iq")
        .attr("from", SERVER_JID)
        .attr("id", attr(request, "id").unwrap_or_default())
        .attr("type", "error")
        .children([NodeBuilder::new("error")
            .attr("code", code.to_string())
            .attr("text", text)
            .build()])
        .build()
}

/// `<stream:error code=…/>`: the server ends the stream (515: restart, 503: try again, …).
pub(crate) fn stream_error(code: &str) -> Node {
    NodeBuilder::new("stream:error").attr("code", code).build()
}

/// `<stream:error><conflict type=…/></stream:error>`: `replaced` or `device_removed`.
pub(crate) fn conflict(kind: &str) -> Node {
    NodeBuilder::new("stream:error")
        .children([NodeBuilder::new("conflict").attr("type", kind).build()])
        .build()
}

/// An attribute as a string.
pub(crate) fn attr(node: &Node, key: &str) -> Option<String> {
    node.attrs.get(key).map(|v| v.to_string_value())
}

/// A child's bytes content.
pub(crate) fn child_bytes(node: &Node, tag: &str) -> Option<Vec<u8>> {
    match &node.get_optional_child(tag)?.content {
        Some(NodeContent::Bytes(bytes)) => Some(bytes.clone()),
        Some(NodeContent::String(s)) => Some(s.as_bytes().to_vec()),
        _ => None,
    }
}

/// Seconds since the Unix epoch.
pub(crate) fn now_secs() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}
