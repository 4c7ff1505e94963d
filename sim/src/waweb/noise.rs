//! The server side of WhatsApp Web's Noise handshakes, and the encrypted frames after it.
//!
//! A client without the server's static key (a new companion, or one that forgot it) runs **XX**:
//! it opens with the `WA` header and a ClientHello holding its ephemeral key; the server answers
//! with its ephemeral key, its static key and a certificate chain, both encrypted; the client
//! finishes with its own static key (its Noise key) and the ClientPayload that says who it is.
//!
//! A client that kept the server's static key from an earlier XX resumes with **IK**: its
//! ClientHello already carries its static key and ClientPayload, encrypted to the server's static
//! key, and the server's answer (its ephemeral key and the certificate chain, no static key)
//! completes the handshake in one round trip. When the ClientHello was sealed to a static key
//! that is not this server's (it changed since), the server answers **XXfallback**: an XX-shaped
//! ServerHello over the client's ephemeral key, and the client finishes as in XX.
//!
//! Every later frame is one binary node, AES-GCM encrypted with a per-direction counter.
//!
//! The certificate chain is self-made: the test builds of the client check its structure (serials
//! and that the leaf certifies the static key) but not its signatures against WhatsApp's root, so
//! a local chain passes. It is signed anyway, by a root key of this server, so that it is
//! well-formed.

use anyhow::{Context, bail};
use prost::Message as _;
use wa_rs_binary::consts::{NOISE_START_PATTERN, WA_CONN_HEADER};
use wa_rs_binary::node::Node;
use wa_rs_libsignal::protocol::KeyPair;
use wa_rs_noise::framing::{FrameDecoder, encode_frame};
use wa_rs_noise::{NoiseCipher, NoiseHandshake};
use wa_rs_proto::whatsapp::{self as wa, HandshakeMessage};

pub(crate) use super::identity::ServerIdentity;

/// Noise protocol name of the resumed handshake (32 bytes, used as the initial hash).
const NOISE_IK_PATTERN: &str = "Noise_IK_25519_AESGCM_SHA256\x00\x00\x00\x00";
/// Noise protocol name of the fallback after a refused IK (longer than 32 bytes: hashed).
const NOISE_XX_FALLBACK_PATTERN: &str = "Noise_XXfallback_25519_AESGCM_SHA256";

/// Handshakes completed since the front end started, by pattern.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct HandshakeCounts {
    /// Full handshakes (a client that does not know the server's static key).
    pub xx: u64,
    /// Resumed handshakes (a client that kept the server's static key).
    pub ik: u64,
    /// Resumes sealed to another static key, finished as XXfallback.
    pub xx_fallback: u64,
}

/// Which handshake a connection went through.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Pattern {
    /// Noise XX.
    Xx,
    /// Noise IK.
    Ik,
    /// Noise XXfallback after a refused IK hello.
    XxFallback,
}

impl HandshakeCounts {
    /// Counts one handshake of `pattern`.
    pub(crate) fn count(&mut self, pattern: Pattern) {
        match pattern {
            Pattern::Xx => self.xx += 1,
            Pattern::Ik => self.ik += 1,
            Pattern::XxFallback => self.xx_fallback += 1,
        }
    }
}

/// A connection after the handshake: who the client says it is, and its encrypted channel.
pub(crate) struct Established {
    /// The handshake it went through.
    pub pattern: Pattern,
    /// The client's static Noise public key (a device's lasting identity on the socket).
    pub client_static: [u8; 32],
    /// Who the client says it is: a login (username, device) or a registration.
    pub payload: wa::ClientPayload,
    /// Encrypts and decrypts frames.
    pub codec: FrameCodec,
}

/// Frames in and out after the handshake. The counters are the nonces: each direction counts
/// its own frames from zero.
pub(crate) struct FrameCodec {
    /// Key for what the client sends.
    read: NoiseCipher,
    /// Frames read so far.
    read_counter: u32,
    /// Key for what the server sends.
    write: NoiseCipher,
    /// Frames written so far.
    write_counter: u32,
    /// Bytes of incomplete frames.
    decoder: FrameDecoder,
}

