//! A device's state written by one process is read back by another process with its own pool:
//! what lets a session move between workers and survive restarts.

mod common;

use std::process::Command;

use wafleet_core::testing::Backend;
use whatsapp_rust::wacore::store::Device;
use whatsapp_rust::wacore::store::traits::{DeviceStore, SignalStore};

async fn state_survives_the_process(backend: Backend) {
    let (test, _user, stores) = common::devices(backend, 2).await;
    let (a, other) = (&stores[0], &stores[1]);
    let mut device = Device::new();
    device.pn = Some("60123456789:7@s.whatsapp.net".parse().expect("jid"));
    device.push_name = "Kedai Ali".into();
    a.create().await.unwrap();
    a.save(&device).await.unwrap();
    a.put_session("60198765432.0", &[0xde, 0xad, 0xbe, 0xef]).await.unwrap();
    a.store_signed_prekey(1, b"spk").await.unwrap();
    // Another device's session under the same address must not leak into A's.
    other.put_session("60111111111.0", b"not-a").await.unwrap();

    let url = test
        .settings
        .database_url
        .as_ref()
        .expect("test database url")
        .expose()
        .to_owned();
    let id = a.device().0.to_string();
    // The other process is given the key the way a worker is.
    let secret = test.settings.wa_keys_secret.as_ref().unwrap().expose().to_owned();
    let output = tokio::task::spawn_blocking(move || {
        Command::new(env!("CARGO_BIN_EXE_wafleet-wa-inspect"))
            .args([url.as_str(), id.as_str(), "60198765432.0", "60111111111.0"])
            .env("WA_KEYS_SECRET", secret)
            .output()
    })
    .await
    .unwrap()
    .expect("run the inspector");
    assert!(
        output.status.success(),
        "inspector failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    let report: serde_json::Value = serde_json::from_slice(&output.stdout).expect("JSON report");

    assert_eq!(report["exists"], true);
    assert_eq!(report["paired_jid"], "60123456789:7@s.whatsapp.net");
    assert_eq!(report["push_name"], "Kedai Ali");
    assert_eq!(report["registration_id"], device.registration_id);
    let identity: String = device
        .identity_key
        .public_key
        .public_key_bytes()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    assert_eq!(
        report["identity_key"], identity,
        "the identity key survives the process boundary"
    );
    assert_eq!(report["signed_prekeys"], serde_json::json!([1]));
    assert_eq!(report["sessions"]["60198765432.0"], "deadbeef");
    assert_eq!(
        report["sessions"]["60111111111.0"],
        serde_json::Value::Null,
        "another device's session leaked"
    );
}

wafleet_core::testing::on_both_backends!(state_survives_the_process);
