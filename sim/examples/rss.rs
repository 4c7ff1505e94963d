//! Memory per simulated session: opens N idle `SimLink` sessions to a simulator running in a
//! child process and prints the resident memory (VmRSS) each side gains per session.
//!
//! ```text
//! cargo run --release -p wafleet-sim --example rss -- 10000
//! ```
//!
//! Each side holds one socket per session, so client and server live in separate processes to
//! stay within `ulimit -n` (raise the soft limit above N plus a few hundred if it is lower).

use std::io::BufRead;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use futures_util::StreamExt;
use wafleet_core::db::NewUserRole;
use wafleet_core::link::{Link, LinkEvent, OpenMode};
use wafleet_core::testing::{Backend, TestDb};
use wafleet_core::types::Email;
use wafleet_sim::{SimConfig, SimLink};

/// VmRSS of a process, in KiB.
fn rss_kib(pid: &str) -> anyhow::Result<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).context("reading /proc status")?;
    let line = status
        .lines()
        .find(|l| l.starts_with("VmRSS:"))
        .context("no VmRSS line")?;
    line.split_whitespace()
        .nth(1)
        .context("no VmRSS value")?
        .parse()
        .context("parsing VmRSS")
}

fn open_files_limit() -> Option<u64> {
    let limits = std::fs::read_to_string("/proc/self/limits").ok()?;
    let line = limits.lines().find(|l| l.starts_with("Max open files"))?;
    line.split_whitespace().nth(3)?.parse().ok()
}

/// The child: a simulator on a free loopback port; prints its WebSocket URL, runs until stdin closes.
async fn serve() -> anyhow::Result<()> {
    let sim = wafleet_sim::start(SimConfig {
        port: 0,
        ..SimConfig::default()
    })
    .await?;
    println!("{}", sim.ws_url());
    tokio::task::spawn_blocking(|| {
        let mut line = String::new();
        let _ = std::io::stdin().read_line(&mut line);
    })
    .await?;
    sim.stop().await;
    Ok(())
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let arg = std::env::args().nth(1).unwrap_or_else(|| "10000".into());
    if arg == "--serve" {
        return serve().await;
    }
    let sessions: usize = arg.parse().context("usage: rss [SESSIONS]")?;
    if let Some(limit) = open_files_limit().filter(|limit| *limit < sessions as u64 + 200) {
        bail!(
            "ulimit -n is {limit}: raise it above {} for {sessions} sessions",
            sessions + 200
        );
    }
    let mut child = Command::new(std::env::current_exe()?)
        .arg("--serve")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .context("starting the simulator process")?;
    let server_pid = child.id().to_string();
    let mut url = String::new();
    std::io::BufReader::new(child.stdout.take().context("child stdout")?).read_line(&mut url)?;
    let url = url.trim().to_owned();
    let control = url.replace("ws://", "http://").replace("/ws", "/control");
    let network = wafleet_sim::ControlClient::new(control);

    let test_db = TestDb::new(Backend::Sqlite).await;
    let db = test_db.db.clone();
    let link = SimLink::new(url.clone(), db.clone(), test_db.keys.clone());
    let user = db
        .create_user(
            &Email::parse("rss@example.com").map_err(anyhow::Error::msg)?,
            "x",
            NewUserRole::Admin,
        )
        .await?;
    let phones: Vec<String> = (0..sessions).map(|n| format!("+6013{n:07}")).collect();
    let provisioned = network.provision(phones).await?;
    let mut devices = Vec::with_capacity(sessions);
    for (n, account) in provisioned.iter().enumerate() {
        let device = db.create_device(user.id, &format!("device {n}"), None).await?.id;
        link.adopt(device, account).await?;
        devices.push(device);
    }

    tokio::time::sleep(Duration::from_millis(500)).await;
    let (client_before, server_before) = (rss_kib("self")?, rss_kib(&server_pid)?);
    let started = Instant::now();
    let open: Vec<_> = futures_util::stream::iter(devices)
        .map(|device| {
            let link = link.clone();
            async move {
                let mut session = link.open(device, OpenMode::Connect).await?;
                let mut events = session.take_events().context("events")?;
                match events.recv().await {
                    Some(LinkEvent::Connected) => Ok((session, events)),
                    other => bail!("expected Connected, got {other:?}"),
                }
            }
        })
        .buffer_unordered(200)
        .collect()
        .await;
    let open: Vec<_> = open.into_iter().collect::<anyhow::Result<_>>()?;
    let took = started.elapsed();
    tokio::time::sleep(Duration::from_secs(2)).await;
    let (client_after, server_after) = (rss_kib("self")?, rss_kib(&server_pid)?);
    let state = network.state().await?;
    let per = |before: u64, after: u64| (after.saturating_sub(before)) as f64 / open.len() as f64;
    println!(
        "sessions connected: {} (simulator reports {})",
        open.len(),
        state.connected_sessions
    );
    println!("opened in {took:.1?}");
    println!(
        "client: {client_before} KiB -> {client_after} KiB, {:.2} KiB per session",
        per(client_before, client_after)
    );
    println!(
        "server: {server_before} KiB -> {server_after} KiB, {:.2} KiB per session",
        per(server_before, server_after)
    );
    drop(open);
    drop(child.stdin.take());
    let _ = child.wait();
    Ok(())
}
