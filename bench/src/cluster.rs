//! The topology under test: `infra/local-cluster` (the shipped scale-out layout as processes on
//! loopback) with the network simulator, on a PostgreSQL database and Redis namespace of the run's
//! own.

use std::path::PathBuf;
use std::process::Command;
use std::sync::atomic::{AtomicU64, Ordering};

use anyhow::{Context, bail};
use wafleet_core::Db;
use wafleet_core::testing::{Backend, TestDb};
use wafleet_sim::ControlClient;

use crate::Common;

/// How many processes of each role.
#[derive(Clone, Copy, Debug)]
pub struct Topology {
    /// `wafleet api` processes.
    pub apis: u16,
    /// `wafleet worker` processes.
    pub workers: u16,
    /// `wafleet scheduler` processes.
    pub schedulers: u16,
}

impl Topology {
    /// What `infra/docker-compose.yml` runs: 2 api, 3 workers, 2 schedulers.
    pub const SHIPPED: Topology = Topology {
        apis: 2,
        workers: 3,
        schedulers: 2,
    };
}

/// What the workers' sessions connect through.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, clap::ValueEnum)]
pub enum Link {
    /// The simulator's own protocol (`SimLink`): the cheapest session, so the figures are
    /// wafleet's own costs. Devices are provisioned as linked.
    #[default]
    Sim,
    /// Real whatsapp-rust clients (`WaLink`) connected to the simulator's WhatsApp Web front end: the
    /// cost of a real session. Devices are linked by QR code, scanned by the front end's phones.
    Wa,
}

/// QR codes a pairing whatsapp-rust client is shown before it gives up (`WAFLEET_SIM_QR_MAX_CODES`): the
/// default (6 of 20 s) is shorter than a device of a large run may wait for its turn to be scanned.
const QR_MAX_CODES: &str = "200";

/// A running cluster; stopped (SIGTERM, drain) and its database dropped when dropped.
pub struct Cluster {
    /// The run's database (and queue namespace); dropped last.
    pub test: TestDb,
    script: PathBuf,
    run_dir: PathBuf,
    base_port: u16,
    topology: Topology,
    /// What the workers' sessions connect through.
    pub link: Link,
    /// Replaced logins at the WhatsApp Web front end that the checks do not count (see
    /// [`crate::pairing::settle`]).
    replaced_while_linking: AtomicU64,
    /// Every process the script started, with the binary it runs, to be sure none outlives the run.
    started: Vec<(String, PathBuf)>,
}

/// The repository root: where `infra/local-cluster` is.
fn root() -> anyhow::Result<PathBuf> {
    let mut dir = std::env::current_dir()?;
    loop {
        if dir.join("infra/local-cluster").is_file() {
            return Ok(dir);
        }
        if !dir.pop() {
            bail!("run wafleet-bench from the wafleet repository (infra/local-cluster not found)");
        }
    }
}

/// The `wafleet` binary: `--bin`, or the one beside this program.
pub fn wafleet_bin(common: &Common) -> anyhow::Result<PathBuf> {
    let bin = match &common.bin {
        Some(bin) => bin.clone(),
        None => std::env::current_exe()?.with_file_name("wafleet"),
    };
    if !bin.is_file() {
        bail!(
            "no wafleet binary at {} (build it with the same profile: `cargo build --release --bin wafleet`)",
            bin.display()
        );
    }
    Ok(bin)
}

impl Cluster {
    /// A new database, then every process of `topology` plus the simulator, each answering its
    /// probe, the workers' sessions going through `link`. `env` goes to every process (wafleet
    /// settings such as `LEASE_TTL_SECS`).
    pub async fn start(
        common: &Common,
        name: &str,
        topology: Topology,
        link: Link,
        env: &[(&str, String)],
    ) -> anyhow::Result<Cluster> {
        let test = TestDb::new(Backend::Postgres).await;
        let root = root()?;
        let run_dir = root.join("target/bench").join(name);
        let script = root.join("infra/local-cluster");
        // A cluster an interrupted run left there is stopped before its pid files go.
        if run_dir.join("pids").is_dir() {
            let _ = Command::new(&script)
                .arg("--run-dir")
                .arg(&run_dir)
                .arg("stop")
                .stdout(std::process::Stdio::null())
                .stderr(std::process::Stdio::null())
                .status();
        }
        let _ = std::fs::remove_dir_all(&run_dir);
        let bin = wafleet_bin(common)?;
        let mut cluster = Cluster {
            script,
            run_dir,
            base_port: common.base_port,
            topology,
            link,
            replaced_while_linking: AtomicU64::new(0),
            test,
            started: Vec::new(),
        };
        let settings = &cluster.test.settings;
        let database = settings
            .database_url
            .as_ref()
            .context("database URL")?
            .expose()
            .to_owned();
        let redis = settings.redis_url.as_ref().context("Redis URL")?.expose().to_owned();
        let mut command = cluster.command("start");
        command
            .args(["--bin".as_ref(), bin.as_os_str()])
            .args(["--database-url", &database, "--redis-url", &redis, "--sim"])
            .args(["--base-port", &common.base_port.to_string()])
            .args(["--apis", &topology.apis.to_string()])
            .args(["--workers", &topology.workers.to_string()])
            .args(["--schedulers", &topology.schedulers.to_string()])
            .env("QUEUE_NAMESPACE", &settings.queue_namespace)
            .env(
                "WA_KEYS_SECRET",
                settings.wa_keys_secret.as_ref().context("keys secret")?.expose(),
            )
            // `WAFLEET_BENCH_RUST_LOG` asks the processes for more, to follow a run in their logs.
            .env(
                "RUST_LOG",
                std::env::var("WAFLEET_BENCH_RUST_LOG").unwrap_or_else(|_| "warn".into()),
            )
            // With RUST_BACKTRACE set, every error value (whatsapp-rust makes some at each login) captures
            // a backtrace, and printing one loads the binary's debug info: hundreds of MiB that
            // would read as memory per session. Panics keep their backtraces.
            .env("RUST_LIB_BACKTRACE", "0");
        if link == Link::Wa {
            command.arg("--waweb").env("WAFLEET_SIM_QR_MAX_CODES", QR_MAX_CODES);
        }
        for (key, value) in env {
            command.env(key, value);
        }
        eprintln!(
            "[bench] starting the cluster ({topology:?}, {link:?} link, logs in {})",
            cluster.run_dir.display()
        );
        let status = command.stdout(std::process::Stdio::null()).status()?;
        if !status.success() {
            bail!(
                "infra/local-cluster start failed (logs in {})",
                cluster.run_dir.display()
            );
        }
        let names = std::fs::read_dir(cluster.run_dir.join("pids"))?;
        for entry in names.flatten() {
            if let Ok(pid) = std::fs::read_to_string(entry.path()) {
                cluster.started.push((pid.trim().to_owned(), bin.clone()));
            }
        }
        Ok(cluster)
    }

