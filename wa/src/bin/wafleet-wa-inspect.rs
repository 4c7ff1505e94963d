//! Prints what the database holds of one device's WhatsApp session, as JSON, without connecting
//! to WhatsApp: whether it is paired and as whom, its registration and identity key, its signed
//! pre-keys and, for each address given, its Signal session.
//!
//! `wafleet-wa-inspect <database-url> <device-id> [address…]`

use anyhow::{Context, bail};
use wa_rs_core::store::traits::{DeviceStore, SignalStore};
use wafleet_core::types::DeviceId;
use wafleet_core::{Db, Settings};
use wafleet_wa::WaStore;

#[tokio::main(flavor = "current_thread")]
async fn main() -> anyhow::Result<()> {
    let mut args = std::env::args().skip(1);
    let (Some(url), Some(device)) = (args.next(), args.next()) else {
        bail!("usage: wafleet-wa-inspect <database-url> <device-id> [address…]");
    };
    let device = DeviceId(device.parse().context("the device id is a number")?);
    let mut settings = Settings::defaults();
    settings.database_url = Some(url.as_str().into());
    settings.database_max_connections = 1;
    let db = Db::connect(&settings).await.context("opening the database")?;
    let store = WaStore::new(db.clone(), device);

    let stored = store.load().await.context("loading the device")?;
    let mut sessions = serde_json::Map::new();
    for address in args {
        let record = store.get_session(&address).await.context("loading a session")?;
        sessions.insert(address, record.map(|r| hex(&r)).into());
    }
    let signed_prekeys: Vec<u32> = store
        .load_all_signed_prekeys()
        .await
        .context("loading signed pre-keys")?
        .into_iter()
        .map(|(id, _)| id)
        .collect();
    let report = serde_json::json!({
        "device_id": device.0,
        "exists": store.exists().await.context("checking the device")?,
        "paired_jid": stored.as_ref().and_then(|d| d.pn.as_ref()).map(ToString::to_string),
        "push_name": stored.as_ref().map(|d| d.push_name.clone()),
        "registration_id": stored.as_ref().map(|d| d.registration_id),
        "identity_key": stored.as_ref().map(|d| hex(d.identity_key.public_key.public_key_bytes())),
        "signed_prekeys": signed_prekeys,
        "sessions": sessions,
    });
    println!("{report}");
    db.close().await;
    Ok(())
}

/// Lower-case hex, for printing keys and records.
fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}
