//! Sessions: N idle sessions held by one worker process: resident memory per session, CPU while
//! idle, and the time to bring them all online. The ceiling is the same number of bare idle
//! WebSockets (4 KiB buffers, one reading task each, as `SimLink` uses) to the same simulator,
//! held by a process of their own.
//!
//! With `--link sim` the sessions are the simulator's own protocol, provisioned as linked; with
//! `--link wa` they are real whatsapp-rust clients linked by QR code to the simulator's WhatsApp Web front
//! end, and the front end's share (in the simulator's process) is reported apart from the worker's.

use std::future::Future;
use std::io::{BufRead, BufReader, Write};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use futures_util::StreamExt;
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;

use crate::cluster::{Cluster, Link, Topology};
use crate::report::{Row, thousands};
use crate::{Common, baileys, fleet, pairing, proc};

/// Settings of the sessions scenario.
#[derive(clap::Parser, Clone, Debug)]
pub struct Options {
    /// Sessions held by the one worker.
    #[arg(long, default_value_t = 2000)]
    pub sessions: usize,
    /// Seconds over which idle CPU is measured.
    #[arg(long, default_value_t = 10)]
    pub idle_secs: u64,
    /// Seconds to wait once every session is online before memory and idle CPU are measured:
    /// real clients finish their start-up exchanges (app state, prekeys, privacy tokens) first.
    #[arg(long, default_value_t = 30)]
    pub settle_secs: u64,
    /// What the sessions are: `sim`, the simulator's own protocol (wafleet's own cost per
    /// session), or `wa`, real whatsapp-rust clients linked by QR code to the simulator's WhatsApp Web
    /// front end (the cost of a real session).
    #[arg(long, value_enum, default_value_t = Link::Sim)]
    pub link: Link,
    /// With `--link wa`: Baileys sessions (the JavaScript client, in one Node process) linked
    /// through the same front end after wafleet's are measured, for its memory and idle CPU per
    /// session beside theirs; 0 leaves Baileys out. Default: as many as `--sessions`, at most
    /// 200: a Baileys session takes megabytes (5.4 MiB each at 200 before a full collection),
    /// so 1,000 in one Node would want several GiB of a machine shared with builds.
    #[arg(long)]
    pub baileys_sessions: Option<usize>,
}

impl Default for Options {
    fn default() -> Self {
        <Options as clap::Parser>::parse_from(["sessions"])
    }
}

/// Baileys sessions at most unless `--baileys-sessions` says otherwise.
const BAILEYS_SESSIONS: usize = 200;

/// Settings of the ceiling's child process.
#[derive(clap::Args, Clone, Debug)]
pub struct HoldOptions {
    /// WebSocket URL.
    #[arg(long)]
    url: String,
    /// Connections to open.
    #[arg(long)]
    count: usize,
}

/// What the ceiling's child measured.
struct Held {
    kib_per_connection: f64,
    open_secs: f64,
}

/// What holding the sessions cost, measured around bringing them online.
struct Measured {
    /// The worker's RSS before and after, in KiB.
    worker_rss: (u64, u64),
    /// The simulator's RSS before and after, in KiB (the WhatsApp Web front end runs in it).
    sim_rss: (u64, u64),
    /// From asking for the sessions until all were online.
    online: Duration,
    /// The worker's CPU while they idled, in cores.
    idle: f64,
}

/// Runs the scenario.
pub async fn run(common: &Common, options: &Options) -> anyhow::Result<Vec<Row>> {
    let o = if common.smoke {
        Options {
            // Real clients pair one by one through the front end: a few check the path.
            sessions: if options.link == Link::Wa { 3 } else { 50 },
            idle_secs: 1,
            settle_secs: 2,
            link: options.link,
            // A couple check Baileys' path, unless Node is missing (CI has it).
            baileys_sessions: Some(if node_installed() { 2 } else { 0 }),
        }
    } else {
        options.clone()
    };
    let n = o.sessions;
    if let Some(limit) = proc::open_files_limit().filter(|l| *l < n as u64 + 200) {
        bail!("ulimit -n is {limit}: raise it above {} for {n} sessions", n + 200);
    }
    let topology = Topology {
        apis: 0,
        workers: 1,
        schedulers: 0,
    };
    let env = [("WORKER_CAPACITY", n.to_string())];
    let cluster = Cluster::start(common, "sessions", topology, o.link, &env).await?;
    match o.link {
        Link::Sim => simulated(&cluster, &o).await,
        Link::Wa => real_clients(&cluster, &o).await,
    }
}

/// Whether Node can be started (for the Baileys sessions).
fn node_installed() -> bool {
    let installed = Command::new("node").arg("--version").output().is_ok();
    if !installed {
        eprintln!("[bench] node is not installed: Baileys is left out");
    }
    installed
}

