//! Which columns hold sealed values, and the identity each value is bound to.

use crate::types::DeviceId;

/// How a sealed column stores its envelope.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Form {
    /// BLOB / BYTEA: the binary envelope.
    Binary,
    /// TEXT: the text envelope (`wfk1:…`).
    Text,
}

/// The SQL type of a row-key column.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum KeyKind {
    /// TEXT.
    Text,
    /// BIGINT.
    Int,
    /// BLOB / BYTEA.
    Bytes,
}

/// A column that, with `device_id`, identifies a row of a sealed table.
#[derive(Clone, Copy, Debug)]
pub struct KeyColumn {
    /// Its name.
    pub name: &'static str,
    /// Its type.
    pub kind: KeyKind,
}

impl KeyColumn {
    /// A TEXT key column.
    pub const fn text(name: &'static str) -> KeyColumn {
        KeyColumn {
            name,
            kind: KeyKind::Text,
        }
    }

    /// A BIGINT key column.
    pub const fn int(name: &'static str) -> KeyColumn {
        KeyColumn {
            name,
            kind: KeyKind::Int,
        }
    }

    /// A BLOB / BYTEA key column.
    pub const fn bytes(name: &'static str) -> KeyColumn {
        KeyColumn {
            name,
            kind: KeyKind::Bytes,
        }
    }
}

/// A column whose values are sealed: every table has a `device_id`, and `key` lists the other
/// columns of its primary key (plus any that must stay with the value), in order.
#[derive(Clone, Copy, Debug)]
pub struct SealedColumn {
    /// The table.
    pub table: &'static str,
    /// The column holding the sealed value.
    pub column: &'static str,
    /// Row-key columns besides `device_id`.
    pub key: &'static [KeyColumn],
    /// Binary or text envelope.
    pub form: Form,
}

impl SealedColumn {
    /// A BLOB / BYTEA column.
    pub const fn binary(table: &'static str, column: &'static str, key: &'static [KeyColumn]) -> SealedColumn {
        SealedColumn {
            table,
            column,
            key,
            form: Form::Binary,
        }
    }

    /// A TEXT column.
    pub const fn text(table: &'static str, column: &'static str, key: &'static [KeyColumn]) -> SealedColumn {
        SealedColumn {
            table,
            column,
            key,
            form: Form::Text,
        }
    }

    /// The value of this column in the row of `device` with row key `key` (values in the order
    /// of [`SealedColumn::key`]).
    pub fn cell<'a>(&'a self, device: DeviceId, key: &'a [RowKey<'a>]) -> Cell<'a> {
        debug_assert_eq!(key.len(), self.key.len(), "row key of {}.{}", self.table, self.column);
        Cell {
            column: self,
            device,
            key,
        }
    }
}

/// One value of a row key.
#[derive(Clone, Copy, Debug)]
pub enum RowKey<'a> {
    /// Of a TEXT column.
    Text(&'a str),
    /// Of a BIGINT column.
    Int(i64),
    /// Of a BLOB / BYTEA column.
    Bytes(&'a [u8]),
}

impl RowKey<'_> {
    fn kind(&self) -> KeyKind {
        match self {
            RowKey::Text(_) => KeyKind::Text,
            RowKey::Int(_) => KeyKind::Int,
            RowKey::Bytes(_) => KeyKind::Bytes,
        }
    }
}

/// One sealed value's place: the associated data its ciphertext is bound to, so that it opens
/// only where it was written.
#[derive(Clone, Copy, Debug)]
pub struct Cell<'a> {
    column: &'a SealedColumn,
    device: DeviceId,
    key: &'a [RowKey<'a>],
}

impl Cell<'_> {
    /// Table, column, device and row key, each length-prefixed so no two places share an encoding.
    pub(crate) fn aad(&self) -> Vec<u8> {
        let mut aad = Vec::with_capacity(64);
        aad.extend_from_slice(b"wafleet sealed v1\0");
        for name in [self.column.table, self.column.column] {
            aad.push(u8::try_from(name.len()).expect("short identifiers"));
            aad.extend_from_slice(name.as_bytes());
        }
        aad.extend_from_slice(&self.device.0.to_be_bytes());
        for (value, column) in self.key.iter().zip(self.column.key) {
            debug_assert_eq!(value.kind(), column.kind, "{}.{}", self.column.table, column.name);
            let (tag, bytes): (u8, std::borrow::Cow<'_, [u8]>) = match value {
                RowKey::Text(s) => (b'T', s.as_bytes().into()),
                RowKey::Int(i) => (b'I', i.to_be_bytes().to_vec().into()),
                RowKey::Bytes(b) => (b'B', (*b).into()),
            };
            aad.push(tag);
            aad.extend_from_slice(&u32::try_from(bytes.len()).unwrap_or(u32::MAX).to_be_bytes());
            aad.extend_from_slice(&bytes);
        }
        aad
    }
}
