//! Where the files of messages are kept: a directory (`<data_dir>/media` by default), or an
//! S3-compatible bucket (`MEDIA_URL`), through `object_store`, so that every process of an
//! installation reads the files any worker stored (one machine, a shared volume, or the bucket
//! in scale-out).

use std::path::Path;
use std::sync::Arc;

use anyhow::Context;
use object_store::ObjectStoreExt as _;
use object_store::local::LocalFileSystem;
use object_store::path::Path as Key;
use object_store::prefix::PrefixStore;
use object_store::{ObjectStore, PutPayload};
use sha2::Digest;

use crate::config::Settings;
use crate::types::DeviceId;

/// What a thumbnail's key adds to its picture's.
const THUMBNAIL_SUFFIX: &str = ".thumb";

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
    /// The store `settings` name: the bucket of `MEDIA_URL` (with the `AWS_*` variables and
    /// `media_options`), else `MEDIA_DIR`, else `<data_dir>/media` (created if missing).
    pub fn from_settings(settings: &Settings) -> anyhow::Result<Self> {
        if let Some(url) = &settings.media_url {
            let options = settings
                .media_options
                .iter()
                .map(|(key, value)| (key.clone(), value.expose().to_owned()));
            return Self::open_bucket(object_store::aws::AmazonS3Builder::from_env(), url, options);
        }
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

    /// A store keeping files in the S3-compatible bucket `url` names (`s3://bucket[/prefix]`, or
    /// a provider's `https://` form), under its prefix, configured by `options` (object_store's
    /// `aws_*` keys; unknown ones are left out). Nothing is asked of the server until a file is.
    pub fn in_bucket(url: &str, options: impl IntoIterator<Item = (String, String)>) -> anyhow::Result<Self> {
        Self::open_bucket(object_store::aws::AmazonS3Builder::new(), url, options)
    }

    /// [`MediaStore::in_bucket`] from `builder` (empty, or the `AWS_*` variables already read).
    fn open_bucket(
        mut builder: object_store::aws::AmazonS3Builder,
        url: &str,
        options: impl IntoIterator<Item = (String, String)>,
    ) -> anyhow::Result<Self> {
        use object_store::aws::AmazonS3ConfigKey;
        let parsed = url::Url::parse(url).with_context(|| format!("MEDIA_URL `{url}` is not a URL"))?;
        anyhow::ensure!(
            matches!(parsed.scheme(), "s3" | "s3a" | "https"),
            "MEDIA_URL `{url}`: give an S3 bucket, e.g. s3://my-bucket/wafleet"
        );
        for (key, value) in options {
            if let Ok(key) = key.parse::<AmazonS3ConfigKey>() {
                builder = builder.with_config(key, value);
            }
        }
        let bucket = builder
            .with_url(url)
            .build()
            .with_context(|| format!("opening the media bucket {url}"))?;
        // `s3://bucket/prefix`: the files go under the prefix (the provider's `https://` forms
        // name the bucket in the path, and keep files at its root).
        let prefix = match parsed.scheme() {
            "https" => String::new(),
            _ => parsed.path().trim_matches('/').to_owned(),
        };
        let inner: Arc<dyn ObjectStore> = if prefix.is_empty() {
            Arc::new(bucket)
        } else {
            Arc::new(PrefixStore::new(bucket, Key::from(prefix.as_str())))
        };
        Ok(MediaStore { inner })
    }

    /// How many files the store holds, thumbnails left out (for tests, and operators checking a
    /// migration).
    pub async fn count(&self) -> anyhow::Result<usize> {
        use futures_util::TryStreamExt as _;
        let files: Vec<_> = self.inner.list(None).try_collect().await.context("listing media")?;
        Ok(files
            .iter()
            .filter(|f| !f.location.as_ref().ends_with(THUMBNAIL_SUFFIX))
            .count())
    }

    /// The key the file of message `message_id` of `device` is kept under: the device, then a
    /// hash of the id (WhatsApp's ids are not all safe as file names).
    pub fn key_for(device: DeviceId, message_id: &str) -> String {
        let hash = sha2::Sha256::digest(message_id.as_bytes());
        let hex: String = hash[..16].iter().map(|b| format!("{b:02x}")).collect();
        format!("{}/{hex}", device.0)
    }

    /// The key of the thumbnail of the picture kept under `key`.
    pub fn thumbnail_key(key: &str) -> String {
        format!("{key}{THUMBNAIL_SUFFIX}")
    }

    /// Whether a file of type `mime` gets a thumbnail: pictures, but not stickers (WebP), which
    /// are small already and keep their transparency.
    pub fn has_thumbnail(mime: &str) -> bool {
        mime.starts_with("image/") && !mime.starts_with("image/webp")
    }

    /// Keeps the file of a message (`bytes`, of type `mime`) under `key`, and for a picture a
    /// thumbnail beside it ([`crate::media::thumbnail`], made on the blocking pool). The file is
    /// durable when this returns; a thumbnail that cannot be made or stored is left out (the
    /// viewer then shows the file itself).
    pub async fn keep(&self, key: &str, bytes: Vec<u8>, mime: &str) -> anyhow::Result<()> {
        let source = Self::has_thumbnail(mime).then(|| bytes.clone());
        self.put(key, bytes).await?;
        if let Some(source) = source {
            let kept = match crate::media::thumbnail_off_runtime(source).await {
                Ok(thumbnail) => self.put(&Self::thumbnail_key(key), thumbnail).await,
                Err(err) => Err(err.into()),
            };
            if let Err(err) = kept {
                tracing::debug!(error = %format!("{err:#}"), key, "no thumbnail for this picture");
            }
        }
        Ok(())
    }

    /// The thumbnail of the picture kept under `key`, when one was made.
    pub async fn thumbnail(&self, key: &str) -> anyhow::Result<Option<bytes::Bytes>> {
        self.get(&Self::thumbnail_key(key)).await
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

    /// Removes the file under `key`, and its thumbnail; removing one that is not there is not an
    /// error.
    pub async fn delete(&self, key: &str) -> anyhow::Result<()> {
        for key in [Self::thumbnail_key(key), key.to_owned()] {
            match self.inner.delete(&Key::from(key.as_str())).await {
                Ok(()) | Err(object_store::Error::NotFound { .. }) => {}
                Err(err) => return Err(anyhow::Error::new(err).context(format!("removing media {key}"))),
            }
        }
        Ok(())
    }
}
