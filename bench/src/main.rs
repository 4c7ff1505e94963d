//! `wafleet-bench`: starts wafleet's scale-out topology on loopback (through
//! `infra/local-cluster`), drives bounded load, checks correctness while it measures, and prints
//! each figure beside its ceiling measured in the same run. Exits non-zero when a check fails.

mod analytics;
mod api;
mod baileys;
mod campaign;
mod client;
mod cluster;
mod dataset;
mod failover;
mod fleet;
mod ingest;
mod load;
mod pairing;
mod proc;
mod report;
mod sequences;
mod sessions;

use std::path::PathBuf;

use anyhow::Context;
use clap::{Args, Parser, Subcommand};

use report::Row;

/// Benchmarks of wafleet against the ceilings of this machine.
#[derive(Parser)]
#[command(name = "wafleet-bench", version)]
struct Cli {
    #[command(flatten)]
    common: Common,
    #[command(subcommand)]
    scenario: Scenario,
}

/// Settings every scenario shares.
#[derive(Args, Clone)]
pub struct Common {
    /// Small sizes and a few seconds per scenario: checks that the harness works, measures nothing.
    #[arg(long, global = true)]
    pub smoke: bool,
    /// The `wafleet` binary to run (default: the one next to this program, so the same profile).
    #[arg(long, global = true)]
    pub bin: Option<PathBuf>,
    /// First loopback port of the cluster's processes.
    #[arg(long, global = true, default_value_t = 3400)]
    pub base_port: u16,
    /// Markdown file whose results table is updated with this run's rows.
    #[arg(long, global = true, default_value = "target/bench/results.md")]
    pub markdown: PathBuf,
}

#[derive(Subcommand)]
enum Scenario {
    /// Inbound messages from the simulator into PostgreSQL through worker processes.
    Ingest(ingest::Options),
    /// Idle sessions held by one worker (`--link wa`: real whatsapp-rust clients): memory, idle CPU, time
    /// to bring online.
    Sessions(sessions::Options),
    /// `kill -9` of a worker among three: time until every device is held again (`--link wa`:
    /// real whatsapp-rust clients, resumed without pairing).
    Failover(failover::Options),
    /// HTTP API latency and throughput: the chat list against a trivial route.
    Api(api::Options),
    /// A campaign to many leads: dispatch by the scheduler, then paced sends checked for violations.
    Campaign(campaign::Options),
    /// A 10-step sequence enrolling many leads by its rule: rows written, the enrolling round's
    /// time, then paced step sends checked for violations.
    Sequences(sequences::Options),
    /// Analytics: the roll-up's time and the analytics routes under load, checked against the rows.
    Analytics(analytics::Options),
    /// Every scenario in turn, with its defaults (or smoke sizes; with `--smoke`, sessions also
    /// with `--link wa`).
    All,
    /// Holds bare idle WebSockets to a URL (the sessions scenario's ceiling runs this as a child).
    #[command(hide = true)]
    WsHold(sessions::HoldOptions),
}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    if let Scenario::WsHold(options) = &cli.scenario {
        return sessions::hold(options);
    }
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("starting the runtime")?;
    let rows = runtime.block_on(run(&cli))?;
    report::print(&rows);
    if !cli.common.smoke {
        report::update_markdown(&cli.common.markdown, &rows)?;
        println!("\nupdated {}", cli.common.markdown.display());
    }
    Ok(())
}

async fn run(cli: &Cli) -> anyhow::Result<Vec<Row>> {
    let common = &cli.common;
    let started = std::time::Instant::now();
    let rows = match &cli.scenario {
        Scenario::Ingest(o) => ingest::run(common, o).await?,
        Scenario::Sessions(o) => sessions::run(common, o).await?,
        Scenario::Failover(o) => failover::run(common, o).await?,
        Scenario::Api(o) => api::run(common, o).await?,
        Scenario::Campaign(o) => campaign::run(common, o).await?,
        Scenario::Sequences(o) => sequences::run(common, o).await?,
        Scenario::Analytics(o) => analytics::run(common, o).await?,
        Scenario::All => {
            let mut rows = ingest::run(common, &ingest::Options::default()).await?;
            rows.extend(sessions::run(common, &sessions::Options::default()).await?);
            if common.smoke {
                // The real-client mode too, at a few sessions, so that it keeps working.
                let wa = sessions::Options {
                    link: cluster::Link::Wa,
                    ..sessions::Options::default()
                };
                rows.extend(sessions::run(common, &wa).await?);
            }
            rows.extend(failover::run(common, &failover::Options::default()).await?);
            rows.extend(api::run(common, &api::Options::default()).await?);
            rows.extend(campaign::run(common, &campaign::Options::default()).await?);
            rows.extend(sequences::run(common, &sequences::Options::default()).await?);
            rows.extend(analytics::run(common, &analytics::Options::default()).await?);
            rows
        }
        Scenario::WsHold(_) => unreachable!("handled before the runtime starts"),
    };
    eprintln!("[bench] done in {:.1?}", started.elapsed());
    Ok(rows)
}
