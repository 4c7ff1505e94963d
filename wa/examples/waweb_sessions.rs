//! Memory and CPU of connected wa-rs sessions: pairs N devices by QR through `WaLink` (state on a
//! fresh SQLite database) against the simulator's WhatsApp Web front end, then holds them
//! connected and idle (keepalives only) and prints RSS and CPU per session.
//!
//! `cargo run --release -p wafleet-wa --example waweb_sessions -- 100 60`
//! (sessions, idle seconds) runs the front end in this process: the figures include its share
//! of each connection. To measure the clients alone, run the front end as its own process and
//! name it:
//!
//! ```sh
//! wafleet sim --sim-port 3100 --waweb-port 3101 --qr-refresh-secs 120 --qr-max-codes 3 &
//! WAWEB_CONTROL_URL=http://127.0.0.1:3100/control WA_SERVER_URL=ws://127.0.0.1:3101/ws/chat \
//!   cargo run --release -p wafleet-wa --example waweb_sessions -- 1000 60
//! ```
//!
//! and read the front end's RSS and CPU from `/proc/PID` of that process.

use std::time::{Duration, Instant};

use anyhow::Context;
use wafleet_core::Settings;
use wafleet_core::db::NewUserRole;
use wafleet_core::link::{Link, LinkEvent, OpenMode, Session};
use wafleet_core::types::{DeviceId, Email};
use wafleet_sim::ControlClient;
use wafleet_sim::waweb::{self, WaWebConfig, WaWebHandle};
use wafleet_wa::{WaLink, WaLinkConfig};

/// Pairings in flight at once.
const BATCH: usize = 25;

/// Resident memory of this process in KiB (`VmRSS` of `/proc/self/status`).
fn rss_kib() -> anyhow::Result<u64> {
    let status = std::fs::read_to_string("/proc/self/status").context("reading /proc/self/status")?;
    let line = status.lines().find(|l| l.starts_with("VmRSS:")).context("no VmRSS")?;
    line.split_whitespace()
        .nth(1)
        .context("VmRSS value")?
        .parse()
        .context("VmRSS number")
}

/// CPU time (user + system) this process used so far, from `/proc/self/stat` (clock ticks of
/// 10 ms, Linux's `USER_HZ`).
fn cpu_time() -> anyhow::Result<Duration> {
    let stat = std::fs::read_to_string("/proc/self/stat").context("reading /proc/self/stat")?;
    // Fields after the command name (which may hold spaces) start at state, field 3.
    let rest = stat.rsplit_once(')').context("malformed stat")?.1;
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let ticks: u64 = fields[11].parse::<u64>()? + fields[12].parse::<u64>()?;
    Ok(Duration::from_millis(ticks * 10))
}

/// The front end the sessions connect to: in this process, or another one's control API.
enum FrontEnd {
    /// Started here.
    InProcess(WaWebHandle),
    /// `wafleet sim --waweb-port`, scripted through `/control/waweb`.
    External { control: ControlClient, url: String },
}

impl FrontEnd {
    fn url(&self) -> String {
        match self {
            FrontEnd::InProcess(net) => net.url(),
            FrontEnd::External { url, .. } => url.clone(),
        }
    }

    /// The phone of `phone` scans `code`.
    async fn scan(&self, code: &str, phone: &str) -> anyhow::Result<()> {
        match self {
            FrontEnd::InProcess(net) => net.scan(code, phone).map(drop),
            FrontEnd::External { control, .. } => control.waweb_scan(code, phone).await.map(drop),
        }
    }

    async fn logged_in(&self) -> anyhow::Result<usize> {
        match self {
            FrontEnd::InProcess(net) => Ok(net.logged_in().len()),
            FrontEnd::External { control, .. } => Ok(control.waweb_logged_in().await?.len()),
        }
    }
}

