//! Signal state: identities, sessions, pre-keys, signed pre-keys, sender keys.

use std::sync::Arc;

use wafleet_core::testing::Backend;
use whatsapp_rust::bytes::Bytes;
use whatsapp_rust::wacore::store::traits::SignalStore;

use crate::common;

pub async fn signal_store(backend: Backend) {
    let (_db, _user, stores) = common::devices(backend, 2).await;
    let (a, b) = (&stores[0], &stores[1]);

    // Identities: round-trip, upsert, isolation, delete.
    assert_eq!(a.load_identity("alice.0").await.unwrap(), None);
    a.put_identity("alice.0", [1; 32]).await.unwrap();
    a.put_identity("alice.0", [2; 32]).await.unwrap();
    assert_eq!(a.load_identity("alice.0").await.unwrap(), Some([2; 32]));
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
        Some([9; 32]),
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

    // Sessions in a batch (the client's write-behind flush), and which users have any state.
    let batch: Vec<(Arc<str>, Bytes)> = (0..450)
        .map(|i| {
            (
                Arc::from(format!("6012{i:04}:{}@s.whatsapp.net.0", i % 3)),
                Bytes::from(vec![(i % 251) as u8; 40]),
            )
        })
        .collect();
    a.put_sessions_batch(&batch).await.unwrap();
    a.put_sessions_batch(&batch[..2]).await.unwrap();
    for (address, record) in &batch {
        assert_eq!(
            a.get_session(address).await.unwrap().as_ref(),
            Some(record),
            "{address}"
        );
    }
    assert!(a.has_signal_state_for_user("60120007").await.unwrap());
    assert!(
        !a.has_signal_state_for_user("6012000").await.unwrap(),
        "a prefix of a user is another user"
    );
    assert!(
        !a.has_signal_state_for_user("6012%").await.unwrap(),
        "wildcards are literal"
    );
    assert!(!b.has_signal_state_for_user("60120007").await.unwrap());
    a.put_identity("7777@lid.0", [3; 32]).await.unwrap();
    assert!(
        a.has_signal_state_for_user("7777").await.unwrap(),
        "an identity alone counts"
    );

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
    assert_eq!(a.get_max_prekey_id().await.unwrap(), u32::MAX);
    assert_eq!(b.get_max_prekey_id().await.unwrap(), 0, "no pre-keys: 0");

    // A batch of pre-keys as the client uploads them, marked uploaded afterwards.
    let keys: Vec<(u32, Bytes)> = (1..=812u32)
        .map(|id| (id, Bytes::from(id.to_be_bytes().to_vec())))
        .collect();
    b.store_prekeys_batch(&keys, false).await.unwrap();
    assert_eq!(b.get_max_prekey_id().await.unwrap(), 812);
    let mut some = b.load_prekeys_batch(&[3, 500, 812, 9999]).await.unwrap();
    some.sort_by_key(|(id, _)| *id);
    assert_eq!(
        some,
        vec![
            (3, Bytes::from(3u32.to_be_bytes().to_vec())),
            (500, Bytes::from(500u32.to_be_bytes().to_vec())),
            (812, Bytes::from(812u32.to_be_bytes().to_vec())),
        ],
        "a missing id is left out"
    );
    // Every pre-key the server holds, as the login's key-bundle check asks for them: hundreds
    // in one call, perhaps twice the same id; only this device's, each once.
    let ids: Vec<u32> = (1..=812u32).chain([812, 7, u32::MAX]).collect();
    let mut all = b.load_prekeys_batch(&ids).await.unwrap();
    all.sort_by_key(|(id, _)| *id);
    assert_eq!(all, keys, "every pre-key of the device, once, and no other device's");
    assert!(b.load_prekeys_batch(&[]).await.unwrap().is_empty());
    assert_eq!(
        a.load_prekeys_batch(&[u32::MAX]).await.unwrap(),
        vec![(u32::MAX, Bytes::from_static(b"pk-max"))],
        "the highest id"
    );
    b.mark_prekeys_uploaded(&[3, 500, 4242]).await.unwrap();
    assert!(
        b.load_prekey(4242).await.unwrap().is_none(),
        "marking never creates a pre-key"
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
