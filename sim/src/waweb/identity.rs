//! The server's Noise identity: a static key, and a certificate chain that vouches for it,
//! issued by a root of the front end's own (WhatsApp's root key cannot be had).

use prost::Message as _;
use wa_rs_libsignal::protocol::KeyPair;
use wa_rs_proto::whatsapp::CertChain;
use wa_rs_proto::whatsapp::cert_chain::{NoiseCertificate, noise_certificate::Details};

/// The server's Noise identity: its static key and the certificate chain that vouches for it.
pub(crate) struct ServerIdentity {
    /// The static key pair the handshake proves possession of.
    pub static_key: KeyPair,
    /// The public key of the root that signs the intermediate certificate (WhatsApp's own, in
    /// the real service).
    pub root_public: [u8; 32],
    /// The encoded [`CertChain`] (intermediate issued by serial 0, leaf certifying `static_key`).
    pub cert_chain: Vec<u8>,
}

impl ServerIdentity {
    /// A fresh identity with its own root, intermediate and leaf.
    pub fn generate() -> ServerIdentity {
        let mut rng = rand::rng();
        let root = KeyPair::generate(&mut rng);
        let intermediate = KeyPair::generate(&mut rng);
        let static_key = KeyPair::generate(&mut rng);
        let certificate = |serial: u32, issuer_serial: u32, key: &KeyPair, signer: &KeyPair| {
            let details = Details {
                serial: Some(serial),
                issuer_serial: Some(issuer_serial),
                key: Some(key.public_key.public_key_bytes().to_vec()),
                not_before: Some(0),
                not_after: Some(u64::from(u32::MAX)),
            }
            .encode_to_vec();
            let signature = signer
                .private_key
                .calculate_signature(&details, &mut rand::rng())
                .map(|s| s.to_vec())
                .ok();
            NoiseCertificate {
                details: Some(details),
                signature,
            }
        };
        // Clients expect the intermediate to be issued by serial 0 (WhatsApp's root).
        let chain = CertChain {
            intermediate: Some(certificate(1, 0, &intermediate, &root)),
            leaf: Some(certificate(2, 1, &static_key, &intermediate)),
        };
        let mut root_public = [0; 32];
        root_public.copy_from_slice(root.public_key.public_key_bytes());
        ServerIdentity {
            static_key,
            root_public,
            cert_chain: chain.encode_to_vec(),
        }
    }
}
