//! `wafleet`: one binary, several roles. See `wafleet --help`.

mod demo;
mod keys;
mod roles;

use clap::{Parser, Subcommand};
use wafleet_core::Settings;

/// Run a fleet of WhatsApp numbers from one place.
///
/// With nothing configured, `wafleet serve` runs every role in one process on an SQLite file under
/// ./data and listens on http://127.0.0.1:3000. Set DATABASE_URL=postgres://… and
/// REDIS_URL=redis://… to run the roles as separate processes on many machines.
#[derive(Debug, Parser)]
#[command(version, propagate_version = true)]
struct Cli {
    #[command(subcommand)]
    role: Option<Role>,
    #[command(flatten)]
    settings: Settings,
}

/// Which part of wafleet this process runs.
#[derive(Clone, Debug, Subcommand)]
enum Role {
    /// Every role in one process (the default).
    Serve {
        /// Run against a simulated WhatsApp network inside this process, so devices can be linked
        /// and chats seen without a real phone. The dashboard says so plainly.
        #[arg(long)]
        demo: bool,
    },
    /// The stateless HTTP API and web dashboard.
    Api,
    /// A connection worker: holds device sessions.
    Worker,
    /// Cron-driven jobs: campaign dispatch, cleanup, roll-ups.
    Scheduler,
    /// Apply database migrations and exit.
    Migrate,
    /// The key that encrypts WhatsApp key material in the database: generate, status, reseal.
    #[command(subcommand)]
    Keys(keys::KeysCommand),
    /// The WhatsApp network simulator, for tests, benchmarks and demos (never real WhatsApp).
    Sim(wafleet_sim::SimConfig),
    /// Print the MCP server's tools as the Markdown table of docs/mcp.md, and exit.
    McpTools,
}

#[tokio::main]
async fn main() -> std::process::ExitCode {
    let cli = match wafleet_core::config::parse_layered::<Cli>() {
        Ok(cli) => cli,
        Err(err) => {
            eprintln!("wafleet: {err:#}");
            return std::process::ExitCode::from(2);
        }
    };
    wafleet_core::telemetry::init(cli.settings.log_format);
    match roles::run(cli.role.unwrap_or(Role::Serve { demo: false }), cli.settings).await {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(err) => {
            tracing::error!("{err:#}");
            eprintln!("wafleet: {err:#}");
            std::process::ExitCode::FAILURE
        }
    }
}
