//! Failover: `kill -9` of a worker holding its share of N sessions among three; the time until
//! every device is held by a live worker, online and connected again, with no device ever
//! connected twice. The dead worker's liveness lock dies with its database connection, so its
//! devices move about 2 s after the kill, well before its leases expire: the lease TTL is the
//! ceiling the figure is compared with, the bound for a worker that is cut off but still running.
//!
//! With `--link wa` the sessions are real whatsapp-rust clients, linked by QR code first; the devices of
//! the dead worker must resume from their stored credentials on the others: none pairs again.

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use anyhow::{Context, bail, ensure};

use crate::cluster::{Cluster, Link, Topology, metric};
use crate::report::{Row, thousands};
use crate::{Common, fleet, pairing};

/// How often whatsapp-rust saves a client's state (`Bot::build`'s background saver), plus a margin.
const CLIENT_SAVE_EVERY: Duration = Duration::from_secs(32);

/// Settings of the failover scenario.
#[derive(clap::Parser, Clone, Debug)]
pub struct Options {
    /// Sessions spread over the three workers.
    #[arg(long, default_value_t = 1500)]
    pub sessions: usize,
    /// `LEASE_TTL_SECS` of the workers (15 is the shipped default).
    #[arg(long, default_value_t = 15)]
    pub lease_ttl: u64,
    /// `WORKER_CLAIM_RATE` of the workers: devices each claims per second (250 is the shipped
    /// default).
    #[arg(long, default_value_t = 250)]
    pub claim_rate: u32,
    /// What the sessions are: `sim`, the simulator's own protocol, or `wa`, real whatsapp-rust clients
    /// linked by QR code to the simulator's WhatsApp Web front end.
    #[arg(long, value_enum, default_value_t = Link::Sim)]
    pub link: Link,
}

impl Default for Options {
    fn default() -> Self {
        <Options as clap::Parser>::parse_from(["failover"])
    }
}

