//! The device itself: the client's `Device` (keys, identity, account, push name), one row per
//! device.
//!
//! Stored as one format byte and its encoding. Format 2 is JSON of the current client's `Device`:
//! self-describing, so fields a later release adds (with defaults) still read. Format 1 is what
//! the previous client (wa-rs 0.2) wrote, in postcard, which names no fields and breaks on any
//! added one; it is read with that client's own types and converted, and the next save writes
//! format 2, so a device linked before the upgrade connects without pairing again.

use std::sync::Arc;

use async_trait::async_trait;
use wafleet_core::types::Timestamp;
use whatsapp_rust::wacore::libsignal::protocol::{KeyPair, PrivateKey, PublicKey};
use whatsapp_rust::wacore::store::Device;
use whatsapp_rust::wacore::store::error::{Result, StoreError};
use whatsapp_rust::wacore::store::traits::DeviceStore;
use whatsapp_rust::waproto::whatsapp as wa;

use super::sealed::DEVICE;
use super::{WaStore, db_error, on_db, serde_error};

/// wa-rs 0.2's postcard encoding.
const FORMAT_POSTCARD_V1: u8 = 1;
/// JSON of the current client's `Device`.
const FORMAT_JSON_V2: u8 = 2;

/// Encodes a device for storage (format 2).
pub(crate) fn encode(device: &Device) -> Result<Vec<u8>> {
    let mut data = vec![FORMAT_JSON_V2];
    serde_json::to_writer(&mut data, device).map_err(serde_error("encoding the device"))?;
    Ok(data)
}

/// Decodes what [`encode`] stored, or what wa-rs 0.2 stored.
pub(crate) fn decode(data: &[u8]) -> Result<Device> {
    match data.split_first() {
        Some((&FORMAT_JSON_V2, rest)) => serde_json::from_slice(rest).map_err(serde_error("decoding the device")),
        Some((&FORMAT_POSTCARD_V1, rest)) => from_wa_rs(
            postcard::from_bytes(rest)
                .map_err(|e| StoreError::Validation(format!("decoding a device stored by wa-rs 0.2: {e}")))?,
        ),
        Some((format, _)) => Err(StoreError::Validation(format!("unknown device format {format}"))),
        None => Err(StoreError::Validation("empty device record".into())),
    }
}

/// The current client's `Device` for one wa-rs 0.2 stored: the same keys, identity and account;
/// what the new client added starts from its defaults (it treats them as "learn again").
fn from_wa_rs(old: wa_rs_core::store::Device) -> Result<Device> {
    let jid = |jid: Option<String>| -> Result<_> {
        jid.map(|jid| {
            jid.parse()
                .map_err(|e| StoreError::Validation(format!("converting the stored JID {jid}: {e}")))
        })
        .transpose()
    };
    let mut device = Device::new();
    device.pn = jid(old.pn.map(|j| j.to_string()))?;
    device.lid = jid(old.lid.map(|j| j.to_string()))?;
    device.registration_id = old.registration_id;
    device.noise_key = key_pair(&old.noise_key)?;
    device.identity_key = key_pair(&old.identity_key)?;
    device.signed_pre_key = key_pair(&old.signed_pre_key)?;
    device.signed_pre_key_id = old.signed_pre_key_id;
    device.signed_pre_key_signature = old.signed_pre_key_signature;
    device.adv_secret_key = old.adv_secret_key;
    device.account = old.account.map(|a| {
        Arc::new(wa::ADVSignedDeviceIdentity {
            details: a.details,
            account_signature_key: a.account_signature_key,
            account_signature: a.account_signature,
            device_signature: a.device_signature,
        })
    });
    device.push_name = old.push_name;
    device.app_version_primary = old.app_version_primary;
    device.app_version_secondary = old.app_version_secondary;
    device.app_version_tertiary = old.app_version_tertiary;
    device.app_version_last_fetched_ms = old.app_version_last_fetched_ms;
    device.edge_routing_info = old.edge_routing_info;
    device.props_hash = old.props_hash;
    Ok(device)
}

