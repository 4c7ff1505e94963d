//! Protocol state: SKDM recipients, LID mappings, base keys, device lists, forget marks, tokens.

use wa_rs::Jid;
use wa_rs_core::store::traits::*;
use wafleet_core::testing::Backend;

use crate::common;

fn jid(s: &str) -> Jid {
    s.parse().expect("jid")
}

fn mapping(lid: &str, phone: &str, created: i64, updated: i64, source: &str) -> LidPnMappingEntry {
    LidPnMappingEntry {
        lid: lid.into(),
        phone_number: phone.into(),
        created_at: created,
        updated_at: updated,
        learning_source: source.into(),
    }
}

pub async fn protocol_store(backend: Backend) {
    let (_db, _user, stores) = common::devices(backend, 2).await;
    let (a, b) = (&stores[0], &stores[1]);
    let group = "120363@g.us";

    // SKDM recipients: add (twice, no duplicates), read, isolation, clear.
    let d1 = jid("601111:1@s.whatsapp.net");
    let d2 = jid("602222@s.whatsapp.net");
    a.add_skdm_recipients(group, &[d1.clone(), d2.clone()]).await.unwrap();
    a.add_skdm_recipients(group, std::slice::from_ref(&d1)).await.unwrap();
    let mut got: Vec<String> = a
        .get_skdm_recipients(group)
        .await
        .unwrap()
        .iter()
        .map(Jid::to_string)
        .collect();
    got.sort();
    assert_eq!(got, vec![d1.to_string(), d2.to_string()]);
    assert!(b.get_skdm_recipients(group).await.unwrap().is_empty());
    a.clear_skdm_recipients(group).await.unwrap();
    assert!(a.get_skdm_recipients(group).await.unwrap().is_empty());

    // LID mappings: upsert keeps created_at, by-phone returns the most recent LID.
    a.put_lid_mapping(&mapping("100", "60123", 10, 10, "usync"))
        .await
        .unwrap();
    a.put_lid_mapping(&mapping("100", "60123", 99, 20, "peer_pn_message"))
        .await
        .unwrap();
    a.put_lid_mapping(&mapping("200", "60123", 30, 30, "usync"))
        .await
        .unwrap();
    a.put_lid_mapping(&mapping("300", "60999", 5, 5, "usync"))
        .await
        .unwrap();
    let m = a.get_lid_mapping("100").await.unwrap().expect("mapping");
    assert_eq!(
        (m.created_at, m.updated_at, m.learning_source.as_str()),
        (10, 20, "peer_pn_message")
    );
    assert_eq!(a.get_pn_mapping("60123").await.unwrap().expect("by phone").lid, "200");
    assert!(a.get_pn_mapping("60000").await.unwrap().is_none());
    let all: Vec<String> = a
        .get_all_lid_mappings()
        .await
        .unwrap()
        .into_iter()
        .map(|m| m.lid)
        .collect();
    assert_eq!(all, vec!["100", "200", "300"]);
    assert!(b.get_lid_mapping("100").await.unwrap().is_none());
    assert!(b.get_all_lid_mappings().await.unwrap().is_empty());

    // Base keys.
    assert!(
        !a.has_same_base_key("bob.0", "m1", b"base").await.unwrap(),
        "nothing saved yet"
    );
    a.save_base_key("bob.0", "m1", b"base").await.unwrap();
    assert!(a.has_same_base_key("bob.0", "m1", b"base").await.unwrap());
    assert!(!a.has_same_base_key("bob.0", "m1", b"other").await.unwrap());
    assert!(!b.has_same_base_key("bob.0", "m1", b"base").await.unwrap());
    a.save_base_key("bob.0", "m1", b"newer").await.unwrap();
    assert!(a.has_same_base_key("bob.0", "m1", b"newer").await.unwrap());
    a.delete_base_key("bob.0", "m1").await.unwrap();
    assert!(!a.has_same_base_key("bob.0", "m1", b"newer").await.unwrap());

    // Device lists.
    assert!(a.get_devices("60123").await.unwrap().is_none());
    let record = |ts: i64, phash: Option<&str>, ids: &[u32]| DeviceListRecord {
        user: "60123".into(),
        devices: ids
            .iter()
            .map(|&id| DeviceInfo {
                device_id: id,
                key_index: Some(id + 100),
            })
            .collect(),
        timestamp: ts,
        phash: phash.map(Into::into),
    };
    a.update_device_list(record(1, Some("h1"), &[0, 1])).await.unwrap();
    a.update_device_list(record(2, None, &[0, 1, 5])).await.unwrap();
    let got = a.get_devices("60123").await.unwrap().expect("device list");
    assert_eq!((got.user.as_str(), got.timestamp, got.phash), ("60123", 2, None));
    let ids: Vec<(u32, Option<u32>)> = got.devices.iter().map(|d| (d.device_id, d.key_index)).collect();
    assert_eq!(ids, vec![(0, Some(100)), (1, Some(101)), (5, Some(105))]);
    assert!(b.get_devices("60123").await.unwrap().is_none());

    // Forget marks are consumed by reading them.
    a.mark_forget_sender_key(group, "p2").await.unwrap();
    a.mark_forget_sender_key(group, "p1").await.unwrap();
    a.mark_forget_sender_key(group, "p1").await.unwrap();
    a.mark_forget_sender_key("other@g.us", "p3").await.unwrap();
    assert!(b.consume_forget_marks(group).await.unwrap().is_empty());
    assert_eq!(a.consume_forget_marks(group).await.unwrap(), vec!["p1", "p2"]);
    assert!(
        a.consume_forget_marks(group).await.unwrap().is_empty(),
        "marks not consumed"
    );
    assert_eq!(a.consume_forget_marks("other@g.us").await.unwrap(), vec!["p3"]);

    // Trusted-contact tokens.
    let token = |t: u8, ts: i64, sender: Option<i64>| TcTokenEntry {
        token: vec![t; 3],
        token_timestamp: ts,
        sender_timestamp: sender,
    };
    a.put_tc_token("x@lid", &token(1, 100, None)).await.unwrap();
    a.put_tc_token("x@lid", &token(2, 500, Some(600))).await.unwrap();
    a.put_tc_token("y@lid", &token(3, 200, None)).await.unwrap();
    a.put_tc_token("z@lid", &token(4, 50, None)).await.unwrap();
    b.put_tc_token("w@lid", &token(5, 1, None)).await.unwrap();
    let got = a.get_tc_token("x@lid").await.unwrap().expect("token");
    assert_eq!(
        (got.token, got.token_timestamp, got.sender_timestamp),
        (vec![2; 3], 500, Some(600))
    );
    assert_eq!(
        a.get_all_tc_token_jids().await.unwrap(),
        vec!["x@lid", "y@lid", "z@lid"]
    );
    assert_eq!(a.delete_expired_tc_tokens(300).await.unwrap(), 2);
    assert_eq!(a.get_all_tc_token_jids().await.unwrap(), vec!["x@lid"]);
    assert_eq!(
        b.get_all_tc_token_jids().await.unwrap(),
        vec!["w@lid"],
        "expiry crossed devices"
    );
    a.delete_tc_token("x@lid").await.unwrap();
    assert!(a.get_tc_token("x@lid").await.unwrap().is_none());
}