/// Runs the scenario; fails when a device is connected twice, is not held again in time, or
/// (`--link wa`) pairs again instead of resuming.
pub async fn run(common: &Common, options: &Options) -> anyhow::Result<Vec<Row>> {
    let o = if common.smoke {
        Options {
            sessions: if options.link == Link::Wa { 6 } else { 30 },
            // Longer than the liveness grace, so the smoke run checks the dead worker is buried.
            lease_ttl: 10,
            claim_rate: options.claim_rate,
            link: options.link,
        }
    } else {
        options.clone()
    };
    let n = o.sessions;
    let topology = Topology::SHIPPED;
    let env = [
        ("LEASE_TTL_SECS", o.lease_ttl.to_string()),
        ("WORKER_CLAIM_RATE", o.claim_rate.to_string()),
    ];
    let cluster = Cluster::start(common, "failover", topology, o.link, &env).await?;
    let db = cluster.db();
    match o.link {
        Link::Sim => {
            fleet::provision(&cluster, n).await?;
            fleet::want_sessions(db).await?;
        }
        Link::Wa => {
            let devices = fleet::provision_unlinked(db, n).await?;
            pairing::want_pairing(db).await?;
            let limit = Duration::from_secs(120 + n as u64 / 2);
            let linked = pairing::pair_all(db, &cluster.sim(), &devices, limit).await?;
            eprintln!("[bench] failover: {n} devices linked by QR in {linked:.1?}");
            pairing::settle(&cluster, n, Duration::from_secs(60 + n as u64 / 50)).await?;
            if !common.smoke {
                // whatsapp-rust saves a client's state every 30 s, so a client killed sooner after
                // its first login has not yet saved that its pre-keys are on the server and
                // uploads 812 new ones when it resumes. The scenario measures the failover of
                // established sessions, as the simulator's link does.
                eprintln!("[bench] failover: waiting {CLIENT_SAVE_EVERY:?} for the clients to save their state");
                tokio::time::sleep(CLIENT_SAVE_EVERY).await;
            }
        }
    }
    let limit = Duration::from_secs(60 + n as u64 / 50);
    fleet::wait_all_held(&cluster, n, "", limit).await?;
    let victim_held = wait_spread(&cluster, topology.workers, n).await?;
    // Every pairing is done: a later one would be a device paired again.
    let pairings = match o.link {
        Link::Sim => 0,
        Link::Wa => cluster.sim().waweb_stats().await?.pairings,
    };

    let (_, labels) = metric(cluster.worker_port(1), "wafleet_sessions_held").await?;
    let victim = labels
        .split(',')
        .find_map(|l| l.strip_prefix("worker=\""))
        .map(|l| l.trim_end_matches('"').to_owned())
        .context("worker-1's id in its metrics")?;
    let pid = cluster.pid("worker-1")?;
    eprintln!("[bench] failover: kill -9 of worker-1 ({victim}, {victim_held} of {n} sessions)");
    let killed = std::process::Command::new("kill").args(["-KILL", &pid]).status()?;
    ensure!(killed.success(), "kill -9 {pid} failed");
    let (stop_sampling, stop) = tokio::sync::oneshot::channel();
    let logins = (o.link == Link::Wa).then(|| tokio::spawn(sample_logins(cluster.sim(), stop)));
    let took = fleet::wait_all_held(&cluster, n, &victim, Duration::from_secs(o.lease_ttl * 3 + 60)).await?;
    fleet::check_never_twice(&fleet::standing(&cluster, &victim).await?)?;
    check_buried(&cluster).await?;
    if o.link == Link::Wa {
        check_resumed(&cluster, pairings).await?;
    }
    eprintln!("[bench] failover: every device held again in {took:.1?}");
    let ttl = o.lease_ttl as f64;
    // Named only when not the shipped default, so the default rows keep their names.
    let (rate, rate_flag) = match o.claim_rate {
        250 => (String::new(), String::new()),
        r => (format!(", WORKER_CLAIM_RATE={r}"), format!(" --claim-rate {r}")),
    };
    let (scenario, flag, resumed) = match o.link {
        Link::Sim => ("failover", "", ""),
        Link::Wa => ("failover (whatsapp-rust)", " --link wa", ", none paired again"),
    };
    let command = format!(
        "wafleet-bench failover{flag} --sessions {n} --lease-ttl {}{rate_flag}",
        o.lease_ttl
    );
    let mut rows = vec![
        Row::new(
            format!(
                "{scenario}: kill -9 of 1 of 3 workers ({} of {} sessions), LEASE_TTL_SECS={}{rate}",
                thousands(victim_held as u64),
                thousands(n as u64),
                o.lease_ttl
            ),
            format!("{:.1} s until all held and online again{resumed}", took.as_secs_f64()),
            format!("{ttl:.0} s (lease TTL)"),
        )
        .ratio(took.as_secs_f64() / ttl)
        .command(&command),
    ];
    if let Some(logins) = logins {
        let _ = stop_sampling.send(());
        let peak = peak_rise_per_second(&logins.await??);
        // Each surviving worker opens at most WORKER_CLAIM_RATE sessions a second.
        let ceiling = 2 * o.claim_rate;
        rows.push(
            Row::new(
                format!(
                    "{scenario}: resumes at the front end, peak per second ({} sessions resuming at once)",
                    thousands(victim_held as u64)
                ),
                format!("{peak} logins/s"),
                format!("{ceiling}/s (2 live workers x WORKER_CLAIM_RATE)"),
            )
            .ratio(peak as f64 / f64::from(ceiling))
            .command(&command),
        );
    }
    Ok(rows)
}

