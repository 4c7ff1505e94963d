//! Prints what the database holds of one device's WhatsApp session, as JSON, without connecting
//! to WhatsApp: whether it is paired and as whom, its registration and identity key, its signed
//! pre-keys and, for each address given, its Signal session.
//!
//! `wafleet-wa-inspect <database-url> <device-id> [address…]`
//!
//! The key that seals the session at rest comes from `WA_KEYS_SECRET` or `WA_KEYS_SECRET_FILE`
//! (and `WA_KEYS_SECRET_PREVIOUS` during a rotation), else from `$DATA_DIR/wa-keys.secret`
//! (`./data` by default), as `wafleet` itself reads it.

use anyhow::{Context, bail};
use wafleet_core::keys::KeyRing;
use wafleet_core::types::DeviceId;
use wafleet_core::{Db, Settings};
use wafleet_wa::WaStore;
use whatsapp_rust::wacore::store::traits::{DeviceStore, SignalStore};

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
    let keys = match wafleet_core::keys::source::configured(&settings_from_env())? {
        Some(keys) => keys,
        None => {
            let data_dir = std::env::var_os("DATA_DIR").unwrap_or_else(|| "./data".into());
            let path = std::path::Path::new(&data_dir).join(wafleet_core::keys::source::DEFAULT_FILE_NAME);
            let secret = wafleet_core::keys::source::read_secret_file(&path, "key file")?;
            KeyRing::new(&secret, None)
        }
    };
    // Read-only: a database from before encryption is shown as it is.
    keys.set_plaintext_readable(true);
    let store = WaStore::new(db.clone(), keys, device);

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

/// The key settings from the environment (this tool takes no flags).
fn settings_from_env() -> Settings {
    let mut settings = Settings::defaults();
    let var = |name: &str| std::env::var(name).ok().filter(|v| !v.is_empty());
    settings.wa_keys_secret = var("WA_KEYS_SECRET").map(|v| v.as_str().into());
    settings.wa_keys_secret_file = var("WA_KEYS_SECRET_FILE").map(Into::into);
    settings.wa_keys_secret_previous = var("WA_KEYS_SECRET_PREVIOUS").map(|v| v.as_str().into());
    settings.wa_keys_secret_previous_file = var("WA_KEYS_SECRET_PREVIOUS_FILE").map(Into::into);
    settings
}

/// Lower-case hex, for printing keys and records.
fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}
