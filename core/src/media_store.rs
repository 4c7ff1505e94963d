//! Where the files of received messages are kept: a directory (`<data_dir>/media` by default),
//! through `object_store`, so that every process of an installation reads the files any worker
//! stored when they share it (one machine, or a shared volume in scale-out).

use std::path::Path;
use std::sync::Arc;

use anyhow::Context;
use object_store::ObjectStoreExt as _;
use object_store::local::LocalFileSystem;
use object_store::path::Path as Key;
use object_store::{ObjectStore, PutPayload};
use sha2::Digest;

use crate::config::Settings;
use crate::types::DeviceId;

/// Where the API serves the file of message `message_id` of `device` (to its owner only).
pub fn served_at(device: DeviceId, message_id: &str) -> String {
    // A path segment: `+` would read as itself there, not as a space.
    let id: String = url::form_urlencoded::byte_serialize(message_id.as_bytes())
        .collect::<String>()
        .replace('+', "%20");
    format!("/api/devices/{}/media/{id}", device.0)
}

/// The store of received media; cheap to clone.
#[derive(Clone)]
pub struct MediaStore {
    inner: Arc<dyn ObjectStore>,
}

impl std::fmt::Debug for MediaStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "MediaStore({})", self.inner)
    }
}

impl MediaStore {
    /// The store `settings` name: `MEDIA_DIR`, else `<data_dir>/media`; created if missing.
    pub fn from_settings(settings: &Settings) -> anyhow::Result<Self> {
        let dir = settings
            .media_dir
            .clone()
            .unwrap_or_else(|| settings.data_dir.join("media"));
        Self::in_dir(&dir)
    }

    /// A store keeping files under `dir` (created if missing).
    pub fn in_dir(dir: &Path) -> anyhow::Result<Self> {
        std::fs::create_dir_all(dir).with_context(|| format!("creating the media directory {}", dir.display()))?;
        let local = LocalFileSystem::new_with_prefix(dir)
            .with_context(|| format!("opening the media directory {}", dir.display()))?
            // (A file is written to a temporary name and renamed: a reader never sees half of
            // one.) A device's directory goes once its last file is removed.
            .with_automatic_cleanup(true);
        Ok(MediaStore { inner: Arc::new(local) })
    }

    /// The key the file of message `message_id` of `device` is kept under: the device, then a
    /// hash of the id (WhatsApp's ids are not all safe as file names).
    pub fn key_for(device: DeviceId, message_id: &str) -> String {
        let hash = sha2::Sha256::digest(message_id.as_bytes());
        let hex: String = hash[..16].iter().map(|b| format!("{b:02x}")).collect();
        format!("{}/{hex}", device.0)
    }

    /// Keeps `bytes` under `key`, replacing what was there; durable when this returns.
    pub async fn put(&self, key: &str, bytes: Vec<u8>) -> anyhow::Result<()> {
        self.inner
            .put(&Key::from(key), PutPayload::from(bytes))
            .await
            .with_context(|| format!("storing media {key}"))?;
        Ok(())
    }

    /// The file under `key`; `None` when there is none.
    pub async fn get(&self, key: &str) -> anyhow::Result<Option<bytes::Bytes>> {
        match self.inner.get(&Key::from(key)).await {
            Ok(found) => Ok(Some(
                found.bytes().await.with_context(|| format!("reading media {key}"))?,
            )),
            Err(object_store::Error::NotFound { .. }) => Ok(None),
            Err(err) => Err(anyhow::Error::new(err).context(format!("reading media {key}"))),
        }
    }

    /// Removes the file under `key`; removing one that is not there is not an error.
    pub async fn delete(&self, key: &str) -> anyhow::Result<()> {
        match self.inner.delete(&Key::from(key)).await {
            Ok(()) | Err(object_store::Error::NotFound { .. }) => Ok(()),
            Err(err) => Err(anyhow::Error::new(err).context(format!("removing media {key}"))),
        }
    }
}
