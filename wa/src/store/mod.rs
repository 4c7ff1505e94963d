//! The WhatsApp client's storage [`Backend`](whatsapp_rust::wacore::store::traits::Backend) on
//! wafleet's database.
//!
//! [`WaStore`] implements the client's storage traits on sqlx, for SQLite and PostgreSQL alike.
//! Every row is keyed by the device it belongs to (tables `wa_*`, migrations `0003_wa_store` and
//! `0016_wa_client_07`), so one database holds the state of every device, a device never sees
//! another's keys, and a session can move to another worker or survive a restart. Key material
//! is sealed at rest with the process's [`KeyRing`] ([`sealed`] lists the columns). The pending
//! inbound buffer ([`inbound`]) is what lets an incoming message be acknowledged to WhatsApp only
//! once wafleet has stored it, and replayed from here by any worker after a crash.

mod appsync;
mod device;
mod inbound;
mod msg_secret;
mod protocol;
pub mod sealed;
mod signal;
mod tc_tokens;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, OnceLock};

use tokio::sync::mpsc;

use wafleet_core::Db;
use wafleet_core::keys::KeyRing;
use wafleet_core::sync;
use wafleet_core::types::DeviceId;
use whatsapp_rust::wacore::store::Device;
use whatsapp_rust::wacore::store::error::StoreError;

/// Runs `$body` with `$pool` bound to the backend's native pool (each copy is type-checked
/// against its own driver), the same pattern as wafleet-core's storage.
macro_rules! on_db {
    ($db:expr, $pool:ident => $body:expr) => {
        match $db {
            ::wafleet_core::Db::Sqlite($pool) => $body,
            ::wafleet_core::Db::Postgres($pool) => $body,
        }
    };
}
pub(crate) use on_db;

/// One device's client state in wafleet's database. Cheap to clone; pass it to the client as
/// `Arc<dyn Backend>`.
#[derive(Clone, Debug)]
pub struct WaStore {
    /// The database every device's state lives in.
    db: Db,
    /// The device this store reads and writes; every query is scoped by it.
    device: DeviceId,
    /// Seals key material before it is written, and opens it when read.
    keys: KeyRing,
    /// Set once the session that used this store has ended (closed or logged out): the client keeps
    /// a background saver running for the life of the process, and a late save from it must not
    /// bring wiped credentials back or overwrite what the device's next session wrote.
    retired: Arc<AtomicBool>,
    /// Held for reading by each write while it runs, and for writing by [`WaStore::retire`]: a
    /// write that began before the store retires ends before `retire` returns, and one that
    /// begins after sees the store retired, so nothing writes once it has returned (not after a
    /// wipe, nor over the device's next session).
    writes: Arc<tokio::sync::RwLock<()>>,
    /// Where the session hears of LID-number mappings the client learns (usync answers,
    /// `sender_alt`s), so that wafleet keeps one chat per person ([`WaStore::report_mappings_to`]).
    mappings: Arc<OnceLock<mpsc::UnboundedSender<wafleet_core::link::LinkEvent>>>,
    /// The device [`WaStore::preload`] read, for the client's first `exists` and `load`: a
    /// session that resumes reads its credentials once, not three times.
    preloaded: Arc<Preloaded>,
}

/// The slot [`WaStore::preload`] fills (the client's `Device` has no `Debug`: it holds keys).
#[derive(Default)]
struct Preloaded(Mutex<Option<Device>>);

impl std::fmt::Debug for Preloaded {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Preloaded")
            .field("held", &sync::lock(&self.0).is_some())
            .finish()
    }
}

impl WaStore {
    /// The store of `device` on `db`, sealing key material with `keys`. The device's row in
    /// `devices` must exist (foreign key).
    pub fn new(db: Db, keys: KeyRing, device: DeviceId) -> WaStore {
        WaStore {
            db,
            device,
            keys,
            retired: Arc::new(AtomicBool::new(false)),
            writes: Arc::default(),
            mappings: Arc::default(),
            preloaded: Arc::default(),
        }
    }

    /// Reads the device's credentials and keeps them for the client about to start on this
    /// store; returns whether the device is linked (its phone number is known).
    pub async fn preload(&self) -> Result<bool, StoreError> {
        use whatsapp_rust::wacore::store::traits::DeviceStore;
        let device = self.load().await?;
        let linked = device.as_ref().is_some_and(|d| d.pn.is_some());
        *sync::lock(&self.preloaded.0) = device;
        Ok(linked)
    }

    /// Whether [`WaStore::preload`] holds the device, and so it exists.
    fn holds_preloaded(&self) -> bool {
        sync::lock(&self.preloaded.0).is_some()
    }

    /// The account's own JID (its number, without a device) as [`WaStore::preload`] read it.
    pub(crate) fn preloaded_account(&self) -> Option<wafleet_core::link::Jid> {
        let device = sync::lock(&self.preloaded.0);
        let pn = device.as_ref()?.pn.as_ref()?;
        Some(wafleet_core::link::Jid(pn.to_non_ad().to_string()))
    }

    /// What [`WaStore::preload`] read, once.
    fn take_preloaded(&self) -> Option<Device> {
        sync::lock(&self.preloaded.0).take()
    }

