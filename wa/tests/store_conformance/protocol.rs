//! Protocol state: sender-key devices, LID mappings, base keys, device lists, tokens, sent
//! messages and the pending inbound buffer.

use wafleet_core::testing::Backend;
use whatsapp_rust::wacore::store::traits::*;

use crate::common;

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

    // Which devices of a group hold our sender key: set (upsert), read, forget some, clear.
    a.set_sender_key_status(
        group,
        &[("601111:1@s.whatsapp.net", true), ("602222@s.whatsapp.net", false)],
    )
    .await
    .unwrap();
    a.set_sender_key_status(group, &[("602222@s.whatsapp.net", true)])
        .await
        .unwrap();
    a.set_sender_key_status("other@g.us", &[("601111:1@s.whatsapp.net", true)])
        .await
        .unwrap();
    assert_eq!(
        a.get_sender_key_devices(group).await.unwrap(),
        vec![
            ("601111:1@s.whatsapp.net".to_owned(), true),
            ("602222@s.whatsapp.net".to_owned(), true)
        ]
    );
    assert!(b.get_sender_key_devices(group).await.unwrap().is_empty());
    a.delete_sender_key_device_rows(&["601111:1@s.whatsapp.net"])
        .await
        .unwrap();
    assert_eq!(
        a.get_sender_key_devices(group).await.unwrap(),
        vec![("602222@s.whatsapp.net".to_owned(), true)],
        "a device's rows go in every group"
    );
    assert!(a.get_sender_key_devices("other@g.us").await.unwrap().is_empty());
    a.clear_sender_key_devices(group).await.unwrap();
    assert!(a.get_sender_key_devices(group).await.unwrap().is_empty());
    a.set_sender_key_status(group, &[("603333@s.whatsapp.net", false)])
        .await
        .unwrap();
    a.clear_all_sender_key_devices().await.unwrap();
    assert!(a.get_sender_key_devices(group).await.unwrap().is_empty());

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
        raw_id: Some(ts as u32 + 7),
        user: "60123".into(),
        devices: ids
            .iter()
            .map(|&id| DeviceInfo {
                device_id: id,
                key_index: Some(id + 100),
                is_hosted: id == 5,
            })
            .collect(),
        timestamp: ts,
        phash: phash.map(Into::into),
    };
    a.update_device_list(record(1, Some("h1"), &[0, 1])).await.unwrap();
    a.update_device_list(record(2, None, &[0, 1, 5])).await.unwrap();
    let got = a.get_devices("60123").await.unwrap().expect("device list");
    assert_eq!(
        (got.user.as_str(), got.timestamp, got.phash, got.raw_id),
        ("60123", 2, None, Some(9))
    );
    let ids: Vec<(u32, Option<u32>)> = got.devices.iter().map(|d| (d.device_id, d.key_index)).collect();
    assert_eq!(ids, vec![(0, Some(100)), (1, Some(101)), (5, Some(105))]);
    assert!(b.get_devices("60123").await.unwrap().is_none());
    a.delete_devices("60123").await.unwrap();
    assert!(a.get_devices("60123").await.unwrap().is_none());

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
    // Expiry needs both halves stale: x's token is fresh; y's and z's are old and never issued.
    assert_eq!(a.delete_expired_tc_tokens(300, 1_000).await.unwrap(), 2);
    assert_eq!(a.get_all_tc_token_jids().await.unwrap(), vec!["x@lid"]);
    assert_eq!(
        b.get_all_tc_token_jids().await.unwrap(),
        vec!["w@lid"],
        "expiry crossed devices"
    );
    a.delete_tc_token("x@lid").await.unwrap();
    assert!(a.get_tc_token("x@lid").await.unwrap().is_none());

    // Issuing our token only moves the sender time forward and keeps the contact's token; a
    // received token keeps the sender time, and an older one never replaces a newer one.
    a.touch_tc_token_sender_timestamp("p@lid", 100).await.unwrap();
    let placeholder = a.get_tc_token("p@lid").await.unwrap().expect("placeholder");
    assert_eq!(
        (placeholder.token.is_empty(), placeholder.sender_timestamp),
        (true, Some(100))
    );
    a.store_received_tc_token("p@lid", b"tok-1", 50).await.unwrap();
    a.touch_tc_token_sender_timestamp("p@lid", 90).await.unwrap();
    let got = a.get_tc_token("p@lid").await.unwrap().expect("token");
    assert_eq!(
        (got.token.as_slice(), got.token_timestamp, got.sender_timestamp),
        (&b"tok-1"[..], 50, Some(100)),
        "a placeholder never blocks the first token; sender time never goes back"
    );
    a.store_received_tc_token("p@lid", b"tok-old", 40).await.unwrap();
    a.store_received_tc_token("p@lid", b"tok-2", 60).await.unwrap();
    let got = a.get_tc_token("p@lid").await.unwrap().expect("token");
    assert_eq!((got.token.as_slice(), got.token_timestamp), (&b"tok-2"[..], 60));
    // Two writers at once lose neither field.
    let (issue, receive) = tokio::join!(
        a.touch_tc_token_sender_timestamp("q@lid", 500),
        a.store_received_tc_token("q@lid", b"tok-q", 400),
    );
    issue.unwrap();
    receive.unwrap();
    let got = a.get_tc_token("q@lid").await.unwrap().expect("token");
    assert_eq!((got.token.as_slice(), got.sender_timestamp), (&b"tok-q"[..], Some(500)));

    // Sent messages are kept for retries and taken once.
    a.store_sent_message("60123@s.whatsapp.net", "M1", b"payload-1")
        .await
        .unwrap();
    a.store_sent_message("60123@s.whatsapp.net", "M2", b"payload-2")
        .await
        .unwrap();
    assert_eq!(b.take_sent_message("60123@s.whatsapp.net", "M1").await.unwrap(), None);
    assert_eq!(
        a.take_sent_message("60123@s.whatsapp.net", "M1").await.unwrap(),
        Some(b"payload-1".to_vec())
    );
    assert_eq!(
        a.take_sent_message("60123@s.whatsapp.net", "M1").await.unwrap(),
        None,
        "taken once"
    );
    assert_eq!(a.delete_expired_sent_messages(i64::MAX).await.unwrap(), 1);
    assert_eq!(a.take_sent_message("60123@s.whatsapp.net", "M2").await.unwrap(), None);

    // The pending inbound buffer: rows keyed by chat, sender and id; a replace is one row.
    let row = |id: &'static str, body: &'static [u8]| PendingInboundRow {
        chat: "60123@s.whatsapp.net",
        sender: "60123@s.whatsapp.net",
        id,
        message: body,
    };
    a.store_pending_inbound_batch(&[row("I1", b"one"), row("I2", b"two")])
        .await
        .unwrap();
    a.store_pending_inbound("60123@s.whatsapp.net", "60123@s.whatsapp.net", "I1", b"one again")
        .await
        .unwrap();
    a.store_pending_inbound("60999@s.whatsapp.net", "60999@s.whatsapp.net", "I1", b"other chat")
        .await
        .unwrap();
    let pending = |store: &wafleet_wa::WaStore, chat: &'static str, id: &'static str| {
        let store = store.clone();
        async move { store.get_pending_inbound(chat, chat, id).await.unwrap() }
    };
    assert_eq!(
        pending(a, "60123@s.whatsapp.net", "I1").await,
        Some(b"one again".to_vec())
    );
    assert_eq!(
        pending(a, "60999@s.whatsapp.net", "I1").await,
        Some(b"other chat".to_vec())
    );
    assert_eq!(pending(b, "60123@s.whatsapp.net", "I1").await, None);
    a.delete_pending_inbound_batch(&[PendingInboundKey {
        chat: "60123@s.whatsapp.net",
        sender: "60123@s.whatsapp.net",
        id: "I1",
    }])
    .await
    .unwrap();
    assert_eq!(pending(a, "60123@s.whatsapp.net", "I1").await, None);
    assert_eq!(pending(a, "60123@s.whatsapp.net", "I2").await, Some(b"two".to_vec()));
    a.delete_pending_inbound("60123@s.whatsapp.net", "60123@s.whatsapp.net", "I2")
        .await
        .unwrap();
    assert_eq!(
        a.delete_expired_pending_inbound(0).await.unwrap(),
        0,
        "nothing that old"
    );
    assert_eq!(a.delete_expired_pending_inbound(i64::MAX).await.unwrap(), 1);
    assert_eq!(pending(a, "60999@s.whatsapp.net", "I1").await, None);
}
