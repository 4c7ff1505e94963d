//! WhatsApp's restriction queries, answered from the ban model ([`crate::ban`]): the reach-out
//! timelock (`WAWebMexFetchReachoutTimelockJobQuery`) and the new-chat cap
//! (`WAWebMexFetchNewChatMessageCappingInfoJobQuery`). Both are MEX (GraphQL) queries: an IQ
//! `w:mex` whose `<query query_id=…>` holds JSON variables, answered with a `<result>` holding
//! the JSON response.

use std::time::Instant;

use serde_json::json;
use wa_rs_binary::builder::NodeBuilder;
use wa_rs_binary::node::Node;

use super::model::Model;
use super::nodes::{attr, error, result};
use crate::ban::BanLimits;

/// The persisted-query ids WhatsApp Web uses (as in `wacore::iq::mex_operations`).
const REACHOUT_TIMELOCK: &str = "23983697327930364";
const NEW_CHAT_CAPPING: &str = "24503548349331633";

/// Whether `node` is a MEX query.
pub(crate) fn is_query(node: &Node) -> bool {
    node.tag == "iq" && attr(node, "xmlns").as_deref() == Some("w:mex")
}

/// Answers the MEX query `node` of the account `phone` (digits).
pub(crate) fn answer(model: &mut Model, limits: &BanLimits, phone: &str, node: &Node) -> Node {
    let query_id = node.get_optional_child("query").and_then(|q| attr(q, "query_id"));
    let now_ms = wafleet_core::types::Timestamp::now().millis();
    let state = model
        .account(phone)
        .reputation
        .restrictions(limits, Instant::now(), now_ms);
    let data = match query_id.as_deref() {
        Some(REACHOUT_TIMELOCK) => json!({
            "xwa2_fetch_account_reachout_timelock": match state.timelocked_until_ms {
                Some(until) => json!({
                    "is_active": true,
                    "time_enforcement_ends": (until / 1000).to_string(),
                    "enforcement_type": "REACHOUT_TIMELOCK",
                }),
                None => json!({ "is_active": false }),
            }
        }),
        Some(NEW_CHAT_CAPPING) => json!({
            "xwa2_message_capping_info": match state.cap {
                Some((used, total, ends)) => json!({
                    "capping_status": if used >= total { "CAPPED" } else { "NOT_CAPPED" },
                    "used_quota": used.to_string(),
                    "total_quota": total.to_string(),
                    "cycle_end_timestamp": ends / 1000,
                    "server_sent_timestamp": now_ms / 1000,
                }),
                None => json!({ "capping_status": "NOT_ELIGIBLE" }),
            }
        }),
        other => {
            tracing::debug!(query_id = ?other, "MEX query not modelled");
            return error(node, 501, "feature-not-implemented");
        }
    };
    let body = serde_json::to_vec(&json!({ "data": data })).unwrap_or_default();
    result(node, vec![NodeBuilder::new("result").bytes(body).build()])
}

/// The timelock's end a MEX answer carries, for tests (UTC seconds), if one is active.
#[cfg(test)]
fn timelock_end(answer: &Node) -> Option<i64> {
    let result = answer.get_optional_child("result")?;
    let Some(wa_rs_binary::node::NodeContent::Bytes(bytes)) = &result.content else {
        return None;
    };
    let value: serde_json::Value = serde_json::from_slice(bytes).ok()?;
    value["data"]["xwa2_fetch_account_reachout_timelock"]["time_enforcement_ends"]
        .as_str()?
        .parse()
        .ok()
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    fn query(id: &str) -> Node {
        NodeBuilder::new("iq")
            .attr("id", "q1")
            .attr("xmlns", "w:mex")
            .attr("type", "get")
            .children([NodeBuilder::new("query")
                .attr("query_id", id)
                .bytes(b"{}".to_vec())
                .build()])
            .build()
    }

    #[test]
    fn the_timelock_query_reports_the_models_lock() {
        let mut model = Model::default();
        let limits = BanLimits::default();
        assert_eq!(
            timelock_end(&answer(&mut model, &limits, "6011", &query(REACHOUT_TIMELOCK))),
            None
        );
        model
            .account("6011")
            .reputation
            .timelock(Instant::now(), Duration::from_secs(600));
        let end = timelock_end(&answer(&mut model, &limits, "6011", &query(REACHOUT_TIMELOCK))).expect("active");
        let expected = wafleet_core::types::Timestamp::now().millis() / 1000 + 600;
        assert!((end - expected).abs() <= 2, "{end} vs {expected}");
        let unknown = answer(&mut model, &limits, "6011", &query("1"));
        assert_eq!(attr(&unknown, "type").as_deref(), Some("error"));
    }
}
