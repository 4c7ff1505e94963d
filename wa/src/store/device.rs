//! The device itself: wa-rs's `Device` (keys, identity, account, push name), one row per device.

use async_trait::async_trait;
use wa_rs_core::store::Device;
use wa_rs_core::store::error::{Result, StoreError};
use wa_rs_core::store::traits::DeviceStore;
use wafleet_core::types::Timestamp;

use super::sealed::DEVICE;
use super::{WaStore, db_error, on_db};

/// The first byte of a stored device: which encoding follows.
const FORMAT_POSTCARD_V1: u8 = 1;

/// Encodes a device for storage. Not JSON: wa-rs serialises key pairs as bytes and reads them
/// back *borrowed*, which only a binary format supports. postcard is compact but not
/// self-describing, so the leading format byte lets a later wa-rs `Device` layout be told apart
/// and converted.
fn encode(device: &Device) -> Result<Vec<u8>> {
    let mut data = vec![FORMAT_POSTCARD_V1];
    postcard::to_io(device, &mut data).map_err(|e| StoreError::Serialization(format!("encoding the device: {e}")))?;
    Ok(data)
}

/// Decodes what [`encode`] stored.
fn decode(data: &[u8]) -> Result<Device> {
    match data.split_first() {
        Some((&FORMAT_POSTCARD_V1, rest)) => {
            postcard::from_bytes(rest).map_err(|e| StoreError::Serialization(format!("decoding the device: {e}")))
        }
        Some((format, _)) => Err(StoreError::Serialization(format!("unknown device format {format}"))),
        None => Err(StoreError::Serialization("empty device record".into())),
    }
}

#[async_trait]
impl DeviceStore for WaStore {
    #[tracing::instrument(level = "trace", skip_all, fields(device = %self.device))]
    async fn save(&self, device: &Device) -> Result<()> {
        if self.is_retired() {
            tracing::debug!("not saving: the session using this store has ended");
            return Ok(());
        }
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
        let sql = "SELECT data FROM wa_devices WHERE device_id = $1";
        let data: Option<Option<Vec<u8>>> = on_db!(&self.db, pool => sqlx::query_scalar(sql)
            .bind(self.device)
            .fetch_optional(pool).await)
        .map_err(db_error("loading the device"))?;
        match data.flatten() {
            // No row, or a row created but never saved: wa-rs then starts from a fresh device.
            None => Ok(None),
            Some(data) => decode(&self.open(&DEVICE, &[], &data)?).map(Some),
        }
    }

    #[tracing::instrument(level = "trace", skip_all, fields(device = %self.device))]
    async fn exists(&self) -> Result<bool> {
        let sql = "SELECT 1 FROM wa_devices WHERE device_id = $1";
        on_db!(&self.db, pool => sqlx::query(sql)
            .bind(self.device)
            .fetch_optional(pool).await.map(|row| row.is_some()))
        .map_err(db_error("checking for the device"))
    }

    /// Creates the device's row (empty until the first save) and returns its id. wa-rs only logs
    /// the id: a store is already bound to its device, so this is our `devices.id`, and creating
    /// twice is harmless.
    #[tracing::instrument(level = "trace", skip_all, fields(device = %self.device))]
    async fn create(&self) -> Result<i32> {
        let id = i32::try_from(self.device.0)
            .map_err(|_| StoreError::Database(format!("device id {} does not fit wa-rs's i32 ids", self.device)))?;
        let sql = "INSERT INTO wa_devices (device_id, data, updated_at) VALUES ($1, NULL, $2) \
                   ON CONFLICT (device_id) DO NOTHING";
        on_db!(&self.db, pool => sqlx::query(sql)
            .bind(self.device).bind(Timestamp::now().millis())
            .execute(pool).await.map(drop))
        .map_err(db_error("creating the device"))?;
        Ok(id)
    }
}
