//! What follows the handshake: a linked device logs in (`<success>`), an unknown one is refused
//! (`<failure reason=401>`), and a new companion registers and is given pairing refs.

use std::sync::Arc;

use tokio::sync::mpsc;
use wa_rs_binary::builder::NodeBuilder;
use wa_rs_proto::whatsapp as wa;

use super::Network;
use super::model::{Conn, ConnState, Model, Out, Pairing, Registration};
use super::nodes::{conflict, now_secs};
use super::pairing::{new_ref, pair_device};

/// A linked device logs in with its number and device id; its Noise key must be the one it
/// registered. A second connection of the same device replaces the first.
pub(crate) fn login(
    model: &mut Model,
    id: u64,
    phone: &str,
    payload: &wa::ClientPayload,
    client_static: [u8; 32],
    tx: mpsc::UnboundedSender<Out>,
) {
    let device = u16::try_from(payload.device.unwrap_or(0)).unwrap_or(u16::MAX);
    let known = model
        .devices
        .get(&(phone.to_owned(), device))
        .is_some_and(|d| d.registration.noise_key == client_static);
    if !known {
        tracing::info!(phone, device, "login refused: the device is not linked");
        let _ = tx.send(Out::Last(failure(401)));
        return;
    }
    if let Some(reason) = super::bans::banned(model, phone) {
        tracing::info!(phone, device, %reason, "login refused: the account is banned");
        let _ = tx.send(Out::Last(super::bans::failure(&reason)));
        return;
    }
    if let Some(old) = model.conn_of(phone, device)
        && let Some(conn) = model.conns.remove(&old)
    {
        model.replaced += 1;
        let _ = conn.tx.send(Out::Last(conflict("replaced")));
    }
    let lid = model.accounts.get(phone).map(|a| a.lid.clone()).unwrap_or_default();
    let success = NodeBuilder::new("success")
        .attr("t", now_secs().to_string())
        .attr("props", "1")
        .attr("abprops", "1")
        .attr("location", "sim")
        .attr("creation", now_secs().to_string())
        .attr("lid", format!("{lid}:{device}@lid"))
        .build();
    let _ = tx.send(Out::Node(success));
    tracing::info!(phone, device, "device logged in");
    model.conns.insert(
        id,
        Conn {
            tx,
            state: ConnState::LoggedIn {
                phone: phone.to_owned(),
                device,
            },
            pings: 0,
            active: false,
        },
    );
}

/// `<failure reason=…/>`: the server refuses the login (401: not linked or logged out).
pub(crate) fn failure(reason: u16) -> wa_rs_binary::node::Node {
    NodeBuilder::new("failure")
        .attr("reason", reason.to_string())
        .attr("location", "sim")
        .build()
}

/// A new companion registers its keys; it gets its first ref. Returns whether it may pair.
pub(crate) fn register(
    model: &mut Model,
    id: u64,
    payload: &wa::ClientPayload,
    client_static: [u8; 32],
    tx: mpsc::UnboundedSender<Out>,
) -> bool {
    let Some(registration) = payload
        .device_pairing_data
        .as_ref()
        .and_then(|data| registration(data, client_static))
    else {
        tracing::info!("registration refused: no usable pairing data");
        let _ = tx.send(Out::Last(failure(400)));
        return false;
    };
    tracing::debug!(registration_id = registration.registration_id, "companion registered");
    let first = new_ref();
    let iq_id = model.iq_id();
    let _ = tx.send(Out::Node(pair_device(iq_id, &first)));
    model.conns.insert(
        id,
        Conn {
            tx,
            state: ConnState::Pairing(Box::new(Pairing {
                registration,
                refs: vec![first],
                linking: None,
                code_request: None,
            })),
            pings: 0,
            active: false,
        },
    );
    true
}

