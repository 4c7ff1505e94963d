//! One sealed value: a versioned envelope of key id, nonce and XChaCha20-Poly1305 ciphertext.
//!
//! Binary form (BLOB/BYTEA columns):
//!
//! ```text
//! F0 'W' 'F' 'K' | version (1) | key id (4, big-endian) | nonce (24) | ciphertext + tag (16)
//! ```
//!
//! Text form (TEXT columns): `wfk1:<key id as 8 hex digits>:<base64 of nonce and ciphertext>`.
//!
//! The first 9 bytes (or 14 characters) name the key, so the re-encryption sweep finds the rows
//! not yet under the current key with a prefix comparison in SQL, without decrypting anything.
//! The associated data is the row's identity ([`super::Cell`]) followed by the header, so a value
//! moved to another row, column or device, or relabelled with another key id, fails to open.

use std::fmt;

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use chacha20poly1305::aead::{Aead, KeyInit, Payload};
use chacha20poly1305::{XChaCha20Poly1305, XNonce};
use hkdf::Hkdf;
use rand::Rng;
use sha2::Sha256;
use zeroize::Zeroizing;

use super::SealError;

/// Leading bytes of every sealed binary value, so a value written in plain text before
/// encryption is told apart from a sealed one: 0xF0 starts no UTF-8 text, no postcard device
/// (format byte 1) and no protobuf record the WhatsApp client stores (their first field tags are single bytes);
/// a random key starts with these five bytes (with the version) once in 2^40.
pub(crate) const MAGIC: [u8; 4] = [0xF0, b'W', b'F', b'K'];
/// The envelope format this release writes (and the only one it reads).
pub(crate) const VERSION: u8 = 1;
/// Magic, version and key id.
pub(crate) const HEADER_LEN: usize = 9;
/// Leading characters of a sealed text value, before the key id.
pub(crate) const TEXT_MAGIC: &str = "wfk1:";
const NONCE_LEN: usize = 24;
const TAG_LEN: usize = 16;

/// The public name of a key: 32 bits derived from it with HKDF (so it says nothing about the
/// key), shown as 8 hex digits in logs, errors and `wafleet keys status`.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct KeyId(pub u32);

impl fmt::Display for KeyId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:08x}", self.0)
    }
}

impl fmt::Debug for KeyId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "KeyId({self})")
    }
}

/// One key: its id and the cipher keyed with the encryption key derived from the secret.
pub(crate) struct SealKey {
    pub(crate) id: KeyId,
    cipher: XChaCha20Poly1305,
}

impl SealKey {
    /// Derives the key id and the encryption key from a 32-byte secret. The secret is never used
    /// directly: HKDF-SHA256 separates the two uses (and any later ones).
    pub(crate) fn from_secret(secret: &[u8; 32]) -> SealKey {
        let hkdf = Hkdf::<Sha256>::new(Some(b"wafleet sealed keys"), secret);
        let mut key = Zeroizing::new([0u8; 32]);
        hkdf.expand(b"v1 encryption key", key.as_mut())
            .expect("32 bytes is a valid HKDF-SHA256 length");
        let mut id = [0u8; 4];
        hkdf.expand(b"v1 key id", &mut id)
            .expect("4 bytes is a valid HKDF-SHA256 length");
        SealKey {
            id: KeyId(u32::from_be_bytes(id)),
            cipher: XChaCha20Poly1305::new(key.as_ref().into()),
        }
    }

    /// The binary header of values this key seals.
    pub(crate) fn header(&self) -> [u8; HEADER_LEN] {
        header(self.id)
    }

    /// The text header of values this key seals.
    pub(crate) fn text_header(&self) -> String {
        format!("{TEXT_MAGIC}{}:", self.id)
    }

    /// Nonce and ciphertext of `plaintext`, authenticated with `aad` and this key's header.
    fn encrypt(&self, aad: &[u8], plaintext: &[u8]) -> Vec<u8> {
        // Random 192-bit nonces: no counter to keep across processes, and no realistic chance of
        // a repeat however many values one key seals.
        let mut nonce = [0u8; NONCE_LEN];
        rand::rng().fill(&mut nonce);
        let aad = [aad, &self.header()].concat();
        let ciphertext = self
            .cipher
            .encrypt(
                XNonce::from_slice(&nonce),
                Payload {
                    msg: plaintext,
                    aad: &aad,
                },
            )
            .expect("XChaCha20-Poly1305 encrypts any length wafleet stores");
        let mut body = Vec::with_capacity(NONCE_LEN + ciphertext.len());
        body.extend_from_slice(&nonce);
        body.extend_from_slice(&ciphertext);
        body
    }

    /// The plaintext of nonce and ciphertext `body`, if it authenticates with `aad`.
    fn decrypt(&self, aad: &[u8], body: &[u8]) -> Result<Vec<u8>, SealError> {
        if body.len() < NONCE_LEN + TAG_LEN {
            return Err(SealError::Malformed);
        }
        let (nonce, ciphertext) = body.split_at(NONCE_LEN);
        let aad = [aad, &self.header()].concat();
        self.cipher
            .decrypt(
                XNonce::from_slice(nonce),
                Payload {
                    msg: ciphertext,
                    aad: &aad,
                },
            )
            .map_err(|_| SealError::Unauthentic(self.id))
    }

    /// `plaintext` sealed in binary form.
    pub(crate) fn seal(&self, aad: &[u8], plaintext: &[u8]) -> Vec<u8> {
        let body = self.encrypt(aad, plaintext);
        [&self.header()[..], &body].concat()
    }

