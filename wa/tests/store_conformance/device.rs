//! The device row, wiping, and deletion with the device.

use std::sync::Arc;

use wafleet_core::keys::RowKey;
use wafleet_core::testing::Backend;
use wafleet_wa::store::sealed::DEVICE;
use whatsapp_rust::wacore::store::Device;
use whatsapp_rust::wacore::store::traits::*;
use whatsapp_rust::waproto::whatsapp as wa;

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
    device.account = Some(Arc::new(wa::ADVSignedDeviceIdentity {
        details: Some(vec![1, 2, 3]),
        account_signature_key: Some(vec![4; 32]),
        account_signature: Some(vec![5; 64]),
        device_signature: None,
    }));
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

    // A session that resumes reads its credentials once: what the open preloaded is the
    // client's first `exists` and `load`, without another read; later loads read the row.
    assert!(a.preload().await.unwrap(), "a device with a phone number is linked");
    device.push_name = "Shop 3".into();
    a.save(&device).await.unwrap();
    assert!(a.exists().await.unwrap());
    assert_eq!(a.load().await.unwrap().expect("preloaded").push_name, "Shop 2");
    assert_eq!(a.load().await.unwrap().expect("saved").push_name, "Shop 3");
    assert!(!b.preload().await.unwrap(), "a device never saved is not linked");
    assert!(!b.exists().await.unwrap(), "preloading nothing holds nothing");
    device.pn = None;
    b.save(&device).await.unwrap();
    assert!(
        !b.preload().await.unwrap(),
        "a device without a phone number is not linked"
    );
    assert_eq!(b.load().await.unwrap().expect("preloaded").push_name, "Shop 3");
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
    // A late save from the ended session (the client's background saver) must not bring A
    // back, and no other late write of it lands either.
    a.save(&Device::new()).await.unwrap();
    assert!(!a.exists().await.unwrap(), "a wiped device was saved back");
    assert!(
        a.put_session("bob.0", b"late").await.is_err(),
        "a late write of an ended session"
    );
    assert!(a.get_session("bob.0").await.unwrap().is_none());
    assert!(!b.is_retired());
    assert!(b.get_session("bob.0").await.unwrap().is_some());

    // Deleting the device deletes its client state with it (ON DELETE CASCADE).
    common::delete_device(&test, user, b.device()).await;
    assert!(!b.exists().await.unwrap());
    assert!(b.get_session("bob.0").await.unwrap().is_none());
    assert!(b.load_prekey(1).await.unwrap().is_none());
}

/// A device stored by the previous client (wa-rs 0.2, postcard with format byte 1) loads with
/// the same keys, identity and account, and is stored again in the current format on save.
pub async fn device_from_the_previous_client(backend: Backend) {
    let (test, _user, stores) = common::devices(backend, 1).await;
    let store = &stores[0];
    let mut old = wa_rs_core::store::Device::new();
    old.pn = Some("60123456789@s.whatsapp.net".parse().expect("jid"));
    old.lid = Some("100200300@lid".parse().expect("lid"));
    old.registration_id = 777;
    old.push_name = "Old shop".into();
    old.signed_pre_key_id = 3;
    old.app_version_last_fetched_ms = 1_700_000_000_000;
    old.account = Some(wa_rs_proto::whatsapp::AdvSignedDeviceIdentity {
        details: Some(vec![9, 8, 7]),
        account_signature_key: Some(vec![6; 32]),
        account_signature: Some(vec![5; 64]),
        device_signature: Some(vec![4; 64]),
    });
    let mut stored = vec![1u8];
    stored.extend(postcard::to_allocvec(&old).expect("postcard"));
    // Written as the previous release wrote it (sealed, as the current one seals every row).
    let sealed = test
        .keys
        .seal(&DEVICE.cell(store.device(), &[] as &[RowKey<'_>]), &stored);
    store.create().await.unwrap();
    let sql = "UPDATE wa_devices SET data = $1 WHERE device_id = $2";
    match &test.db {
        wafleet_core::Db::Sqlite(pool) => sqlx::query(sql)
            .bind(&sealed)
            .bind(store.device())
            .execute(pool)
            .await
            .map(drop),
        wafleet_core::Db::Postgres(pool) => sqlx::query(sql)
            .bind(&sealed)
            .bind(store.device())
            .execute(pool)
            .await
            .map(drop),
    }
    .expect("write the old row");

    let loaded = store.load().await.unwrap().expect("the old device loads");
    assert_eq!(
        loaded.pn.as_ref().map(ToString::to_string).as_deref(),
        Some("60123456789@s.whatsapp.net")
    );
    assert_eq!(
        loaded.lid.as_ref().map(ToString::to_string).as_deref(),
        Some("100200300@lid")
    );
    assert_eq!((loaded.registration_id, loaded.signed_pre_key_id), (777, 3));
    assert_eq!(loaded.push_name, "Old shop");
    assert_eq!(loaded.adv_secret_key, old.adv_secret_key);
    assert_eq!(loaded.signed_pre_key_signature, old.signed_pre_key_signature);
    for (new, old) in [
        (&loaded.identity_key, &old.identity_key),
        (&loaded.noise_key, &old.noise_key),
        (&loaded.signed_pre_key, &old.signed_pre_key),
    ] {
        assert_eq!(new.public_key.public_key_bytes(), old.public_key.public_key_bytes());
        assert_eq!(
            new.private_key.serialize().as_slice(),
            old.private_key.serialize().as_slice()
        );
    }
    let account = loaded.account.as_deref().expect("the account");
    assert_eq!(account.details.as_deref(), Some(&[9, 8, 7][..]));
    assert_eq!(account.device_signature.as_deref(), Some(&[4; 64][..]));
    assert_eq!(loaded.app_version_last_fetched_ms, 1_700_000_000_000);

    store.save(&loaded).await.unwrap();
    let again = store.load().await.unwrap().expect("saved again");
    assert_eq!(
        serde_json::to_value(&again).unwrap(),
        serde_json::to_value(&loaded).unwrap(),
        "the converted device round-trips in the current format"
    );
}
