//! App-state sync: keys, versions, mutation MACs.

use std::collections::HashMap;

use wafleet_core::testing::Backend;
use whatsapp_rust::wacore::appstate::hash::HashState;
use whatsapp_rust::wacore::appstate::processor::AppStateMutationMAC;
use whatsapp_rust::wacore::store::traits::{AppStateSyncKey, AppSyncStore};

use crate::common;

pub async fn app_sync_store(backend: Backend) {
    let (_db, _user, stores) = common::devices(backend, 2).await;
    let (a, b) = (&stores[0], &stores[1]);

    // Sync keys.
    assert!(a.get_sync_key(b"k1").await.unwrap().is_none());
    let key = |n: u8| AppStateSyncKey {
        key_data: vec![n; 32],
        fingerprint: vec![n, n],
        timestamp: 1_700_000_000 + i64::from(n),
    };
    a.set_sync_key(b"k1", key(1)).await.unwrap();
    a.set_sync_key(b"k1", key(2)).await.unwrap();
    let got = a.get_sync_key(b"k1").await.unwrap().expect("stored key");
    assert_eq!(
        (got.key_data, got.fingerprint, got.timestamp),
        (vec![2; 32], vec![2, 2], 1_700_000_002)
    );
    assert!(b.get_sync_key(b"k1").await.unwrap().is_none());

    // Versions: default for unknown collections, then round-trip of every field.
    let fresh = a.get_version("regular").await.unwrap();
    assert_eq!((fresh.version, fresh.hash), (0, [0; 128]));
    let mut state = HashState {
        version: 42,
        hash: [7; 128],
        index_value_map: HashMap::from([("idx".to_owned(), vec![1, 2, 3])]),
        ..HashState::default()
    };
    a.set_version("regular", state.clone()).await.unwrap();
    state.version = 43;
    a.set_version("regular", state).await.unwrap();
    let got = a.get_version("regular").await.unwrap();
    assert_eq!((got.version, got.hash), (43, [7; 128]));
    assert_eq!(got.index_value_map.get("idx"), Some(&vec![1, 2, 3]));
    assert_eq!(b.get_version("regular").await.unwrap().version, 0);
    assert_eq!(a.get_version("critical_block").await.unwrap().version, 0);

    // Mutation MACs: put (with upsert), get, delete some, isolation by collection and device.
    let mac = |i: u8, v: u8| AppStateMutationMAC {
        index_mac: vec![i; 4],
        value_mac: vec![v; 8],
    };
    a.put_mutation_macs("regular", 1, &[mac(1, 10), mac(2, 20), mac(3, 30)])
        .await
        .unwrap();
    a.put_mutation_macs("regular", 2, &[mac(2, 21)]).await.unwrap();
    a.put_mutation_macs("regular", 2, &[]).await.unwrap();
    assert_eq!(a.get_mutation_mac("regular", &[2; 4]).await.unwrap(), Some(vec![21; 8]));
    assert_eq!(a.get_mutation_mac("regular", &[1; 4]).await.unwrap(), Some(vec![10; 8]));
    assert_eq!(a.get_mutation_mac("regular_low", &[1; 4]).await.unwrap(), None);
    assert_eq!(b.get_mutation_mac("regular", &[1; 4]).await.unwrap(), None);
    a.delete_mutation_macs("regular", &[vec![1; 4], vec![3; 4], vec![9; 4]])
        .await
        .unwrap();
    assert_eq!(a.get_mutation_mac("regular", &[1; 4]).await.unwrap(), None);
    assert_eq!(a.get_mutation_mac("regular", &[3; 4]).await.unwrap(), None);
    assert_eq!(a.get_mutation_mac("regular", &[2; 4]).await.unwrap(), Some(vec![21; 8]));

    // Many MACs at once, as a patch is applied: full 32-byte index MACs.
    let full = |i: u8| AppStateMutationMAC {
        index_mac: vec![i; 32],
        value_mac: vec![i; 8],
    };
    let many: Vec<AppStateMutationMAC> = (0..=250).map(full).collect();
    a.put_mutation_macs("regular_high", 3, &many).await.unwrap();
    let wanted: Vec<[u8; 32]> = vec![[5; 32], [250; 32], [251; 32]];
    let got = a.get_mutation_macs("regular_high", &wanted).await.unwrap();
    assert_eq!(got.len(), 2, "the missing one is left out");
    assert_eq!(got.get(&[5; 32]), Some(&vec![5; 8]));
    assert_eq!(got.get(&[250; 32]), Some(&vec![250; 8]));
    assert!(b.get_mutation_macs("regular_high", &wanted).await.unwrap().is_empty());
    a.clear_mutation_macs("regular_high").await.unwrap();
    assert!(a.get_mutation_macs("regular_high", &wanted).await.unwrap().is_empty());
    assert_eq!(
        a.get_mutation_mac("regular", &[2; 4]).await.unwrap(),
        Some(vec![21; 8]),
        "clearing one collection kept another"
    );

    // The newest sync key is the greatest key id.
    assert_eq!(b.get_latest_sync_key_id().await.unwrap(), None);
    a.set_sync_key(&[0, 0, 9], key(3)).await.unwrap();
    a.set_sync_key(&[0, 1, 0], key(4)).await.unwrap();
    assert_eq!(a.get_latest_sync_key_id().await.unwrap(), Some(b"k1".to_vec()));
    b.set_sync_key(&[0, 0, 9], key(3)).await.unwrap();
    b.set_sync_key(&[0, 1, 0], key(4)).await.unwrap();
    assert_eq!(b.get_latest_sync_key_id().await.unwrap(), Some(vec![0, 1, 0]));
}
