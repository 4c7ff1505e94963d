//! Baileys beside whatsapp-rust, for `sessions --link wa`: one Node process holds M Baileys
//! sessions (the JavaScript client behind WAHA and Evolution API, pinned; see
//! [`wafleet_sim::baileys`]), each linked by QR code through the same WhatsApp Web front end as
//! the worker's, its credentials in files (`useMultiFileAuthState`, as wafleet's sit in its
//! database rather than in the worker). Measured like the worker: the process's RSS before the
//! sessions and after they settle (and again after a forced full collection), then its CPU
//! while they idle.

use std::collections::HashSet;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use wafleet_sim::baileys::{Baileys, Driver, Event};

use crate::cluster::Cluster;
use crate::pairing::CONCURRENCY;
use crate::proc;
use crate::report::{Row, thousands};

/// What holding the Baileys sessions cost.
pub struct Figures {
    /// Sessions held.
    pub sessions: usize,
    /// The Node process's RSS in KiB: with no session, with every session settled, and after a
    /// forced full collection.
    pub rss: (u64, u64, u64),
    /// V8's heap in use after a full collection, in bytes: with no session, and with every
    /// session settled.
    pub heap_used: (u64, u64),
    /// The Node process's CPU while the sessions idled, in cores.
    pub idle: f64,
}

/// The number of the `i`-th Baileys session's account: apart from the worker's devices'.
fn phone(i: usize) -> String {
    format!("6019{:07}", 1_000_000 + i)
}

/// Links `count` Baileys sessions in one Node process through the cluster's front end, lets them
/// settle, and measures them; the sessions end with the process.
pub async fn measure(cluster: &Cluster, count: usize, settle: Duration, idle_secs: u64) -> anyhow::Result<Figures> {
    let baileys = Baileys::install().await?;
    let sim = cluster.sim();
    let root = sim
        .waweb_root_key()
        .await
        .context("asking the front end for its root key")?;
    let mut driver = Driver::spawn(&baileys, &cluster.waweb_url(), &root)?;
    let pid = driver.pid().to_string();
    // The first answer comes once Baileys is loaded: the baseline is Node with Baileys, no session.
    let heap_before = collect(&mut driver).await?;
    tokio::time::sleep(Duration::from_secs(1)).await;
    let before = proc::rss_kib(&pid)?;
    let auth = baileys.auth_dir();
    let linked = link_all(&mut driver, &sim, &auth, count).await;
    let result = async {
        let linked = linked?;
        tokio::time::sleep(settle).await;
        quiet(&pid, Duration::from_secs(60 + count as u64 / 2)).await?;
        let settled = proc::rss_kib(&pid)?;
        let heap_used = collect(&mut driver).await?;
        tokio::time::sleep(Duration::from_secs(2)).await;
        let collected = proc::rss_kib(&pid)?;
        let cpu_before = proc::cpu_secs(&pid)?;
        tokio::time::sleep(Duration::from_secs(idle_secs)).await;
        let idle = (proc::cpu_secs(&pid)? - cpu_before) / idle_secs as f64;
        check_held(&mut driver, &sim, count).await?;
        eprintln!(
            "[bench] Baileys: node {before} → {settled} KiB ({collected} KiB after a full collection, heap \
             {} MiB) for {count} sessions, linked in {linked:.1?}, idle CPU {:.1}%",
            heap_used >> 20,
            idle * 100.0
        );
        anyhow::Ok(Figures {
            sessions: count,
            rss: (before, settled, collected),
            heap_used: (heap_before, heap_used),
            idle,
        })
    }
    .await;
    drop(driver);
    let _ = std::fs::remove_dir_all(&auth);
    result
}

/// Opens the sessions, at most [`CONCURRENCY`] waiting to be linked at once (as many owners
/// scanning at the same moment), and has the phone of each session's number scan the codes it
/// shows until every session is logged in; returns how long that took.
async fn link_all(
    driver: &mut Driver,
    sim: &wafleet_sim::ControlClient,
    auth: &std::path::Path,
    count: usize,
) -> anyhow::Result<Duration> {
    let started = Instant::now();
    // A bound for a stuck run, not a target: on a busy machine a link takes seconds.
    let limit = Duration::from_secs(300 + 5 * count as u64);
    let (mut opened, mut linked) = (0, HashSet::new());
    let mut reported = Instant::now();
    while linked.len() < count {
        while opened < count && opened - linked.len() < CONCURRENCY {
            driver.open(opened, &auth.join(opened.to_string()))?;
            opened += 1;
        }
        let left = limit.checked_sub(started.elapsed()).unwrap_or_default();
        let (session, event) = driver
            .next(left)
            .await
            .with_context(|| format!("{} of {count} Baileys sessions linked", linked.len()))?;
        match event {
            // A code replaced meanwhile fails to scan; Baileys shows the next one.
            Event::Qr(code) => {
                let _ = sim.waweb_scan(&code, &phone(session)).await;
            }
            Event::Open(_) => {
                linked.insert(session);
            }
            // Linked: the server restarts the stream and Baileys logs in on a new socket.
            Event::Close(Some(515)) => {}
            Event::Close(code) => bail!("Baileys session {session} closed while linking ({code:?})"),
            Event::Error(error) => bail!("Baileys session {session} failed while linking: {error}"),
            _ => {}
        }
        if reported.elapsed() > Duration::from_secs(10) {
            eprintln!("[bench] {} of {count} Baileys sessions linked", linked.len());
            reported = Instant::now();
        }
    }
    Ok(started.elapsed())
}