impl FrameCodec {
    /// The codec of a channel whose client writes with `client_write` and reads with
    /// `client_read`.
    fn new(client_write: NoiseCipher, client_read: NoiseCipher) -> FrameCodec {
        FrameCodec {
            read: client_write,
            read_counter: 0,
            write: client_read,
            write_counter: 0,
            decoder: FrameDecoder::new(),
        }
    }

    /// Adds bytes from the socket.
    pub fn feed(&mut self, data: &[u8]) {
        self.decoder.feed(data);
    }

    /// The next complete node, if any. A frame that does not decrypt ends the connection.
    pub fn next_node(&mut self) -> anyhow::Result<Option<Node>> {
        let Some(frame) = self.decoder.decode_frame() else {
            return Ok(None);
        };
        let plain = self
            .read
            .decrypt_with_counter(self.read_counter, &frame)
            .context("decrypting a frame")?;
        self.read_counter = self.read_counter.wrapping_add(1);
        let unpacked = wa_rs_binary::util::unpack(&plain).context("unpacking a frame")?;
        let node = wa_rs_binary::marshal::unmarshal_ref(&unpacked).context("decoding a node")?;
        Ok(Some(node.to_owned()))
    }

    /// The frame carrying `node`, ready for the socket.
    pub fn seal(&mut self, node: &Node) -> anyhow::Result<Vec<u8>> {
        let plain = wa_rs_binary::marshal::marshal(node).context("encoding a node")?;
        let sealed = self
            .write
            .encrypt_with_counter(self.write_counter, &plain)
            .context("encrypting a frame")?;
        self.write_counter = self.write_counter.wrapping_add(1);
        encode_frame(&sealed, None)
    }
}

/// The handshake, driven by the bytes that arrive: [`ServerHandshake::feed`] until it returns
/// the bytes to answer with, then until it is [`Established`].
pub(crate) struct ServerHandshake<'a> {
    /// The server's keys.
    identity: &'a ServerIdentity,
    /// Where the exchange is.
    step: Step,
    /// Bytes before a complete frame.
    buffer: Vec<u8>,
}

enum Step {
    /// Waiting for the header and the ClientHello.
    Hello,
    /// Server hello sent; waiting for ClientFinish.
    Finish {
        noise: Box<NoiseHandshake>,
        ephemeral: KeyPair,
        pattern: Pattern,
    },
    /// Over (failed or handed on).
    Done,
}

/// What a handshake step produced.
pub(crate) enum Progress {
    /// Need more bytes.
    More,
    /// Send these bytes, then keep feeding.
    Reply(Vec<u8>),
    /// The handshake is complete.
    Established(Box<Established>),
    /// Send these bytes; with them the handshake is complete (a resumed IK handshake).
    ReplyEstablished(Vec<u8>, Box<Established>),
}

impl<'a> ServerHandshake<'a> {
    /// A handshake for a new connection.
    pub fn new(identity: &'a ServerIdentity) -> Self {
        ServerHandshake {
            identity,
            step: Step::Hello,
            buffer: Vec::new(),
        }
    }