/// The keys in a registration payload (`e_regid` 4 bytes, `e_skey_id` 3 bytes, big-endian).
fn registration(data: &wa::client_payload::DevicePairingRegistrationData, noise_key: [u8; 32]) -> Option<Registration> {
    let be = |bytes: &[u8]| bytes.iter().fold(0u32, |n, b| (n << 8) | u32::from(*b));
    let identity = data.e_ident.clone()?;
    if identity.len() != 32 {
        return None;
    }
    Some(Registration {
        noise_key,
        identity,
        registration_id: be(data.e_regid.as_deref()?),
        signed_prekey: (
            be(data.e_skey_id.as_deref()?),
            data.e_skey_val.clone()?,
            data.e_skey_sig.clone()?,
        ),
        prekeys: Vec::new(),
    })
}

/// Gives the pairing companion on `conn` a new ref every `qr_refresh` until it is linked, goes
/// away, or has had `qr_max_codes` of them.
pub(crate) async fn rotate_refs(net: Arc<Network>, conn: u64) {
    let mut interval = tokio::time::interval(net.config.qr_refresh);
    interval.tick().await;
    for _ in 1..net.config.qr_max_codes {
        interval.tick().await;
        let mut model = net.lock();
        let iq_id = model.iq_id();
        let Some(Conn {
            tx,
            state: ConnState::Pairing(pairing),
            ..
        }) = model.conns.get_mut(&conn)
        else {
            return;
        };
        if pairing.linking.is_some() {
            return;
        }
        let next = new_ref();
        let _ = tx.send(Out::Node(pair_device(iq_id, &next)));
        pairing.refs.push(next);
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::control::WaWebStats;
    use crate::waweb::model::LinkedDevice;

    /// Links device 1 of `phone` with the Noise key `key`, as a finished pairing would.
    pub(crate) fn link(model: &mut Model, phone: &str, key: [u8; 32]) {
        let registration = Registration {
            noise_key: key,
            identity: vec![0; 32],
            registration_id: 1,
            signed_prekey: (1, Vec::new(), Vec::new()),
            prekeys: Vec::new(),
        };
        let device = LinkedDevice {
            phone: phone.to_owned(),
            device: 1,
            registration,
        };
        model.devices.insert((phone.to_owned(), 1), device);
    }

    /// Two clients of one device at once cannot both be logged in: the second login replaces the
    /// first, which is told so, and the stats count it, so that a benchmark can prove that no
    /// device was held twice. Logins of other devices, and a login after a close, count nothing.
    #[test]
    fn a_second_live_login_of_a_device_replaces_the_first_and_is_counted() {
        let mut model = Model::default();
        let (key, other_key) = ([7; 32], [8; 32]);
        link(&mut model, "60123000001", key);
        link(&mut model, "60123000002", other_key);
        let payload = wa::ClientPayload {
            device: Some(1),
            ..Default::default()
        };
        let (first, mut first_rx) = mpsc::unbounded_channel();
        login(&mut model, 1, "60123000001", &payload, key, first);
        let (other, _other_rx) = mpsc::unbounded_channel();
        login(&mut model, 2, "60123000002", &payload, other_key, other);
        let stats = model.stats();
        assert_eq!(
            stats,
            WaWebStats {
                linked: 2,
                pairings: 0,
                logged_in: 2,
                pairing: 0,
                replaced: 0
            }
        );

        let (second, _second_rx) = mpsc::unbounded_channel();
        login(&mut model, 3, "60123000001", &payload, key, second);
        assert_eq!((model.stats().logged_in, model.stats().replaced), (2, 1));
        assert!(matches!(first_rx.try_recv(), Ok(Out::Node(n)) if n.tag == "success"));
        let Ok(Out::Last(last)) = first_rx.try_recv() else {
            panic!("the first connection was not ended");
        };
        assert_eq!(last, conflict("replaced"));

        // Closed first (as a killed worker's socket is), then logged in again: a resume.
        model.conns.remove(&3);
        let (third, _third_rx) = mpsc::unbounded_channel();
        login(&mut model, 4, "60123000001", &payload, key, third);
        assert_eq!((model.stats().logged_in, model.stats().replaced), (2, 1));
    }
}
