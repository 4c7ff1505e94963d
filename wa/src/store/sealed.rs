//! Which `wa_*` columns are sealed at rest, and the store's two helpers that seal and open them.
//!
//! Sealed: everything that is secret or that lets its holder act as the device, i.e. the device
//! record (identity, Noise, signed pre-key and adv keys), Signal sessions, pre-keys, signed
//! pre-keys, sender keys, app-state sync keys and trusted-contact tokens; and, because sealing
//! costs microseconds and a simple rule is easier to keep, the other key columns too (remote
//! identity keys and base keys, which are public). Left in plain text: addresses, JIDs, LID
//! mappings, device lists, app-state versions and mutation MACs (hashes, not keys), and times.

use wafleet_core::keys::{KeyColumn, RowKey, SealedColumn};
use whatsapp_rust::wacore::store::error::StoreError;

use super::WaStore;

/// `wa_devices.data`: the device's own keys and account.
pub const DEVICE: SealedColumn = SealedColumn::binary("wa_devices", "data", &[]);
/// `wa_identities.key`.
pub const IDENTITY: SealedColumn = SealedColumn::binary("wa_identities", "key", &[KeyColumn::text("address")]);
/// `wa_sessions.record`.
pub const SESSION: SealedColumn = SealedColumn::binary("wa_sessions", "record", &[KeyColumn::text("address")]);
/// `wa_prekeys.record`.
pub const PREKEY: SealedColumn = SealedColumn::binary("wa_prekeys", "record", &[KeyColumn::int("key_id")]);
/// `wa_signed_prekeys.record`.
pub const SIGNED_PREKEY: SealedColumn =
    SealedColumn::binary("wa_signed_prekeys", "record", &[KeyColumn::int("key_id")]);
/// `wa_sender_keys.record`.
pub const SENDER_KEY: SealedColumn = SealedColumn::binary("wa_sender_keys", "record", &[KeyColumn::text("address")]);
/// `wa_app_state_keys.key_data`.
pub const APP_STATE_KEY: SealedColumn =
    SealedColumn::binary("wa_app_state_keys", "key_data", &[KeyColumn::bytes("key_id")]);
/// `wa_base_keys.base_key`.
pub const BASE_KEY: SealedColumn = SealedColumn::binary(
    "wa_base_keys",
    "base_key",
    &[KeyColumn::text("address"), KeyColumn::text("message_id")],
);
/// `wa_tc_tokens.token`.
pub const TC_TOKEN: SealedColumn = SealedColumn::binary("wa_tc_tokens", "token", &[KeyColumn::text("jid")]);

/// `wa_msg_secrets.secret`.
pub const MSG_SECRET: SealedColumn = SealedColumn::binary(
    "wa_msg_secrets",
    "secret",
    &[
        KeyColumn::text("chat_jid"),
        KeyColumn::text("sender_jid"),
        KeyColumn::text("message_id"),
    ],
);

/// Every sealed column of the store, for the re-encryption sweep and `wafleet keys status`.
pub static SEALED_COLUMNS: [&SealedColumn; 10] = [
    &DEVICE,
    &IDENTITY,
    &SESSION,
    &PREKEY,
    &SIGNED_PREKEY,
    &SENDER_KEY,
    &APP_STATE_KEY,
    &BASE_KEY,
    &TC_TOKEN,
    &MSG_SECRET,
];

impl WaStore {
    /// `plaintext` sealed for `column` in this device's row `key`.
    pub(crate) fn seal(&self, column: &SealedColumn, key: &[RowKey<'_>], plaintext: &[u8]) -> Vec<u8> {
        self.keys.seal(&column.cell(self.device, key), plaintext)
    }

    /// What [`WaStore::seal`] sealed; errors name the column and device, never the value.
    pub(crate) fn open(&self, column: &SealedColumn, key: &[RowKey<'_>], stored: &[u8]) -> Result<Vec<u8>, StoreError> {
        self.keys.open(&column.cell(self.device, key), stored).map_err(|e| {
            StoreError::Validation(format!(
                "opening {}.{} of device {}: {e}",
                column.table, column.column, self.device
            ))
        })
    }

    /// [`WaStore::open`] of a value that may be absent.
    pub(crate) fn open_optional(
        &self,
        column: &SealedColumn,
        key: &[RowKey<'_>],
        stored: Option<Vec<u8>>,
    ) -> Result<Option<Vec<u8>>, StoreError> {
        stored.map(|s| self.open(column, key, &s)).transpose()
    }
}