/// Samples how many devices are logged in at the front end, every 100 ms until told to stop.
async fn sample_logins(
    sim: wafleet_sim::ControlClient,
    mut stop: tokio::sync::oneshot::Receiver<()>,
) -> anyhow::Result<Vec<(Instant, usize)>> {
    let mut samples = Vec::new();
    loop {
        samples.push((Instant::now(), sim.waweb_stats().await?.logged_in));
        tokio::select! {
            _ = &mut stop => return Ok(samples),
            () = tokio::time::sleep(Duration::from_millis(100)) => {}
        }
    }
}

/// The largest rise of the logged-in count within any one second of the samples: the rate at
/// which sessions came back.
fn peak_rise_per_second(samples: &[(Instant, usize)]) -> usize {
    let mut peak = 0;
    for (i, &(at, count)) in samples.iter().enumerate() {
        let low = samples[..=i]
            .iter()
            .rev()
            .take_while(|(then, _)| at.duration_since(*then) <= Duration::from_secs(1))
            .map(|&(_, c)| c)
            .min()
            .unwrap_or(count);
        peak = peak.max(count.saturating_sub(low));
    }
    peak
}

/// Fails unless a surviving worker noticed the dead one by its lost liveness lock (rather than
/// waiting out its leases).
async fn check_buried(cluster: &Cluster) -> anyhow::Result<()> {
    let mut buried = 0.0;
    for worker in 2..=3 {
        buried += metric(cluster.worker_port(worker), "wafleet_workers_buried_total")
            .await?
            .0;
    }
    ensure!(
        buried >= 1.0,
        "no surviving worker buried the killed one: its leases had to expire"
    );
    Ok(())
}

/// Fails unless every device came back by resuming its stored whatsapp-rust credentials: no pairing
/// completed since `pairings` were counted before the kill, no client is pairing, no device asks
/// to pair, and the devices logged in to the front end are exactly the linked ones.
async fn check_resumed(cluster: &Cluster, pairings: u64) -> anyhow::Result<()> {
    let sim = cluster.sim();
    let stats = sim.waweb_stats().await?;
    ensure!(
        stats.pairings == pairings && stats.pairing == 0,
        "devices paired again instead of resuming from their stored credentials: {} pairings since \
         the kill, {} clients pairing now",
        stats.pairings - pairings,
        stats.pairing
    );
    let pool = fleet::postgres(cluster.db());
    let (unlinked,): (i64,) =
        sqlx::query_as("SELECT COUNT(*) FROM device_sessions WHERE desired <> 'connected' OR qr_code IS NOT NULL")
            .fetch_one(pool)
            .await?;
    ensure!(unlinked == 0, "{unlinked} devices went back to pairing after the kill");
    // Account JIDs (`60…@s.whatsapp.net`) against the front end's device JIDs (`60…:1@…`).
    let user = |jid: &str| jid.split(['@', ':']).next().unwrap_or_default().to_owned();
    let jids: Vec<Option<String>> = sqlx::query_scalar("SELECT jid FROM devices").fetch_all(pool).await?;
    let linked: BTreeSet<String> = jids.iter().flatten().map(|j| user(j)).collect();
    let logged_in: BTreeSet<String> = sim.waweb_logged_in().await?.iter().map(|j| user(j)).collect();
    if linked != logged_in || linked.len() != jids.len() {
        bail!(
            "the front end's logged-in devices are not the linked ones: {} linked of {}, {} logged in, {} \
             differ",
            linked.len(),
            jids.len(),
            logged_in.len(),
            linked.symmetric_difference(&logged_in).count()
        );
    }
    Ok(())
}

/// Waits until worker 1 holds a share of the sessions (the balancing is done); returns its count.
async fn wait_spread(cluster: &Cluster, workers: u16, n: usize) -> anyhow::Result<usize> {
    let started = Instant::now();
    let share = n / workers as usize;
    loop {
        let (held, _) = metric(cluster.worker_port(1), "wafleet_sessions_held").await?;
        if held as usize >= share * 9 / 10 {
            return Ok(held as usize);
        }
        if started.elapsed() > Duration::from_secs(60) {
            bail!("worker-1 holds only {held} of {n} sessions after a minute");
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}