/// Forces a full garbage collection in Node; returns the JavaScript heap in use after it.
async fn collect(driver: &mut Driver) -> anyhow::Result<u64> {
    driver.gc()?;
    loop {
        match driver.next(Duration::from_secs(60)).await? {
            (
                _,
                Event::Gc {
                    forced: true,
                    heap_used,
                },
            ) => return Ok(heap_used),
            (_, Event::Gc { forced: false, .. }) => bail!("node ran without --expose-gc"),
            (session, Event::Close(code)) => bail!("Baileys session {session} closed ({code:?})"),
            _ => {}
        }
    }
}

/// Waits until the process uses under a tenth of a core over 2 s: each Baileys session starts
/// by generating and uploading its prekeys (812 at the first login), which takes a while for
/// many sessions in one process.
async fn quiet(pid: &str, limit: Duration) -> anyhow::Result<()> {
    let started = Instant::now();
    loop {
        let cpu = proc::cpu_secs(pid)?;
        tokio::time::sleep(Duration::from_secs(2)).await;
        if proc::cpu_secs(pid)? - cpu < 0.2 {
            return Ok(());
        }
        if started.elapsed() > limit {
            bail!("the Baileys process still busy after {limit:?}");
        }
    }
}

/// Fails when a session closed since it was linked, or the front end does not hold every one
/// logged in.
async fn check_held(driver: &mut Driver, sim: &wafleet_sim::ControlClient, count: usize) -> anyhow::Result<()> {
    while let Ok((session, event)) = driver.next(Duration::ZERO).await {
        if let Event::Close(code) = event {
            bail!("Baileys session {session} closed while idle ({code:?})");
        }
    }
    let phones: HashSet<String> = (0..count).map(phone).collect();
    let logged_in = sim.waweb_logged_in().await?;
    let held = logged_in
        .iter()
        .filter(|jid| phones.contains(jid.split([':', '@']).next().unwrap_or_default()))
        .count();
    if held != count {
        bail!("{held} of {count} Baileys sessions logged in at the front end");
    }
    Ok(())
}

/// The rows: Baileys' memory and idle CPU per session beside the worker's per whatsapp-rust
/// session (`worker_kib` each, `worker_idle` cores for `worker_sessions`) in the same run.
pub fn rows(f: &Figures, worker_kib: f64, worker_idle: f64, worker_sessions: usize, command: &str) -> Vec<Row> {
    let m = f.sessions as f64;
    let (before, settled, collected) = f.rss;
    let per_session = |after: u64| after.saturating_sub(before) as f64 / m;
    let count = thousands(f.sessions as u64);
    let idle_per_1000 = f.idle * 1000.0 / m;
    let worker_per_1000 = worker_idle * 1000.0 / worker_sessions as f64;
    vec![
        Row::new(
            format!("sessions (Baileys 7, Node 20): RSS per idle session ({count} in one Node process)"),
            format!(
                "{:.1} KiB after a forced full GC, {:.1} KiB of it JS heap ({:.1} KiB before the GC; {:.0} MiB in all)",
                per_session(collected),
                f.heap_used.1.saturating_sub(f.heap_used.0) as f64 / 1024.0 / m,
                per_session(settled),
                settled as f64 / 1024.0,
            ),
            format!("{worker_kib:.1} KiB per whatsapp-rust session in the worker"),
        )
        .ratio(per_session(collected) / worker_kib)
        .command(command),
        Row::new(
            format!("sessions (Baileys 7, Node 20): CPU while {count} sessions idle"),
            format!(
                "{:.1}% of one core ({:.1}% per 1,000 sessions)",
                f.idle * 100.0,
                idle_per_1000 * 100.0
            ),
            format!(
                "{:.1}% per 1,000 whatsapp-rust sessions in the worker",
                worker_per_1000 * 100.0
            ),
        )
        .ratio(idle_per_1000 / worker_per_1000)
        .command(command),
    ]
}
