//! Fetching the files of received messages through the sessions this worker holds, and keeping
//! them in the media store.
//!
//! A message's file is recorded with the message ([`wafleet_core::db::DueMedia`]); the holder of
//! the device fetches it soon after, so that it is kept before WhatsApp's servers let it go
//! (weeks). A fetch that fails is tried again with a growing pause, [`MEDIA_ATTEMPTS`] times,
//! then given up (the message stays, marked `failed`). A worker that dies mid-fetch leaves the row
//! pending, and the device's next holder fetches it: a file is written under a key of its own
//! message, so fetching it twice only writes the same file twice.

use std::collections::HashSet;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use wafleet_core::Db;
use wafleet_core::db::{DueMedia, MEDIA_ATTEMPTS};
use wafleet_core::link::{LinkError, Session};
use wafleet_core::media_store::MediaStore;
use wafleet_core::sync;
use wafleet_core::types::{DeviceId, Timestamp};

/// Longest one fetch may take (a large video over a slow link).
const FETCH_TIMEOUT: Duration = Duration::from_secs(300);
/// Files fetched at once per worker.
const CONCURRENCY: usize = 4;
/// The pause before the second attempt; it doubles with each one after.
const FIRST_RETRY: Duration = Duration::from_secs(30);

/// Where fetched files go, and the largest one kept.
#[derive(Clone, Debug)]
pub struct MediaOptions {
    /// The store.
    pub store: MediaStore,
    /// Larger files are not fetched (`MAX_RECEIVED_MEDIA_BYTES`).
    pub max_bytes: u64,
}

/// Fetches due files in the background, a few at a time.
pub(crate) struct MediaFetcher {
    db: Db,
    options: MediaOptions,
    in_flight: Arc<Mutex<HashSet<(DeviceId, String)>>>,
}

impl MediaFetcher {
    pub fn new(db: Db, options: MediaOptions) -> Self {
        MediaFetcher {
            db,
            options,
            in_flight: Arc::default(),
        }
    }

    /// Starts fetching the due files of devices in `sessions` (held by `worker`) that are not
    /// being fetched already, up to [`CONCURRENCY`] at once.
    pub async fn run_due(&self, worker: &str, sessions: &std::collections::HashMap<DeviceId, Arc<dyn Session>>) {
        let free = CONCURRENCY.saturating_sub(sync::lock(&self.in_flight).len());
        if free == 0 || sessions.is_empty() {
            return;
        }
        let limit = i64::try_from(free + CONCURRENCY).unwrap_or(i64::MAX);
        let due = match self.db.due_media(worker, Timestamp::now(), limit).await {
            Ok(due) => due,
            Err(err) => {
                tracing::warn!(error = ?err, "reading the files due to be fetched failed");
                return;
            }
        };
        let mut started = 0;
        for media in due {
            if started == free {
                break;
            }
            let Some(session) = sessions.get(&media.device_id).cloned() else {
                continue;
            };
            let key = (media.device_id, media.message_id.clone());
            if !sync::lock(&self.in_flight).insert(key.clone()) {
                continue;
            }
            started += 1;
            let (db, options, in_flight) = (self.db.clone(), self.options.clone(), self.in_flight.clone());
            tokio::spawn(async move {
                fetch(&db, &options, &media, session.as_ref()).await;
                sync::lock(&in_flight).remove(&key);
            });
        }
    }
}

/// Fetches one file and records what came of it.
#[tracing::instrument(skip_all, fields(device = %media.device_id, message = %media.message_id, bytes = media.size))]
async fn fetch(db: &Db, options: &MediaOptions, media: &DueMedia, session: &dyn Session) {
    let too_large = |bytes: u64| {
        LinkError::Invalid(format!(
            "the file is {bytes} bytes, more than MAX_RECEIVED_MEDIA_BYTES ({})",
            options.max_bytes
        ))
    };
    let outcome = if media.size.unsigned_abs() > options.max_bytes {
        Err(too_large(media.size.unsigned_abs()))
    } else {
        match tokio::time::timeout(FETCH_TIMEOUT, session.download(&media.as_incoming())).await {
            Ok(result) => result,
            Err(_) => Err(LinkError::Transient("the download took too long".into())),
        }
    };
    let bytes = match outcome {
        Ok(bytes) if bytes.len() as u64 > options.max_bytes => Err(too_large(bytes.len() as u64)),
        other => other,
    };
    let recorded = match bytes {
        Ok(bytes) => {
            let key = MediaStore::key_for(media.device_id, &media.message_id);
            match options.store.keep(&key, bytes, &media.mime).await {
                Ok(()) => match db
                    .media_stored(media.device_id, &media.message_id, &key, Timestamp::now())
                    .await
                {
                    Ok(true) => {
                        tracing::debug!("file kept");
                        Ok(())
                    }
                    // Its message went meanwhile (retention, the device deleted).
                    Ok(false) => options.store.delete(&key).await.map_err(Into::into),
                    Err(err) => Err(err),
                },
                Err(err) => {
                    tracing::warn!(error = ?err, "keeping a fetched file failed; trying again later");
                    failed(db, media, &format!("{err:#}"), true).await
                }
            }
        }
        Err(err) => {
            let again = !matches!(err, LinkError::Invalid(_));
            tracing::info!(error = %err, again, "fetching a file failed");
            failed(db, media, &err.to_string(), again).await
        }
    };
    if let Err(err) = recorded {
        tracing::warn!(error = ?err, "recording a fetch failed; it is tried again");
    }
}

/// Records a failed fetch: tried again later (`again`, while attempts are left), or given up.
async fn failed(db: &Db, media: &DueMedia, error: &str, again: bool) -> wafleet_core::Result<()> {
    let attempt = media.attempts + 1;
    let retry_at = (again && attempt < MEDIA_ATTEMPTS).then(|| {
        let pause = FIRST_RETRY * 2u32.saturating_pow(u32::try_from(media.attempts).unwrap_or(0));
        Timestamp::now().plus_secs(i64::try_from(pause.as_secs()).unwrap_or(i64::MAX))
    });
    db.media_failed(media.device_id, &media.message_id, error, retry_at)
        .await
}