    fn command(&self, verb: &str) -> Command {
        let mut command = Command::new(&self.script);
        command.arg("--run-dir").arg(&self.run_dir).arg(verb);
        command
    }

    /// Replaced logins the checks do not count.
    pub fn replaced_while_linking(&self) -> u64 {
        self.replaced_while_linking.load(Ordering::Relaxed)
    }

    /// Leaves `replaced` more replaced logins out of the checks.
    pub fn forgive_replaced(&self, replaced: u64) {
        self.replaced_while_linking.fetch_add(replaced, Ordering::Relaxed);
    }

    /// The run's database.
    pub fn db(&self) -> &Db {
        &self.test.db
    }

    /// The key the cluster's workers seal key material with (its secret is passed to them).
    pub fn keys(&self) -> &wafleet_core::keys::KeyRing {
        &self.test.keys
    }

    /// Port of the `n`-th (from 1) process of a role, in the script's order.
    fn port(&self, before: u16, n: u16) -> u16 {
        self.base_port + before + n - 1
    }

    /// Port of api `n` (from 1).
    pub fn api_port(&self, n: u16) -> u16 {
        self.port(0, n)
    }

    /// Port of worker `n` (from 1).
    pub fn worker_port(&self, n: u16) -> u16 {
        self.port(self.topology.apis, n)
    }

    fn sim_port(&self) -> u16 {
        let t = self.topology;
        self.base_port + t.apis + t.workers + t.schedulers
    }

    /// The simulator's control API.
    pub fn sim(&self) -> ControlClient {
        ControlClient::new(format!("http://127.0.0.1:{}/control", self.sim_port()))
    }

    /// The simulator's device WebSocket.
    pub fn sim_ws_url(&self) -> String {
        format!("ws://127.0.0.1:{}/ws", self.sim_port())
    }

    /// The WhatsApp Web front end's WebSocket (with `--link wa`; `infra/local-cluster` puts it on
    /// the port after the simulator's).
    pub fn waweb_url(&self) -> String {
        format!("ws://127.0.0.1:{}/ws/chat", self.sim_port() + 1)
    }

    /// Pid of a process by its script name (`worker-1`, `sim`).
    pub fn pid(&self, name: &str) -> anyhow::Result<String> {
        let file = self.run_dir.join("pids").join(format!("{name}.pid"));
        Ok(std::fs::read_to_string(&file)
            .with_context(|| format!("reading {}", file.display()))?
            .trim()
            .to_owned())
    }

    /// Stops every process (SIGTERM, drain) and keeps the database, for a ceiling measured after.
    pub fn stop_processes(&self) {
        eprintln!("[bench] stopping the cluster");
        let _ = self.command("stop").stdout(std::process::Stdio::null()).status();
        // The script kills what does not drain in time; this is the last resort if it could not.
        for (pid, bin) in &self.started {
            let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
            if String::from_utf8_lossy(&cmdline).contains(&*bin.to_string_lossy()) {
                eprintln!("[bench] process {pid} outlived the cluster's stop; killing it");
                let _ = Command::new("kill").args(["-KILL", pid]).status();
            }
        }
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        self.stop_processes();
    }
}

/// A metric of a process's `/metrics`, summed over its series, and the labels of its first series.
pub async fn metric(port: u16, name: &str) -> anyhow::Result<(f64, String)> {
    let text = reqwest::get(format!("http://127.0.0.1:{port}/metrics"))
        .await
        .context("reading /metrics")?
        .text()
        .await?;
    let (mut sum, mut labels) = (0.0, None);
    for line in text.lines().filter(|l| !l.starts_with('#')) {
        let Some((series, value)) = line.rsplit_once(' ') else {
            continue;
        };
        let (metric, series_labels) = series.split_once('{').unwrap_or((series, ""));
        if metric == name {
            sum += value.parse::<f64>().unwrap_or(0.0);
            labels.get_or_insert_with(|| series_labels.trim_end_matches('}').to_owned());
        }
    }
    Ok((sum, labels.unwrap_or_default()))
}
