//! The device row, wiping, and deletion with the device.

use wa_rs_core::store::Device;
use wa_rs_core::store::traits::*;
use wafleet_core::testing::Backend;

use crate::common;

pub async fn device_store(backend: Backend) {
    let (_db, _user, stores) = common::devices(backend, 2).await;
    let (a, b) = (&stores[0], &stores[1]);

    assert!(!a.exists().await.unwrap());
    assert!(a.load().await.unwrap().is_none());
    let id = a.create().await.unwrap();
    assert_eq!(i64::from(id), a.device().0, "create returns the device's own id");
    assert_eq!(a.create().await.unwrap(), id, "creating twice is harmless");
    assert!(a.exists().await.unwrap());
    assert!(
        a.load().await.unwrap().is_none(),
        "a created but unsaved device has no data"
    );
    assert!(!b.exists().await.unwrap());

    let mut device = Device::new();
    device.push_name = "Shop".into();
    device.pn = Some("60123456789@s.whatsapp.net".parse().expect("jid"));
    device.registration_id = 4242;
    device.account = Some(wa_rs::wa_rs_proto::whatsapp::AdvSignedDeviceIdentity {
        details: Some(vec![1, 2, 3]),
        account_signature_key: Some(vec![4; 32]),
        account_signature: Some(vec![5; 64]),
        device_signature: None,
    });
    a.save(&device).await.unwrap();
    device.push_name = "Shop 2".into();
    a.save(&device).await.unwrap();
    let loaded = a.load().await.unwrap().expect("saved device");
    assert_eq!(loaded.push_name, "Shop 2");
    assert_eq!(loaded.registration_id, 4242);
    assert_eq!(loaded.account, device.account, "the paired account round-trips");
    assert_eq!(loaded.identity_key.public_key, device.identity_key.public_key);
    assert_eq!(
        loaded.pn.as_ref().map(|j| j.to_string()).as_deref(),
        Some("60123456789@s.whatsapp.net")
    );
    assert_eq!(
        serde_json::to_value(&loaded).unwrap(),
        serde_json::to_value(&device).unwrap(),
        "every stored field, keys included, round-trips"
    );
    assert!(b.load().await.unwrap().is_none());
    a.snapshot_db("label", Some(b"extra")).await.unwrap();
}

pub async fn wipe_and_cascade(backend: Backend) {
    let (test, user, stores) = common::devices(backend, 2).await;
    for store in &stores {
        store.create().await.unwrap();
        store.save(&Device::new()).await.unwrap();
        store.put_session("bob.0", b"s").await.unwrap();
        store.store_prekey(1, b"p", true).await.unwrap();
        store
            .put_tc_token(
                "x@lid",
                &TcTokenEntry {
                    token: vec![1],
                    token_timestamp: 1,
                    sender_timestamp: None,
                },
            )
            .await
            .unwrap();
    }
    let (a, b) = (&stores[0], &stores[1]);

    a.wipe().await.unwrap();
    assert!(!a.exists().await.unwrap());
    assert!(a.get_session("bob.0").await.unwrap().is_none());
    assert!(a.load_prekey(1).await.unwrap().is_none());
    assert!(a.get_tc_token("x@lid").await.unwrap().is_none());
    assert!(b.exists().await.unwrap(), "wiping A wiped B");
    // A late save from the ended session (wa-rs's background saver) must not bring A back.
    a.save(&Device::new()).await.unwrap();
    assert!(!a.exists().await.unwrap(), "a wiped device was saved back");
    assert!(!b.is_retired());
    assert!(b.get_session("bob.0").await.unwrap().is_some());

    // Deleting the device deletes its wa-rs state with it (ON DELETE CASCADE).
    common::delete_device(&test, user, b.device()).await;
    assert!(!b.exists().await.unwrap());
    assert!(b.get_session("bob.0").await.unwrap().is_none());
    assert!(b.load_prekey(1).await.unwrap().is_none());
}