/// Pairs `device` by QR as the phone `phone` and returns its connected session.
async fn pair(link: &WaLink, net: &FrontEnd, device: DeviceId, phone: &str) -> anyhow::Result<Box<dyn Session>> {
    let mut session = link.open(device, OpenMode::PairQr).await?;
    let mut events = session.take_events().context("events")?;
    loop {
        let event = tokio::time::timeout(Duration::from_secs(60), events.recv())
            .await
            .context("no event within 60 s")?
            .context("events ended")?;
        match event {
            LinkEvent::QrCode { code, .. } => {
                // A code replaced meanwhile fails to scan; the next one comes as an event.
                let _ = net.scan(&code, phone).await;
            }
            LinkEvent::Connected => break,
            LinkEvent::PairSuccess { .. } => {}
            other => anyhow::bail!("unexpected {other:?}"),
        }
    }
    // Keep the channel drained so that the session never blocks on a full queue.
    tokio::spawn(async move { while events.recv().await.is_some() {} });
    Ok(session)
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let mut args = std::env::args().skip(1);
    let n: usize = args.next().map_or(Ok(100), |a| a.parse()).context("N is a number")?;
    let idle_secs: u64 = args.next().map_or(Ok(60), |a| a.parse()).context("seconds")?;
    let dir = std::env::temp_dir().join(format!("wafleet-waweb-sessions-{}", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    let mut settings = Settings::defaults();
    settings.database_url = Some(format!("sqlite://{}/wafleet.db", dir.display()).as_str().into());
    settings.database_max_connections = 8;
    let db = wafleet_core::Db::connect(&settings).await?;
    db.migrate().await?;
    let email = Email::parse("bench@example.com").map_err(anyhow::Error::msg)?;
    let user = db.create_user(&email, "x", NewUserRole::FirstBecomesAdmin).await?;
    let mut devices = Vec::with_capacity(n);
    for i in 0..n {
        devices.push(db.create_device(user.id, &format!("bench {i}"), None).await?.id);
    }
    let net = match (std::env::var("WAWEB_CONTROL_URL"), std::env::var("WA_SERVER_URL")) {
        (Ok(control), Ok(url)) => {
            println!("front end: another process ({url}); figures are the clients' alone");
            FrontEnd::External {
                control: ControlClient::new(control),
                url,
            }
        }
        _ => {
            println!("front end: in this process; figures include its share");
            FrontEnd::InProcess(
                waweb::start(WaWebConfig {
                    qr_refresh: Duration::from_secs(120),
                    ..WaWebConfig::for_tests()
                })
                .await?,
            )
        }
    };
    let link = WaLink::with_config(
        db.clone(),
        // A throwaway key: the example's database lives only as long as the run.
        wafleet_core::keys::KeyRing::random(),
        WaLinkConfig {
            server_url: Some(net.url()),
            app_version: Some((2, 3000, 1)),
            plain_http_media: true,
            ..WaLinkConfig::default()
        },
    );

    let (rss_before, cpu_before, started) = (rss_kib()?, cpu_time()?, Instant::now());
    let mut sessions = Vec::with_capacity(n);
    for (batch_no, batch) in devices.chunks(BATCH).enumerate() {
        let pairings = batch.iter().enumerate().map(|(i, device)| {
            let phone = format!("6019{:07}", batch_no * BATCH + i);
            let (link, net) = (&link, &net);
            async move { pair(link, net, *device, &phone).await }
        });
        for session in futures_util::future::join_all(pairings).await {
            sessions.push(session?);
        }
    }
    let paired_in = started.elapsed();
    tokio::time::sleep(Duration::from_secs(5)).await;
    let (rss_connected, cpu_connected) = (rss_kib()?, cpu_time()?);
    tokio::time::sleep(Duration::from_secs(idle_secs)).await;
    let cpu_idle = cpu_time()? - cpu_connected;
    let rss_idle = rss_kib()?;

    println!(
        "sessions connected: {} (server sees {})",
        sessions.len(),
        net.logged_in().await?
    );
    println!(
        "pairing all: {paired_in:.1?} wall, {:.1?} CPU",
        cpu_connected - cpu_before
    );
    println!("RSS before: {rss_before} KiB, connected: {rss_connected} KiB, after idle: {rss_idle} KiB");
    println!(
        "RSS per connected session: {:.0} KiB",
        rss_connected.saturating_sub(rss_before) as f64 / n as f64
    );
    println!(
        "idle CPU over {idle_secs} s: {cpu_idle:.2?} total, {:.4}% of one core per session",
        cpu_idle.as_secs_f64() / idle_secs as f64 / n as f64 * 100.0
    );
    for session in &sessions {
        session.close().await;
    }
    if let FrontEnd::InProcess(net) = net {
        net.stop().await;
    }
    db.close().await;
    let _ = std::fs::remove_dir_all(&dir);
    Ok(())
}
