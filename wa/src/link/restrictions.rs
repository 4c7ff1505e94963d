//! What WhatsApp lets an account do with new chats, read with WhatsApp Web's own queries: the
//! reach-out timelock and the monthly new-chat cap (both MEX queries). A refusal of a message
//! with 463 means either a missing privacy token or a timelock; 475 means the cap is used up.
//! Only these queries tell the cases apart, so a refusal is followed by a look at them.

use std::time::Duration;

use wafleet_core::link::{LinkError, NewChatCap, Restrictions};
use wafleet_core::types::Timestamp;
use whatsapp_rust::Client;
use whatsapp_rust::MexRequest;
use whatsapp_rust::wacore::iq::mex_operations::fetch_new_chat_message_capping_info as capping;

/// How long each query may take.
const QUERY_TIMEOUT: Duration = Duration::from_secs(15);

/// Reads the account's restrictions.
pub(crate) async fn read(client: &Client) -> Result<Restrictions, LinkError> {
    let mex = client.mex();
    let timelock = tokio::time::timeout(QUERY_TIMEOUT, mex.fetch_reachout_timelock())
        .await
        .map_err(|_| LinkError::Transient(format!("no answer to the timelock query within {QUERY_TIMEOUT:?}")))?
        .map_err(|e| LinkError::Transient(format!("reading the reach-out timelock: {e}")))?;
    let request = MexRequest::new(capping::NAME, capping::DOC_ID, capping::Variables::default());
    let cap = match tokio::time::timeout(QUERY_TIMEOUT, mex.query(request)).await {
        Ok(Ok(response)) => response
            .data
            .and_then(|data| serde_json::from_value::<capping::Response>(data).ok())
            .and_then(|r| r.xwa2_message_capping_info)
            .and_then(new_chat_cap),
        // The cap is tried on some accounts only: a query it does not answer means none.
        Ok(Err(e)) => {
            tracing::debug!(error = %e, "the new-chat cap query failed; taking it as no cap");
            None
        }
        Err(_) => None,
    };
    Ok(Restrictions {
        timelocked_until: timelock
            .is_active
            .unwrap_or(false)
            .then(|| {
                timelock
                    .time_enforcement_ends
                    .as_deref()
                    .and_then(|s| s.parse::<i64>().ok())
                    .map(|secs| Timestamp(secs.saturating_mul(1000)))
            })
            .flatten()
            // Active with no end given: look again in an hour.
            .or_else(|| {
                timelock
                    .is_active
                    .unwrap_or(false)
                    .then(|| Timestamp::now().plus_secs(3600))
            }),
        new_chat_cap: cap,
    })
}

/// The cap from WhatsApp's answer, when the account has one.
fn new_chat_cap(info: capping::Xwa2MessageCappingInfo) -> Option<NewChatCap> {
    let total = info.total_quota.as_deref()?.parse().ok()?;
    Some(NewChatCap {
        used: info.used_quota.as_deref().and_then(|u| u.parse().ok()).unwrap_or(0),
        total,
        resets_at: info
            .cycle_end_timestamp
            .map(|secs| Timestamp(secs.saturating_mul(1000))),
    })
}

/// What a refusal with `code` means, once the restrictions have been read: a restriction when
/// one is in force, the plain refusal otherwise.
pub(crate) async fn explain_refusal(client: &Client, code: &str, refusal: LinkError) -> LinkError {
    if code != "463" && code != "475" {
        return refusal;
    }
    match read(client).await {
        Ok(state) => match state.new_chats_blocked(Timestamp::now()) {
            Some((_, why)) => LinkError::Restricted(format!("{code}: {why}")),
            None => refusal,
        },
        Err(err) => {
            tracing::warn!(error = %err, code, "could not read the account's restrictions after a refusal");
            refusal
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_cap_needs_its_total() {
        assert_eq!(new_chat_cap(capping::Xwa2MessageCappingInfo::default()), None);
        let cap = new_chat_cap(capping::Xwa2MessageCappingInfo {
            used_quota: Some("7".into()),
            total_quota: Some("10".into()),
            cycle_end_timestamp: Some(1_800_000_000),
            ..Default::default()
        })
        .expect("a cap");
        assert_eq!(
            cap,
            NewChatCap {
                used: 7,
                total: 10,
                resets_at: Some(Timestamp(1_800_000_000_000))
            }
        );
    }
}
