//! Linking devices as their owners do, for `--link wa`: every device asks to be linked by QR
//! code, the worker holding it shows the codes its real whatsapp-rust client gets (in `device_sessions`,
//! where the API reads them), and the phone of the device's number scans the current one at the
//! simulator's WhatsApp Web front end (`POST /control/waweb/scan`).

use std::collections::{HashMap, HashSet};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use wafleet_core::Db;
use wafleet_core::types::DeviceId;
use wafleet_sim::ControlClient;

use crate::cluster::Cluster;
use crate::fleet::{self, Device, postgres};

/// Pairings under way at once (scanned, not yet recorded as linked by the worker): as many
/// owners scanning at the same moment, and a bound on the handshakes the worker and the front
/// end run together.
pub const CONCURRENCY: usize = 25;

/// Every device asks to be linked by QR code at once: what `request_session` with `pair_qr`
/// writes, for all in one transaction.
pub async fn want_pairing(db: &Db) -> anyhow::Result<()> {
    fleet::want_all(db, "pairing", "pair_qr").await
}

/// One device's pairing as the database shows it.
#[derive(sqlx::FromRow)]
struct Pairing {
    device_id: DeviceId,
    desired: String,
    qr_code: Option<String>,
    last_error: Option<String>,
}

/// Scans each device's QR code as its worker publishes it, with at most [`CONCURRENCY`]
/// pairings under way, until the worker has recorded every device as linked (its session now
/// desired `connected`); returns how long that took. A code replaced before it was scanned, or a
/// device handed to another worker mid-pairing, shows a new code, which is scanned in turn.
/// Fails when a pairing fails or `limit` passes.
pub async fn pair_all(db: &Db, sim: &ControlClient, devices: &[Device], limit: Duration) -> anyhow::Result<Duration> {
    let started = Instant::now();
    let phones: HashMap<DeviceId, &str> = devices.iter().map(|d| (d.id, d.phone.as_str())).collect();
    // The last code scanned for each device, and the devices whose last scan linked them.
    let mut scanned: HashMap<DeviceId, String> = HashMap::new();
    let mut under_way: HashSet<DeviceId> = HashSet::new();
    let mut reported = Instant::now();
    loop {
        let rows: Vec<Pairing> = sqlx::query_as("SELECT device_id, desired, qr_code, last_error FROM device_sessions")
            .fetch_all(postgres(db))
            .await?;
        let mut linked = 0;
        for row in &rows {
            match row.desired.as_str() {
                "connected" => {
                    linked += 1;
                    under_way.remove(&row.device_id);
                }
                "pair_qr" => {}
                other => bail!(
                    "device {} is `{other}` instead of linked: {} (see the worker's log)",
                    row.device_id,
                    row.last_error.as_deref().unwrap_or("no error recorded")
                ),
            }
        }
        if linked == devices.len() {
            return Ok(started.elapsed());
        }
        if started.elapsed() > limit {
            bail!("after {limit:?} only {linked} of {} devices are linked", devices.len());
        }
        for row in rows.iter().filter(|r| r.desired == "pair_qr") {
            let Some(code) = &row.qr_code else { continue };
            // A device already under way that shows a new code is pairing again (it moved to
            // another worker): it goes on regardless of the bound.
            let fresh = scanned.get(&row.device_id) != Some(code);
            if !fresh || (!under_way.contains(&row.device_id) && under_way.len() >= CONCURRENCY) {
                continue;
            }
            let phone = phones
                .get(&row.device_id)
                .with_context(|| format!("device {} is not one of the run's", row.device_id))?;
            scanned.insert(row.device_id, code.clone());
            // A code replaced meanwhile fails to scan; the worker shows the next one.
            match sim.waweb_scan(code, phone).await {
                Ok(_) => under_way.insert(row.device_id),
                Err(_) => under_way.remove(&row.device_id),
            };
        }
        if reported.elapsed() > Duration::from_secs(10) {
            eprintln!(
                "[bench] {linked} of {} devices linked, {} pairings under way",
                devices.len(),
                under_way.len()
            );
            reported = Instant::now();
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Waits until every linked device is held, online and logged in once; returns how long that
/// took. The logins replaced until then are left out of later checks: whatsapp-rust reconnects after the
/// restart that ends a pairing and now and then opens two sockets for it milliseconds apart (one
/// client in one worker, the second login replacing the first), which is not a device held twice.
pub async fn settle(cluster: &Cluster, devices: usize, limit: Duration) -> anyhow::Result<Duration> {
    let started = Instant::now();
    loop {
        let s = fleet::standing(cluster, "").await?;
        if s.held == devices && s.online == devices && s.connected == devices {
            if s.replaced > 0 {
                eprintln!(
                    "[bench] {} logins replaced while devices linked (whatsapp-rust reconnecting after pairing)",
                    s.replaced
                );
            }
            cluster.forgive_replaced(s.replaced);
            return Ok(started.elapsed());
        }
        if started.elapsed() > limit {
            bail!("after {limit:?} only {s:?} of {devices} devices");
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}
