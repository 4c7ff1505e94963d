//! Failover: `kill -9` of a worker holding its share of N sessions among three; the time until
//! every device is held by a live worker, online and connected again, with no device ever
//! connected twice. The ceiling is the lease TTL: a dead worker's leases cannot move sooner.

use std::time::{Duration, Instant};

use anyhow::{Context, bail, ensure};

use crate::cluster::{Cluster, Topology, metric};
use crate::report::{Row, thousands};
use crate::{Common, fleet};

/// Settings of the failover scenario.
#[derive(clap::Parser, Clone, Debug)]
pub struct Options {
    /// Sessions spread over the three workers.
    #[arg(long, default_value_t = 1500)]
    pub sessions: usize,
    /// `LEASE_TTL_SECS` of the workers (15 is the shipped default).
    #[arg(long, default_value_t = 15)]
    pub lease_ttl: u64,
}

impl Default for Options {
    fn default() -> Self {
        <Options as clap::Parser>::parse_from(["failover"])
    }
}

/// Runs the scenario; fails when a device is connected twice or not held again in time.
pub async fn run(common: &Common, options: &Options) -> anyhow::Result<Vec<Row>> {
    let o = if common.smoke {
        Options {
            sessions: 30,
            lease_ttl: 2,
        }
    } else {
        options.clone()
    };
    let n = o.sessions;
    let topology = Topology::SHIPPED;
    let env = [("LEASE_TTL_SECS", o.lease_ttl.to_string())];
    let cluster = Cluster::start(common, "failover", topology, &env).await?;
    let (db, sim) = (cluster.db(), cluster.sim());
    fleet::provision(db, &sim, &cluster.sim_ws_url(), n).await?;
    fleet::want_sessions(db).await?;
    let limit = Duration::from_secs(60 + n as u64 / 50);
    fleet::wait_all_held(db, &sim, n, "", limit).await?;
    let victim_held = wait_spread(&cluster, topology.workers, n).await?;

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
    let killed_at = Instant::now();
    let took = fleet::wait_all_held(db, &sim, n, &victim, Duration::from_secs(o.lease_ttl * 3 + 60)).await?;
    fleet::check_never_twice(&fleet::standing(db, &sim, &victim).await?)?;
    ensure!(
        killed_at.elapsed() >= Duration::from_secs(o.lease_ttl) / 2,
        "devices moved before their leases could have expired"
    );
    eprintln!("[bench] failover: every device held again in {took:.1?}");
    let ttl = o.lease_ttl as f64;
    Ok(vec![
        Row::new(
            format!(
                "failover: kill -9 of 1 of 3 workers ({} of {} sessions), LEASE_TTL_SECS={}",
                thousands(victim_held as u64),
                thousands(n as u64),
                o.lease_ttl
            ),
            format!("{:.1} s until all held and online again", took.as_secs_f64()),
            format!("{ttl:.0} s (lease TTL)"),
        )
        .ratio(took.as_secs_f64() / ttl)
        .command(&format!(
            "wafleet-bench failover --sessions {n} --lease-ttl {}",
            o.lease_ttl
        )),
    ])
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