/// `--link sim`: devices provisioned as linked, then all asked for a session at once.
async fn simulated(cluster: &Cluster, o: &Options) -> anyhow::Result<Vec<Row>> {
    let n = o.sessions;
    // The ceiling first, so the simulator never holds both sets of sockets at once.
    let held = hold_in_child(&cluster.sim_ws_url(), n)?;
    tokio::time::sleep(Duration::from_secs(1)).await;
    fleet::provision(cluster, n).await?;
    let m = measure(cluster, o, async {
        fleet::want_sessions(cluster.db()).await?;
        fleet::wait_all_held(cluster, n, "", Duration::from_secs(60 + n as u64 / 50)).await
    })
    .await?;
    let per_session = m.worker_rss.1.saturating_sub(m.worker_rss.0) as f64 / n as f64;
    let command = format!("wafleet-bench sessions --sessions {n} --idle-secs {}", o.idle_secs);
    let count = thousands(n as u64);
    Ok(vec![
        Row::new(
            format!("sessions: RSS per session ({count} held by one worker)"),
            format!(
                "{per_session:.1} KiB ({:.0} MiB in all)",
                m.worker_rss.1 as f64 / 1024.0
            ),
            format!("{:.1} KiB per bare idle WebSocket", held.kib_per_connection),
        )
        .ratio(per_session / held.kib_per_connection)
        .command(&command),
        Row::new(
            format!("sessions: time to bring {count} online"),
            format!("{:.2} s", m.online.as_secs_f64()),
            format!("{:.2} s to open {count} bare WebSockets", held.open_secs),
        )
        .ratio(m.online.as_secs_f64() / held.open_secs)
        .command(&command),
        idle_row("sessions", &count, m.idle, &command),
    ])
}

/// `--link wa`: devices known to the database only, each linked by QR code through its worker's
/// whatsapp-rust client, then held connected. The ceiling comes last, so the simulator's memory before
/// the sessions is not the bare sockets' left over.
async fn real_clients(cluster: &Cluster, o: &Options) -> anyhow::Result<Vec<Row>> {
    let n = o.sessions;
    let devices = fleet::provision_unlinked(cluster.db(), n).await?;
    let mut linked = Duration::ZERO;
    let m = measure(cluster, o, async {
        pairing::want_pairing(cluster.db()).await?;
        let limit = Duration::from_secs(120 + n as u64 / 2);
        linked = pairing::pair_all(cluster.db(), &cluster.sim(), &devices, limit).await?;
        let connected = pairing::settle(cluster, n, Duration::from_secs(60 + n as u64 / 50)).await?;
        anyhow::Ok(linked + connected)
    })
    .await?;
    let held = hold_in_child(&cluster.sim_ws_url(), n)?;
    let m_baileys = o.baileys_sessions.unwrap_or(n.min(BAILEYS_SESSIONS));
    let mut command = format!(
        "wafleet-bench sessions --link wa --sessions {n} --idle-secs {}",
        o.idle_secs
    );
    if m_baileys != n {
        command.push_str(&format!(" --baileys-sessions {m_baileys}"));
    }
    let count = thousands(n as u64);
    let worker_kib = m.worker_rss.1.saturating_sub(m.worker_rss.0) as f64 / n as f64;
    // One process's memory per session, beside a bare socket's.
    let rss_row = |what: String, (before, after): (u64, u64)| {
        let per_session = after.saturating_sub(before) as f64 / n as f64;
        Row::new(
            what,
            format!("{per_session:.1} KiB ({:.0} MiB in all)", after as f64 / 1024.0),
            format!("{:.1} KiB per bare idle WebSocket", held.kib_per_connection),
        )
        .ratio(per_session / held.kib_per_connection)
        .command(&command)
    };
    let mut rows = vec![
        rss_row(
            format!("sessions (whatsapp-rust): worker RSS per session ({count} held by one worker)"),
            m.worker_rss,
        ),
        rss_row(
            format!("sessions (whatsapp-rust): simulated WhatsApp Web server RSS per session ({count})"),
            m.sim_rss,
        ),
        Row::new(
            format!("sessions (whatsapp-rust): time to link {count} by QR and bring them online"),
            format!(
                "{:.2} s ({:.2} s until all linked)",
                m.online.as_secs_f64(),
                linked.as_secs_f64()
            ),
            format!("{:.2} s to open {count} bare WebSockets", held.open_secs),
        )
        .ratio(m.online.as_secs_f64() / held.open_secs)
        .command(&command),
        idle_row("sessions (whatsapp-rust)", &count, m.idle, &command),
    ];
    if m_baileys > 0 {
        let settle = Duration::from_secs(o.settle_secs);
        let figures = baileys::measure(cluster, m_baileys, settle, o.idle_secs).await?;
        rows.extend(baileys::rows(&figures, worker_kib, m.idle, n, &command));
    }
    Ok(rows)
}

