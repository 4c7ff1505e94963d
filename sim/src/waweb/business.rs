//! `w:biz` `<business_profile>` queries: a business account's public profile, as WhatsApp answers
//! it (an empty `<business_profile/>` for an account that is not a business).

use wa_rs_binary::builder::NodeBuilder;
use wa_rs_binary::node::Node;

use super::model::Model;
use super::nodes::{attr, result};

/// Answers a business profile query for the `<profile jid>` it names.
pub(crate) fn answer(model: &Model, request: &Node) -> Node {
    let jid = request
        .get_optional_child("business_profile")
        .and_then(|query| query.get_optional_child("profile"))
        .and_then(|profile| attr(profile, "jid"));
    let business = jid.as_deref().and_then(|jid| {
        let (phone, _) = super::chat::resolve(model, jid)?;
        model.accounts.get(&phone)?.profile.business.clone()
    });
    let mut answer = NodeBuilder::new("business_profile").attr("v", "244");
    if let (Some(jid), Some(business)) = (jid, business) {
        answer = answer.children([profile(&jid, &business)]);
    }
    result(request, vec![answer.build()])
}

/// A text element, as bytes: a string content that looks like a JID (an email address) would be
/// packed as one.
fn text(tag: &str, value: &str) -> Node {
    NodeBuilder::new(tag).bytes(value.as_bytes().to_vec()).build()
}

fn profile(jid: &str, business: &wafleet_core::link::BusinessProfile) -> Node {
    let mut children = vec![text("description", &business.description)];
    children.extend(business.email.iter().map(|email| text("email", email)));
    children.extend(business.address.iter().map(|address| text("address", address)));
    children.extend(business.websites.iter().map(|site| text("website", site)));
    let categories = business.categories.iter().map(|category| {
        NodeBuilder::new("category")
            .attr("id", category.id.clone())
            .bytes(category.name.as_bytes().to_vec())
            .build()
    });
    children.push(NodeBuilder::new("categories").children(categories).build());
    let days = business.hours.iter().map(|day| {
        let mut config = NodeBuilder::new("business_hours_config")
            .attr("day_of_week", day.day.clone())
            .attr("mode", day.mode.clone());
        if let Some(open) = day.open_minute {
            config = config.attr("open_time", open.to_string());
        }
        if let Some(close) = day.close_minute {
            config = config.attr("close_time", close.to_string());
        }
        config.build()
    });
    let mut hours = NodeBuilder::new("business_hours");
    if let Some(zone) = &business.hours_timezone {
        hours = hours.attr("timezone", zone.clone());
    }
    children.push(hours.children(days).build());
    NodeBuilder::new("profile")
        .attr("jid", jid.to_owned())
        .children(children)
        .build()
}
