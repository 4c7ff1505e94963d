//! Encryption at rest of WhatsApp key material: identity, Noise and Signal keys, sessions,
//! app-state keys and link credentials never reach the database in plain text.
//!
//! - [`KeyRing`]: the current key (seals every write) and optionally the previous one (still
//!   opens rows during a rotation). Secrets come from the environment or a file
//!   ([`source`]), never from the database.
//! - [`SealedColumn`] and [`Cell`]: which columns hold sealed values, and the identity of one
//!   value (table, column, device, row key) that its ciphertext is bound to.
//! - [`registry`]: a check value per key in `seal_keys`, so a wrong or missing key stops start-up
//!   with a clear error; [`reseal`]: the background sweep that seals rows written before
//!   encryption and moves rows to the current key after a rotation.
//!
//! Storage code calls [`KeyRing::seal`] and [`KeyRing::open`] in its read and write helpers only;
//! the envelope format is in [`envelope`].

mod column;
pub mod envelope;
pub mod registry;
pub mod reseal;
pub mod source;

use std::fmt;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

pub use column::{Cell, Form, KeyColumn, KeyKind, RowKey, SealedColumn};
pub use envelope::KeyId;
use envelope::{SealKey, Stored};

/// Why a stored value could not be opened. Never carries the value itself.
#[derive(Debug, thiserror::Error)]
pub enum SealError {
    /// Sealed with a key this process was not given.
    #[error(
        "sealed with key {0}, which is not configured (give it as WA_KEYS_SECRET_PREVIOUS until the rows are moved to the current key)"
    )]
    UnknownKey(KeyId),
    /// The ciphertext does not authenticate: tampered with, or copied from another row or device.
    #[error("does not authenticate with key {0}: altered, or moved from another row or device")]
    Unauthentic(KeyId),
    /// Not a well-formed envelope.
    #[error("malformed sealed value")]
    Malformed,
    /// An envelope version this release does not know (written by a newer release).
    #[error("sealed in envelope version {0}, which this release cannot read")]
    UnsupportedVersion(u8),
    /// A plain-text value where every value has been sealed already.
    #[error("stored in plain text, though every row of this database has been sealed")]
    Plaintext,
}

/// The keys that seal and open key material. Cheap to clone; its `Debug` shows key ids only.
#[derive(Clone)]
pub struct KeyRing {
    inner: Arc<Inner>,
}

struct Inner {
    /// Seals every write, and opens.
    current: SealKey,
    /// Only opens: the key being rotated away from (or, before a rotation, the next key).
    previous: Option<SealKey>,
    /// Whether plain-text values (written before encryption) are still read. True until the
    /// sweep has sealed every such row; see [`registry::startup`].
    plaintext_readable: AtomicBool,
}

impl fmt::Debug for KeyRing {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("KeyRing")
            .field("current", &self.current_id())
            .field("previous", &self.previous_id())
            .finish()
    }
}

impl KeyRing {
    /// A ring of the current secret and optionally the previous one (32 bytes each).
    pub fn new(current: &[u8; 32], previous: Option<&[u8; 32]>) -> KeyRing {
        let current = SealKey::from_secret(current);
        // The same secret given twice is one key.
        let previous = previous.map(SealKey::from_secret).filter(|p| p.id != current.id);
        KeyRing {
            inner: Arc::new(Inner {
                current,
                previous,
                plaintext_readable: AtomicBool::new(false),
            }),
        }
    }

    /// A ring of one random key that no one else has (tests, and `wafleet keys generate`'s checks).
    pub fn random() -> KeyRing {
        KeyRing::new(&source::random_secret(), None)
    }

    /// The id of the key that seals writes.
    pub fn current_id(&self) -> KeyId {
        self.inner.current.id
    }

    /// The id of the key that only opens, if any.
    pub fn previous_id(&self) -> Option<KeyId> {
        self.inner.previous.as_ref().map(|k| k.id)
    }

    /// Whether `id` is one of this ring's keys.
    pub fn has(&self, id: KeyId) -> bool {
        self.key(id).is_some()
    }

    fn key(&self, id: KeyId) -> Option<&SealKey> {
        std::iter::once(&self.inner.current)
            .chain(self.inner.previous.as_ref())
            .find(|k| k.id == id)
    }

    /// Whether plain-text values are still read (a database written before encryption, until
    /// the sweep has sealed it all).
    pub fn plaintext_readable(&self) -> bool {
        self.inner.plaintext_readable.load(Ordering::Relaxed)
    }

    /// Allows or refuses plain-text values from now on.
    pub fn set_plaintext_readable(&self, readable: bool) {
        self.inner.plaintext_readable.store(readable, Ordering::Relaxed);
    }

    /// `plaintext` sealed with the current key for `cell`, in binary form.
    pub fn seal(&self, cell: &Cell<'_>, plaintext: &[u8]) -> Vec<u8> {
        self.inner.current.seal(&cell.aad(), plaintext)
    }

    /// `plaintext` sealed with the current key for `cell`, in text form.
    pub fn seal_text(&self, cell: &Cell<'_>, plaintext: &str) -> String {
        self.inner.current.seal_text(&cell.aad(), plaintext.as_bytes())
    }