/// Measures the worker and the simulator around `bring_online` (which returns how long bringing
/// every session online took), then the worker's CPU while the sessions idle; fails when a device
/// is connected twice.
async fn measure(
    cluster: &Cluster,
    o: &Options,
    bring_online: impl Future<Output = anyhow::Result<Duration>>,
) -> anyhow::Result<Measured> {
    let (worker, sim) = (cluster.pid("worker-1")?, cluster.pid("sim")?);
    tokio::time::sleep(Duration::from_secs(1)).await;
    let before = (proc::rss_kib(&worker)?, proc::rss_kib(&sim)?);
    let online = bring_online.await?;
    tokio::time::sleep(Duration::from_secs(o.settle_secs)).await;
    let after = (proc::rss_kib(&worker)?, proc::rss_kib(&sim)?);
    let cpu_before = proc::cpu_secs(&worker)?;
    tokio::time::sleep(Duration::from_secs(o.idle_secs)).await;
    let idle = (proc::cpu_secs(&worker)? - cpu_before) / o.idle_secs as f64;
    fleet::check_never_twice(&fleet::standing(cluster, "").await?)?;
    eprintln!(
        "[bench] sessions: worker {} → {} KiB, simulator {} → {} KiB for {} sessions, online in {online:.1?}, \
         idle CPU {:.1}%",
        before.0,
        after.0,
        before.1,
        after.1,
        o.sessions,
        idle * 100.0
    );
    Ok(Measured {
        worker_rss: (before.0, after.0),
        sim_rss: (before.1, after.1),
        online,
        idle,
    })
}

/// The worker's CPU while `count` sessions idle.
fn idle_row(scenario: &str, count: &str, idle: f64, command: &str) -> Row {
    Row::new(
        format!("{scenario}: worker CPU while {count} sessions idle"),
        format!("{:.1}% of one core", idle * 100.0),
        "0%",
    )
    .command(command)
}

/// Runs the ceiling in a child process (this program's hidden `ws-hold`): reads its one line of
/// figures, then closes its stdin to end it.
fn hold_in_child(url: &str, count: usize) -> anyhow::Result<Held> {
    let mut child = Command::new(std::env::current_exe()?)
        .args(["ws-hold", "--url", url, "--count", &count.to_string()])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .context("starting the bare WebSocket holder")?;
    let mut line = String::new();
    BufReader::new(child.stdout.take().context("child stdout")?).read_line(&mut line)?;
    let mut stdin = child.stdin.take().context("child stdin")?;
    let _ = stdin.write_all(b"\n");
    drop(stdin);
    let status = child.wait()?;
    let figures: Vec<f64> = line.split_whitespace().filter_map(|f| f.parse().ok()).collect();
    let [kib_per_connection, open_secs] = figures[..] else {
        bail!("the bare WebSocket holder failed ({status}): {line:?}");
    };
    Ok(Held {
        kib_per_connection,
        open_secs,
    })
}

/// The `ws-hold` child: opens `count` idle WebSockets, prints KiB per connection and seconds to
/// open them all, and holds them until stdin closes.
pub fn hold(options: &HoldOptions) -> anyhow::Result<()> {
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
    runtime.block_on(async {
        let before = proc::rss_kib("self")?;
        let started = Instant::now();
        let config = WebSocketConfig::default()
            .read_buffer_size(4096)
            .write_buffer_size(4096);
        let sockets: Vec<_> = futures_util::stream::iter(0..options.count)
            .map(|_| tokio_tungstenite::connect_async_with_config(options.url.as_str(), Some(config), true))
            .buffer_unordered(200)
            .collect()
            .await;
        let mut tasks = Vec::with_capacity(sockets.len());
        for socket in sockets {
            let (mut ws, _) = socket.context("opening a WebSocket")?;
            tasks.push(tokio::spawn(async move { while ws.next().await.is_some() {} }));
        }
        let open_secs = started.elapsed().as_secs_f64();
        tokio::time::sleep(Duration::from_secs(2)).await;
        let after = proc::rss_kib("self")?;
        println!(
            "{:.2} {open_secs:.3}",
            after.saturating_sub(before) as f64 / options.count as f64
        );
        tokio::task::spawn_blocking(|| {
            let mut line = String::new();
            let _ = std::io::stdin().read_line(&mut line);
        })
        .await?;
        for task in tasks {
            task.abort();
        }
        anyhow::Ok(())
    })
}