    /// `plaintext` sealed in text form.
    pub(crate) fn seal_text(&self, aad: &[u8], plaintext: &[u8]) -> String {
        let body = self.encrypt(aad, plaintext);
        format!("{}{}", self.text_header(), STANDARD.encode(body))
    }

    /// Opens a value [`parse`] or [`parse_text`] found sealed with this key.
    pub(crate) fn open(&self, aad: &[u8], body: &[u8]) -> Result<Vec<u8>, SealError> {
        self.decrypt(aad, body)
    }
}

fn header(id: KeyId) -> [u8; HEADER_LEN] {
    let mut header = [0u8; HEADER_LEN];
    header[..4].copy_from_slice(&MAGIC);
    header[4] = VERSION;
    header[5..].copy_from_slice(&id.0.to_be_bytes());
    header
}

/// What a stored value is.
pub(crate) enum Stored<'a> {
    /// Sealed with key `id`; `body` is nonce and ciphertext.
    Sealed {
        id: KeyId,
        body: std::borrow::Cow<'a, [u8]>,
    },
    /// Written in plain text (before encryption was introduced).
    Plain(&'a [u8]),
}

/// Reads the envelope of a binary value.
pub(crate) fn parse(stored: &[u8]) -> Result<Stored<'_>, SealError> {
    if !stored.starts_with(&MAGIC) {
        return Ok(Stored::Plain(stored));
    }
    if stored.len() < HEADER_LEN {
        return Err(SealError::Malformed);
    }
    if stored[4] != VERSION {
        return Err(SealError::UnsupportedVersion(stored[4]));
    }
    let id = KeyId(u32::from_be_bytes(stored[5..HEADER_LEN].try_into().expect("4 bytes")));
    Ok(Stored::Sealed {
        id,
        body: stored[HEADER_LEN..].into(),
    })
}

/// Reads the envelope of a text value.
pub(crate) fn parse_text(stored: &str) -> Result<Stored<'_>, SealError> {
    let Some(rest) = stored.strip_prefix(TEXT_MAGIC) else {
        // `wfk2:` and later: a newer release's envelope, not plain text.
        if let Some(version) = stored
            .strip_prefix("wfk")
            .and_then(|r| r.split_once(':'))
            .and_then(|(v, _)| v.parse::<u8>().ok())
        {
            return Err(SealError::UnsupportedVersion(version));
        }
        return Ok(Stored::Plain(stored.as_bytes()));
    };
    let (id, body) = rest.split_once(':').ok_or(SealError::Malformed)?;
    let id = u32::from_str_radix(id, 16).map_err(|_| SealError::Malformed)?;
    let body = STANDARD.decode(body).map_err(|_| SealError::Malformed)?;
    Ok(Stored::Sealed {
        id: KeyId(id),
        body: body.into(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seals_and_opens_in_both_forms() {
        let key = SealKey::from_secret(&[7; 32]);
        let sealed = key.seal(b"row", b"secret bytes");
        assert_eq!(sealed.len(), HEADER_LEN + NONCE_LEN + 12 + TAG_LEN);
        let Stored::Sealed { id, body } = parse(&sealed).unwrap() else {
            panic!("sealed")
        };
        assert_eq!(id, key.id);
        assert_eq!(key.open(b"row", &body).unwrap(), b"secret bytes");
        assert!(matches!(key.open(b"other row", &body), Err(SealError::Unauthentic(_))));

        let text = key.seal_text(b"row", b"{\"token\":1}");
        assert!(text.starts_with(&key.text_header()));
        assert_eq!(key.text_header().len(), 14, "wfk1: and 8 hex digits and :");
        let Stored::Sealed { body, .. } = parse_text(&text).unwrap() else {
            panic!("sealed")
        };
        assert_eq!(key.open(b"row", &body).unwrap(), b"{\"token\":1}");
    }

    #[test]
    fn the_header_is_authenticated() {
        let key = SealKey::from_secret(&[7; 32]);
        let mut sealed = key.seal(b"row", b"secret");
        sealed[4] = 2;
        assert!(matches!(parse(&sealed), Err(SealError::UnsupportedVersion(2))));
        let mut sealed = key.seal(b"row", b"secret");
        sealed[HEADER_LEN] ^= 1;
        let Stored::Sealed { body, .. } = parse(&sealed).unwrap() else {
            panic!("sealed")
        };
        assert!(key.open(b"row", &body).is_err());
    }

    #[test]
    fn plain_values_are_recognised() {
        assert!(matches!(parse(b"\x0a\x20protobuf"), Ok(Stored::Plain(_))));
        assert!(matches!(parse(b""), Ok(Stored::Plain(_))));
        assert!(matches!(parse_text("{\"token\":\"x\"}"), Ok(Stored::Plain(_))));
        assert!(matches!(
            parse_text("wfk9:00000000:AAAA"),
            Err(SealError::UnsupportedVersion(9))
        ));
        assert!(matches!(parse(&MAGIC), Err(SealError::Malformed)));
    }

    #[test]
    fn ids_differ_between_keys_and_are_stable() {
        let a = SealKey::from_secret(&[1; 32]);
        let b = SealKey::from_secret(&[2; 32]);
        assert_ne!(a.id, b.id);
        assert_eq!(a.id, SealKey::from_secret(&[1; 32]).id);
    }
}