    /// The plaintext of binary value `stored` of `cell`, sealed with any key of the ring (or in
    /// plain text while [`KeyRing::plaintext_readable`]).
    pub fn open(&self, cell: &Cell<'_>, stored: &[u8]) -> Result<Vec<u8>, SealError> {
        self.open_parsed(cell, envelope::parse(stored)?)
    }

    /// The plaintext of text value `stored` of `cell`; see [`KeyRing::open`].
    pub fn open_text(&self, cell: &Cell<'_>, stored: &str) -> Result<String, SealError> {
        let plain = self.open_parsed(cell, envelope::parse_text(stored)?)?;
        String::from_utf8(plain).map_err(|_| SealError::Malformed)
    }

    fn open_parsed(&self, cell: &Cell<'_>, stored: Stored<'_>) -> Result<Vec<u8>, SealError> {
        match stored {
            Stored::Sealed { id, body } => self.key(id).ok_or(SealError::UnknownKey(id))?.open(&cell.aad(), &body),
            Stored::Plain(plain) if self.plaintext_readable() => Ok(plain.to_vec()),
            Stored::Plain(_) => Err(SealError::Plaintext),
        }
    }

    /// Whether binary value `stored` is sealed with the current key (nothing to move).
    pub fn is_current(&self, stored: &[u8]) -> bool {
        stored.starts_with(&self.inner.current.header())
    }

    /// The header every value sealed with the current key starts with, in `form`.
    pub(crate) fn current_header(&self, form: Form) -> Vec<u8> {
        match form {
            Form::Binary => self.inner.current.header().to_vec(),
            Form::Text => self.inner.current.text_header().into_bytes(),
        }
    }

    /// A known plaintext sealed with key `id`, stored per key so that start-up can tell a wrong
    /// key from a right one before touching any row.
    pub(crate) fn check_value(&self, id: KeyId) -> Option<Vec<u8>> {
        self.key(id)
            .map(|k| k.seal(&registry::check_aad(id), registry::CHECK_PLAINTEXT))
    }

    /// Whether `check` is the check value of key `id` of this ring.
    pub(crate) fn verifies(&self, id: KeyId, check: &[u8]) -> bool {
        let Some(key) = self.key(id) else { return false };
        match envelope::parse(check) {
            Ok(Stored::Sealed { id: sealed_with, body }) if sealed_with == id => key
                .open(&registry::check_aad(id), &body)
                .is_ok_and(|p| p == registry::CHECK_PLAINTEXT),
            _ => false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::types::DeviceId;

    const COLUMN: SealedColumn = SealedColumn::binary("wa_sessions", "record", &[KeyColumn::text("address")]);
    const TEXT: SealedColumn = SealedColumn::text("link_credentials", "data", &[KeyColumn::text("link")]);

    #[test]
    fn values_are_bound_to_their_row_and_device() {
        let keys = KeyRing::random();
        let cell = COLUMN.cell(DeviceId(1), &[RowKey::Text("alice.0")]);
        let sealed = keys.seal(&cell, b"session");
        assert_eq!(keys.open(&cell, &sealed).unwrap(), b"session");
        for other in [
            COLUMN.cell(DeviceId(2), &[RowKey::Text("alice.0")]),
            COLUMN.cell(DeviceId(1), &[RowKey::Text("bob.0")]),
        ] {
            assert!(matches!(keys.open(&other, &sealed), Err(SealError::Unauthentic(_))));
        }
        const OTHER: SealedColumn = SealedColumn::binary("wa_sender_keys", "record", &[KeyColumn::text("address")]);
        let moved = OTHER.cell(DeviceId(1), &[RowKey::Text("alice.0")]);
        assert!(keys.open(&moved, &sealed).is_err());
    }

    #[test]
    fn rotation_reads_both_keys_and_writes_the_new_one() {
        let (old, new) = ([1u8; 32], [2u8; 32]);
        let before = KeyRing::new(&old, None);
        let during = KeyRing::new(&new, Some(&old));
        let cell = TEXT.cell(DeviceId(7), &[RowKey::Text("sim")]);
        let written_before = before.seal_text(&cell, "{\"token\":\"t\"}");
        assert_eq!(during.open_text(&cell, &written_before).unwrap(), "{\"token\":\"t\"}");
        let written_during = during.seal_text(&cell, "x");
        assert!(
            matches!(before.open_text(&cell, &written_during), Err(SealError::UnknownKey(id)) if id == during.current_id())
        );
        let after = KeyRing::new(&new, None);
        assert!(matches!(
            after.open_text(&cell, &written_before),
            Err(SealError::UnknownKey(_))
        ));
    }

    #[test]
    fn plain_text_is_read_only_while_allowed() {
        let keys = KeyRing::random();
        let cell = COLUMN.cell(DeviceId(1), &[RowKey::Text("a")]);
        assert!(matches!(keys.open(&cell, b"\x0aold"), Err(SealError::Plaintext)));
        keys.set_plaintext_readable(true);
        assert_eq!(keys.open(&cell, b"\x0aold").unwrap(), b"\x0aold");
    }

    #[test]
    fn check_values_tell_keys_apart() {
        let (a, b) = (KeyRing::random(), KeyRing::random());
        let check = a.check_value(a.current_id()).unwrap();
        assert!(a.verifies(a.current_id(), &check));
        assert!(!b.verifies(a.current_id(), &check));
        assert!(!format!("{a:?}").contains("cipher"));
    }
}
