//! Signal state: identities, sessions, pre-keys, signed pre-keys, sender keys.

use wa_rs_core::store::traits::SignalStore;
use wafleet_core::testing::Backend;

use crate::common;

pub async fn signal_store(backend: Backend) {
    let (_db, _user, stores) = common::devices(backend, 2).await;
    let (a, b) = (&stores[0], &stores[1]);

    // Identities: round-trip, upsert, isolation, delete.
    assert_eq!(a.load_identity("alice.0").await.unwrap(), None);
    a.put_identity("alice.0", [1; 32]).await.unwrap();
    a.put_identity("alice.0", [2; 32]).await.unwrap();
    assert_eq!(a.load_identity("alice.0").await.unwrap(), Some(vec![2; 32]));
    assert_eq!(
        b.load_identity("alice.0").await.unwrap(),
        None,
        "device B sees A's identity"
    );
    b.put_identity("alice.0", [9; 32]).await.unwrap();
    a.delete_identity("alice.0").await.unwrap();
    assert_eq!(a.load_identity("alice.0").await.unwrap(), None);
    assert_eq!(
        b.load_identity("alice.0").await.unwrap(),
        Some(vec![9; 32]),
        "A's delete reached B"
    );

    // Sessions, including has_session.
    assert!(!a.has_session("bob.1").await.unwrap());
    a.put_session("bob.1", b"session-1").await.unwrap();
    a.put_session("bob.1", b"session-2").await.unwrap();
    assert!(a.has_session("bob.1").await.unwrap());
    assert!(!b.has_session("bob.1").await.unwrap());
    assert_eq!(
        a.get_session("bob.1").await.unwrap().as_deref(),
        Some(&b"session-2"[..])
    );
    assert_eq!(b.get_session("bob.1").await.unwrap(), None);
    a.delete_session("bob.1").await.unwrap();
    assert_eq!(a.get_session("bob.1").await.unwrap(), None);
    assert!(!a.has_session("bob.1").await.unwrap());

    // Pre-keys, with ids across the whole u32 range.
    a.store_prekey(u32::MAX, b"pk-max", false).await.unwrap();
    a.store_prekey(7, b"pk-7", false).await.unwrap();
    a.store_prekey(7, b"pk-7b", true).await.unwrap();
    assert_eq!(a.load_prekey(7).await.unwrap().as_deref(), Some(&b"pk-7b"[..]));
    assert_eq!(a.load_prekey(u32::MAX).await.unwrap().as_deref(), Some(&b"pk-max"[..]));
    assert_eq!(b.load_prekey(7).await.unwrap(), None);
    a.remove_prekey(7).await.unwrap();
    assert_eq!(a.load_prekey(7).await.unwrap(), None);
    assert!(
        a.load_prekey(u32::MAX).await.unwrap().is_some(),
        "remove touched another pre-key"
    );

    // Signed pre-keys.
    assert!(a.load_all_signed_prekeys().await.unwrap().is_empty());
    a.store_signed_prekey(2, b"spk-2").await.unwrap();
    a.store_signed_prekey(1, b"spk-1").await.unwrap();
    a.store_signed_prekey(1, b"spk-1b").await.unwrap();
    b.store_signed_prekey(3, b"spk-b").await.unwrap();
    assert_eq!(a.load_signed_prekey(1).await.unwrap().as_deref(), Some(&b"spk-1b"[..]));
    assert_eq!(
        a.load_all_signed_prekeys().await.unwrap(),
        vec![(1, b"spk-1b".to_vec()), (2, b"spk-2".to_vec())]
    );
    a.remove_signed_prekey(1).await.unwrap();
    assert_eq!(a.load_signed_prekey(1).await.unwrap(), None);
    assert_eq!(b.load_all_signed_prekeys().await.unwrap(), vec![(3, b"spk-b".to_vec())]);

    // Sender keys.
    a.put_sender_key("group::carol.0", b"sk-1").await.unwrap();
    a.put_sender_key("group::carol.0", b"sk-2").await.unwrap();
    assert_eq!(
        a.get_sender_key("group::carol.0").await.unwrap().as_deref(),
        Some(&b"sk-2"[..])
    );
    assert_eq!(b.get_sender_key("group::carol.0").await.unwrap(), None);
    a.delete_sender_key("group::carol.0").await.unwrap();
    assert_eq!(a.get_sender_key("group::carol.0").await.unwrap(), None);
}
