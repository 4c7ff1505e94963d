//! Ingest: inbound messages from the simulator, through worker processes, into PostgreSQL.
//!
//! The simulator keeps a fixed window of unacknowledged messages per device and sends a new one
//! on each acknowledgement, which a worker sends only after its batch has committed: the rate is
//! what the system sustains, and the delay is from injection to commit-and-acknowledgement. At the
//! end every injected message must be stored exactly once. The ceiling is `COPY` of as many rows
//! into the same tables of the same database, with the chats updated from them.

use std::time::{Duration, Instant};

use anyhow::ensure;
use wafleet_sim::control::FloodRequest;

use crate::cluster::{Cluster, Link, Topology, metric};
use crate::proc::CpuSample;
use crate::report::{Row, thousands};
use crate::{Common, fleet};

mod ceiling;
mod preload;

/// Settings of the ingest scenario.
#[derive(clap::Parser, Clone, Debug)]
pub struct Options {
    /// Seconds of load.
    #[arg(long, default_value_t = 60)]
    pub secs: u64,
    /// Receiving devices, spread over the workers.
    #[arg(long, default_value_t = 60)]
    pub devices: usize,
    /// Unacknowledged messages in flight per device.
    #[arg(long, default_value_t = 50)]
    pub window: usize,
    /// Distinct senders (chats) per device.
    #[arg(long, default_value_t = 200)]
    pub contacts: usize,
    /// Worker processes.
    #[arg(long, default_value_t = 3)]
    pub workers: u16,
    /// Messages stored before the run, spread over the year before it (random ids, as WhatsApp's):
    /// ingest into tables that have grown for months rather than empty ones.
    #[arg(long, default_value_t = 0)]
    pub preload: u64,
}

impl Default for Options {
    fn default() -> Self {
        <Options as clap::Parser>::parse_from(["ingest"])
    }
}

impl Options {
    fn smoke() -> Options {
        Options {
            secs: 3,
            devices: 6,
            window: 10,
            contacts: 5,
            workers: 3,
            preload: 20_000,
        }
    }

    fn command(&self) -> String {
        format!(
            "wafleet-bench ingest --secs {} --devices {} --window {} --contacts {} --workers {} --preload {}",
            self.secs, self.devices, self.window, self.contacts, self.workers, self.preload
        )
    }
}

/// Runs the scenario; fails when a message is lost or stored twice.
pub async fn run(common: &Common, options: &Options) -> anyhow::Result<Vec<Row>> {
    let o = if common.smoke {
        Options::smoke()
    } else {
        options.clone()
    };
    let topology = Topology {
        workers: o.workers,
        ..Topology::SHIPPED
    };
    let cluster = Cluster::start(common, "ingest", topology, Link::Sim, &[]).await?;
    let (db, sim) = (cluster.db(), cluster.sim());
    let devices = fleet::provision(&cluster, o.devices).await?;
    preload::messages(db, &devices, o.preload).await?;
    fleet::want_sessions(db).await?;
    fleet::wait_all_held(&cluster, o.devices, "", Duration::from_secs(120)).await?;

    let mut pids = vec![cluster.pid("sim")?];
    for n in 1..=o.workers {
        pids.push(cluster.pid(&format!("worker-{n}"))?);
    }
    let request = FloodRequest {
        phones: devices.iter().map(|d| d.phone.clone()).collect(),
        window: o.window,
        seconds: o.secs as f64,
        contacts: o.contacts,
    };
    eprintln!("[bench] ingest: {} s of load on {} devices", o.secs, o.devices);
    sim.flood(&request).await?;
    // The first seconds fill the pipeline and warm the caches; the rate is taken after them.
    let warm = (o.secs as f64 / 6.0).min(5.0);
    tokio::time::sleep(Duration::from_secs_f64(warm)).await;
    let (r0, cpu0) = (sim.flood_report().await?, CpuSample::take(&pids));
    let mut r1 = r0.clone();
    for tick in 1u64.. {
        if !r1.active {
            break;
        }
        let left = (o.secs as f64 - r1.elapsed_secs).clamp(0.05, 1.0);
        tokio::time::sleep(Duration::from_secs_f64(left)).await;
        let before = r1.acked;
        r1 = sim.flood_report().await?;
        if tick.is_multiple_of(10) {
            eprintln!(
                "[bench] {:.0} s: {} stored, {} in the last second",
                r1.elapsed_secs,
                r1.acked,
                r1.acked - before
            );
        }
    }
    let cpu1 = CpuSample::take(&pids);
    let seconds = r1.elapsed_secs - r0.elapsed_secs;
    let rate = (r1.acked - r0.acked) as f64 / seconds;

    let last = drain(&sim).await?;
    let batches = batch_figures(&cluster, o.workers).await?;
    let stored = check_stored(&cluster, &last, o.preload).await?;
    eprintln!(
        "[bench] ingest: {} injected, {} acknowledged, {} stored; {} repeat acks",
        last.injected, last.acked, stored, last.repeat_acks
    );
    cluster.stop_processes();
    let ceiling = ceiling::copy_rows(db, &devices, o.contacts, stored.clamp(20_000, 2_000_000)).await?;

    let cores = std::thread::available_parallelism().map_or(1, |n| n.get()) as f64;
    let busy = (cpu1.machine.0 - cpu0.machine.0) as f64 / (cpu1.machine.1 - cpu0.machine.1).max(1) as f64;
    let share = |secs: f64| 100.0 * secs / seconds / cores;
    let command = o.command();
    Ok(vec![
        Row::new(
            match o.preload {
                0 => format!("ingest: messages/s ({} devices, {} workers)", o.devices, o.workers),
                n => format!(
                    "ingest: messages/s ({} devices, {} workers, {} messages stored before)",
                    o.devices,
                    o.workers,
                    thousands(n)
                ),
            },
            format!("{} msg/s", thousands(rate as u64)),
            format!("{} rows/s (COPY)", thousands(ceiling as u64)),
        )
        .ratio(rate / ceiling)
        .command(&command),
        Row::new(
            "ingest: delay injected → committed and acked",
            format!(
                "p50 {:.1} ms, p99 {:.1} ms",
                last.p50_us as f64 / 1e3,
                last.p99_us as f64 / 1e3
            ),
            format!("window {} × {} devices in flight", o.window, o.devices),
        )
        .command(&command),
        Row::new(
            "ingest: worker batches (mean over the run)",
            format!("{:.0} rows, written in {:.1} ms", batches.0, batches.1 * 1e3),
            format!("{} rows at most", MAX_BATCH),
        )
        .ratio(batches.0 / MAX_BATCH as f64)
        .command(&command),
        Row::new(
            "ingest: CPU while loaded (of all cores)",
            format!(
                "sim+workers {:.0}%, PostgreSQL {:.0}%, machine {:.0}%",
                share(cpu1.processes - cpu0.processes),
                share(cpu1.postgres - cpu0.postgres),
                100.0 * busy
            ),
            "100%",
        )
        .ratio(busy)
        .command(&command),
    ])
}