    /// Reports each LID-number mapping the client stores from now on as a
    /// [`LinkEvent::LidMapping`](wafleet_core::link::LinkEvent::LidMapping) on `events`. The
    /// mapping is in this store before the event leaves, so a session that dies first loses
    /// only the report, and the client reports it again when it next learns it.
    pub(crate) fn report_mappings_to(&self, events: mpsc::UnboundedSender<wafleet_core::link::LinkEvent>) {
        let _ = self.mappings.set(events);
    }

    /// Tells the session that `lid` (user part) is `phone`'s (digits).
    pub(crate) fn mapping_learned(&self, lid: &str, phone: &str) {
        use wafleet_core::link::{Ack, Jid, LinkEvent, USER_SERVER};
        if let Some(events) = self.mappings.get() {
            let _ = events.send(LinkEvent::LidMapping {
                lid: Jid::for_lid(lid),
                phone: Jid(format!("{phone}@{USER_SERVER}")),
                ack: Ack::none(),
            });
        }
    }

    /// Stops this store (and its clones) from saving the device any more, once the writes under
    /// way have finished; see [`WaStore::wipe`].
    pub async fn retire(&self) {
        let _alone = self.writes.write().await;
        self.retired.store(true, Ordering::SeqCst);
    }

    /// Whether [`WaStore::retire`] was called.
    pub fn is_retired(&self) -> bool {
        self.retired.load(Ordering::SeqCst)
    }

    /// Refuses writes once the session using this store has ended: the client flushes its Signal
    /// state behind the scenes, and a late flush of a closed session must not overwrite what the
    /// device's next session (perhaps on another worker) wrote since. A write holds the guard it
    /// returns until it is done, so [`WaStore::retire`] waits for it.
    pub(crate) async fn writable(&self) -> Result<tokio::sync::RwLockReadGuard<'_, ()>, StoreError> {
        let writing = self.writes.read().await;
        if self.is_retired() {
            return Err(StoreError::Validation(format!(
                "the session of device {} has ended; its state belongs to the device's next session",
                self.device
            )));
        }
        Ok(writing)
    }

    /// The device this store belongs to.
    pub fn device(&self) -> DeviceId {
        self.device
    }

    /// The database it uses.
    pub fn db(&self) -> &Db {
        &self.db
    }

    /// Deletes everything the client stored for this device (after a logout): the next session has to
    /// pair again. Runs in one transaction so a crash leaves either all state or none. Retires
    /// the store first, so that the client cannot save the device back afterwards.
    #[tracing::instrument(skip(self), fields(device = %self.device))]
    pub async fn wipe(&self) -> Result<(), StoreError> {
        self.retire().await;
        // Children first is not needed (no foreign keys between wa_* tables), but the device row
        // goes last so that `exists()` stays true until the rest is gone.
        const TABLES: [&str; 17] = [
            "DELETE FROM wa_identities WHERE device_id = $1",
            "DELETE FROM wa_sessions WHERE device_id = $1",
            "DELETE FROM wa_prekeys WHERE device_id = $1",
            "DELETE FROM wa_signed_prekeys WHERE device_id = $1",
            "DELETE FROM wa_sender_keys WHERE device_id = $1",
            "DELETE FROM wa_app_state_keys WHERE device_id = $1",
            "DELETE FROM wa_app_state_versions WHERE device_id = $1",
            "DELETE FROM wa_app_state_mutation_macs WHERE device_id = $1",
            "DELETE FROM wa_sender_key_devices WHERE device_id = $1",
            "DELETE FROM wa_lid_mappings WHERE device_id = $1",
            "DELETE FROM wa_base_keys WHERE device_id = $1",
            "DELETE FROM wa_device_lists WHERE device_id = $1",
            "DELETE FROM wa_tc_tokens WHERE device_id = $1",
            "DELETE FROM wa_sent_messages WHERE device_id = $1",
            "DELETE FROM wa_msg_secrets WHERE device_id = $1",
            "DELETE FROM wa_pending_inbound WHERE device_id = $1",
            "DELETE FROM wa_devices WHERE device_id = $1",
        ];
        on_db!(&self.db, pool => {
            let mut tx = pool.begin().await.map_err(db_error("beginning the wipe"))?;
            for sql in TABLES {
                sqlx::query(sql)
                    .bind(self.device)
                    .execute(&mut *tx)
                    .await
                    .map_err(db_error("wiping the device's WhatsApp state"))?;
            }
            tx.commit().await.map_err(db_error("committing the wipe"))
        })
    }
}

/// An error of the database or of an encoding, with what the store was doing.
#[derive(Debug, thiserror::Error)]
#[error("{doing}: {source}")]
pub(crate) struct Doing<E: std::error::Error + 'static> {
    doing: &'static str,
    #[source]
    source: E,
}

/// Maps a database error to the client's error type, saying what we were doing.
pub(crate) fn db_error(doing: &'static str) -> impl FnOnce(sqlx::Error) -> StoreError {
    move |source| StoreError::Database(Box::new(Doing { doing, source }))
}

/// Maps a (de)serialisation error to the client's error type, saying what we were doing.
pub(crate) fn serde_error(doing: &'static str) -> impl FnOnce(serde_json::Error) -> StoreError {
    move |source| StoreError::Serialization(Box::new(Doing { doing, source }))
}

/// Reads back a u32 that the client gave us and we stored as BIGINT.
pub(crate) fn to_u32(value: i64, what: &'static str) -> Result<u32, StoreError> {
    u32::try_from(value).map_err(|_| StoreError::Validation(format!("stored {what} {value} is not a u32")))
}