    /// Consumes bytes from the socket.
    pub fn feed(&mut self, data: &[u8]) -> anyhow::Result<Progress> {
        self.buffer.extend_from_slice(data);
        match std::mem::replace(&mut self.step, Step::Done) {
            Step::Hello => {
                let Some(header_len) = header_len(&self.buffer)? else {
                    self.step = Step::Hello;
                    return Ok(Progress::More);
                };
                let Some(frame) = take_frame(&mut self.buffer, header_len) else {
                    self.step = Step::Hello;
                    return Ok(Progress::More);
                };
                let hello = HandshakeMessage::decode(frame.as_slice())
                    .context("decoding ClientHello")?
                    .client_hello
                    .context("no ClientHello")?;
                let client_ephemeral = hello
                    .ephemeral
                    .clone()
                    .context("ClientHello without an ephemeral key")?;
                let (name, pattern) = match (&hello.r#static, &hello.payload) {
                    (Some(sealed_static), Some(sealed_payload)) => {
                        match self.resume(&client_ephemeral, sealed_static, sealed_payload) {
                            Ok((reply, established)) => {
                                let mut established = established;
                                established.codec.decoder.feed(&std::mem::take(&mut self.buffer));
                                return Ok(Progress::ReplyEstablished(reply, Box::new(established)));
                            }
                            Err(err) => {
                                tracing::debug!(error = %format!("{err:#}"), "IK refused; falling back to XX");
                                (NOISE_XX_FALLBACK_PATTERN, Pattern::XxFallback)
                            }
                        }
                    }
                    _ => (NOISE_START_PATTERN, Pattern::Xx),
                };
                let (reply, noise, ephemeral) = self.server_hello(name, &client_ephemeral)?;
                self.step = Step::Finish {
                    noise: Box::new(noise),
                    ephemeral,
                    pattern,
                };
                Ok(Progress::Reply(reply))
            }
            Step::Finish {
                mut noise,
                ephemeral,
                pattern,
            } => {
                let Some(frame) = take_frame(&mut self.buffer, 0) else {
                    self.step = Step::Finish {
                        noise,
                        ephemeral,
                        pattern,
                    };
                    return Ok(Progress::More);
                };
                let finish = HandshakeMessage::decode(frame.as_slice())
                    .context("decoding ClientFinish")?
                    .client_finish
                    .context("no ClientFinish")?;
                let client_static = noise
                    .decrypt(finish.r#static.as_deref().unwrap_or_default())
                    .context("decrypting the client's static key")?;
                let client_static: [u8; 32] = client_static
                    .try_into()
                    .map_err(|_| anyhow::anyhow!("the client's static key is not 32 bytes"))?;
                noise.mix_shared_secret(ephemeral.private_key.serialize(), &client_static)?;
                let payload = noise
                    .decrypt(finish.payload.as_deref().unwrap_or_default())
                    .context("decrypting the client payload")?;
                let payload = wa::ClientPayload::decode(payload.as_slice()).context("decoding the client payload")?;
                // The client writes with the first key and reads with the second.
                let (client_write, client_read) = noise.finish()?;
                let mut codec = FrameCodec::new(client_write, client_read);
                codec.decoder.feed(&std::mem::take(&mut self.buffer));
                Ok(Progress::Established(Box::new(Established {
                    pattern,
                    client_static,
                    payload,
                    codec,
                })))
            }
            Step::Done => bail!("the handshake is over"),
        }
    }

    /// An IK ClientHello (`-> e, es, s, ss` and the payload, after the pre-message `<- s`): the
    /// client's static key and payload when they open with our static key, and our answer
    /// (`<- e, ee, se` and the certificate chain) with the channel it completes. An error means
    /// the hello was sealed to another static key: the caller falls back to XX.
    fn resume(
        &self,
        client_ephemeral: &[u8],
        sealed_static: &[u8],
        sealed_payload: &[u8],
    ) -> anyhow::Result<(Vec<u8>, Established)> {
        let ours = &self.identity.static_key;
        let mut noise = NoiseHandshake::new(NOISE_IK_PATTERN, &WA_CONN_HEADER)?;
        noise.authenticate(ours.public_key.public_key_bytes());
        noise.authenticate(client_ephemeral);
        noise.mix_shared_secret(ours.private_key.serialize(), client_ephemeral)?;
        let client_static: [u8; 32] = noise
            .decrypt(sealed_static)
            .context("decrypting the client's static key")?
            .try_into()
            .map_err(|_| anyhow::anyhow!("the client's static key is not 32 bytes"))?;
        noise.mix_shared_secret(ours.private_key.serialize(), &client_static)?;
        let payload = noise.decrypt(sealed_payload).context("decrypting the client payload")?;
        let payload = wa::ClientPayload::decode(payload.as_slice()).context("decoding the client payload")?;

        let ephemeral = KeyPair::generate(&mut rand::rng());
        noise.authenticate(ephemeral.public_key.public_key_bytes());
        noise.mix_shared_secret(ephemeral.private_key.serialize(), client_ephemeral)?;
        noise.mix_shared_secret(ephemeral.private_key.serialize(), &client_static)?;
        let cert_sealed = noise.encrypt(&self.identity.cert_chain)?;
        let hello = HandshakeMessage {
            server_hello: Some(wa::handshake_message::ServerHello {
                ephemeral: Some(ephemeral.public_key.public_key_bytes().to_vec()),
                r#static: None,
                payload: Some(cert_sealed),
                extended_static: None,
            }),
            ..Default::default()
        };
        let (client_write, client_read) = noise.finish()?;
        let established = Established {
            pattern: Pattern::Ik,
            client_static,
            payload,
            codec: FrameCodec::new(client_write, client_read),
        };
        Ok((encode_frame(&hello.encode_to_vec(), None)?, established))
    }

    /// Our ephemeral key, our static key and the certificate chain, in Noise order (`pattern`:
    /// XX, or XXfallback over the ephemeral key of a refused IK hello).
    fn server_hello(
        &self,
        pattern: &str,
        client_ephemeral: &[u8],
    ) -> anyhow::Result<(Vec<u8>, NoiseHandshake, KeyPair)> {
        let ephemeral = KeyPair::generate(&mut rand::rng());
        let mut noise = NoiseHandshake::new(pattern, &WA_CONN_HEADER)?;
        noise.authenticate(client_ephemeral);
        noise.authenticate(ephemeral.public_key.public_key_bytes());
        noise.mix_shared_secret(ephemeral.private_key.serialize(), client_ephemeral)?;
        let static_sealed = noise.encrypt(self.identity.static_key.public_key.public_key_bytes())?;
        noise.mix_shared_secret(self.identity.static_key.private_key.serialize(), client_ephemeral)?;
        let cert_sealed = noise.encrypt(&self.identity.cert_chain)?;
        let hello = HandshakeMessage {
            server_hello: Some(wa::handshake_message::ServerHello {
                ephemeral: Some(ephemeral.public_key.public_key_bytes().to_vec()),
                r#static: Some(static_sealed),
                payload: Some(cert_sealed),
                extended_static: None,
            }),
            ..Default::default()
        };
        Ok((encode_frame(&hello.encode_to_vec(), None)?, noise, ephemeral))
    }
}

/// Length of the connection header (an optional `ED` edge-routing pre-intro, then `WA` and the
/// protocol version), or `None` until enough bytes are there.
fn header_len(buffer: &[u8]) -> anyhow::Result<Option<usize>> {
    let mut offset = 0;
    if buffer.starts_with(b"ED") {
        if buffer.len() < 7 {
            return Ok(None);
        }
        let routing = (usize::from(buffer[4]) << 16) | (usize::from(buffer[5]) << 8) | usize::from(buffer[6]);
        offset = 7 + routing;
    }
    if buffer.len() < offset + WA_CONN_HEADER.len() {
        return Ok(None);
    }
    if buffer[offset..offset + 2] != WA_CONN_HEADER[..2] {
        bail!("the connection does not start with the WhatsApp header");
    }
    Ok(Some(offset + WA_CONN_HEADER.len()))
}

/// Removes `skip` bytes and one length-prefixed frame from `buffer`, once it is complete.
fn take_frame(buffer: &mut Vec<u8>, skip: usize) -> Option<Vec<u8>> {
    let rest = buffer.get(skip..)?;
    if rest.len() < 3 {
        return None;
    }
    let len = (usize::from(rest[0]) << 16) | (usize::from(rest[1]) << 8) | usize::from(rest[2]);
    if rest.len() < 3 + len {
        return None;
    }
    let frame = rest[3..3 + len].to_vec();
    buffer.drain(..skip + 3 + len);
    Some(frame)
}