/// The most rows a worker writes in one batch (`MAX_BATCH` in `workers/src/flush.rs`).
const MAX_BATCH: u64 = 500;

/// Mean rows per ingest batch and mean seconds to write one, over every worker.
async fn batch_figures(cluster: &Cluster, workers: u16) -> anyhow::Result<(f64, f64)> {
    let (mut rows, mut batches, mut secs) = (0.0, 0.0, 0.0);
    for n in 1..=workers {
        let port = cluster.worker_port(n);
        rows += metric(port, "wafleet_flush_batch_rows_sum").await?.0;
        batches += metric(port, "wafleet_flush_batch_rows_count").await?.0;
        secs += metric(port, "wafleet_flush_seconds_sum").await?.0;
    }
    let batches = f64::max(batches, 1.0);
    Ok((rows / batches, secs / batches))
}

/// Waits until every injected message is acknowledged; returns the final report.
async fn drain(sim: &wafleet_sim::ControlClient) -> anyhow::Result<wafleet_sim::control::FloodReport> {
    let started = Instant::now();
    loop {
        let r = sim.flood_report().await?;
        if !r.active && r.acked == r.injected {
            return Ok(r);
        }
        ensure!(
            started.elapsed() < Duration::from_secs(60),
            "messages lost: {} injected, {} acknowledged a minute after the load stopped",
            r.injected,
            r.acked
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Stored messages and chats agree with what the simulator counted (besides the `preloaded`
/// ones, which are all read); returns the count stored by the run.
async fn check_stored(
    cluster: &Cluster,
    last: &wafleet_sim::control::FloodReport,
    preloaded: u64,
) -> anyhow::Result<u64> {
    let pool = fleet::postgres(cluster.db());
    let (all, unread): (i64, i64) = sqlx::query_as(
        "SELECT (SELECT COUNT(*) FROM messages), (SELECT COALESCE(SUM(unread_count), 0)::BIGINT FROM chats)",
    )
    .fetch_one(pool)
    .await?;
    let stored = all - preloaded as i64;
    let state = cluster.sim().state().await?;
    let pending: usize = state.accounts.iter().map(|a| a.pending).sum();
    ensure!(pending == 0, "{pending} messages still unacknowledged at the simulator");
    ensure!(
        stored as u64 == last.injected && last.acked == last.injected,
        "stored {stored} messages, the simulator injected {} and had {} acknowledged",
        last.injected,
        last.acked
    );
    ensure!(
        unread == stored,
        "chats count {unread} unread messages for {stored} stored"
    );
    fleet::check_never_twice(&fleet::standing(cluster, "").await?)?;
    Ok(stored as u64)
}