/// A wa-rs 0.2 key pair in the current client's type: the same private and public key bytes.
fn key_pair(old: &wa_rs_core::libsignal::protocol::KeyPair) -> Result<KeyPair> {
    let invalid = |e: &dyn std::fmt::Display| StoreError::Validation(format!("converting a stored key pair: {e}"));
    let private = PrivateKey::deserialize(old.private_key.serialize().as_slice()).map_err(|e| invalid(&e))?;
    let public = PublicKey::from_djb_public_key_bytes(old.public_key.public_key_bytes()).map_err(|e| invalid(&e))?;
    Ok(KeyPair::new(public, private))
}

#[async_trait]
impl DeviceStore for WaStore {
    #[tracing::instrument(level = "trace", skip_all, fields(device = %self.device))]
    async fn save(&self, device: &Device) -> Result<()> {
        // The background saver outlives the session; its last save must not bring wiped
        // credentials back or overwrite what the device's next session wrote.
        let Ok(_writing) = self.writable().await else {
            tracing::debug!("not saving: the session using this store has ended");
            return Ok(());
        };
        let data = self.seal(&DEVICE, &[], &encode(device)?);
        let sql = "INSERT INTO wa_devices (device_id, data, updated_at) VALUES ($1, $2, $3) \
                   ON CONFLICT (device_id) DO UPDATE SET data = excluded.data, updated_at = excluded.updated_at";
        on_db!(&self.db, pool => sqlx::query(sql)
            .bind(self.device).bind(data).bind(Timestamp::now().millis())
            .execute(pool).await.map(drop))
        .map_err(db_error("saving the device"))
    }

    #[tracing::instrument(level = "trace", skip_all, fields(device = %self.device))]
    async fn load(&self) -> Result<Option<Device>> {
        if let Some(device) = self.take_preloaded() {
            return Ok(Some(device));
        }
        let sql = "SELECT data FROM wa_devices WHERE device_id = $1";
        let data: Option<Option<Vec<u8>>> = on_db!(&self.db, pool => sqlx::query_scalar(sql)
            .bind(self.device)
            .fetch_optional(pool).await)
        .map_err(db_error("loading the device"))?;
        match data.flatten() {
            // No row, or a row created but never saved: the client then starts from a fresh device.
            None => Ok(None),
            Some(data) => decode(&self.open(&DEVICE, &[], &data)?).map(Some),
        }
    }

    #[tracing::instrument(level = "trace", skip_all, fields(device = %self.device))]
    async fn exists(&self) -> Result<bool> {
        if self.holds_preloaded() {
            return Ok(true);
        }
        let sql = "SELECT 1 FROM wa_devices WHERE device_id = $1";
        on_db!(&self.db, pool => sqlx::query(sql)
            .bind(self.device)
            .fetch_optional(pool).await.map(|row| row.is_some()))
        .map_err(db_error("checking for the device"))
    }

    /// Creates the device's row (empty until the first save) and returns its id. The client only
    /// logs the id: a store is already bound to its device, so this is our `devices.id`, and
    /// creating twice is harmless.
    #[tracing::instrument(level = "trace", skip_all, fields(device = %self.device))]
    async fn create(&self) -> Result<i32> {
        let id = i32::try_from(self.device.0).map_err(|_| {
            StoreError::InvalidConfig(format!("device id {} does not fit the client's i32 ids", self.device))
        })?;
        let sql = "INSERT INTO wa_devices (device_id, data, updated_at) VALUES ($1, NULL, $2) \
                   ON CONFLICT (device_id) DO NOTHING";
        on_db!(&self.db, pool => sqlx::query(sql)
            .bind(self.device).bind(Timestamp::now().millis())
            .execute(pool).await.map(drop))
        .map_err(db_error("creating the device"))?;
        Ok(id)
    }

    /// The device's state lives in the database, not in this process.
    async fn resource_report(&self) -> whatsapp_rust::wacore::stats::StorageResourceReport {
        whatsapp_rust::wacore::stats::StorageResourceReport {
            memory_bytes: Some(0),
            ..Default::default()
        }
    }
}
