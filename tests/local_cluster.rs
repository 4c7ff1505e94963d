//! The scale-out topology as an operator runs it without containers: `infra/local-cluster` starts
//! `wafleet migrate`, 2 api, 3 worker and 2 scheduler processes and the network simulator on
//! loopback, against a PostgreSQL database of this test's own. Devices linked through the simulator
//! stay held through a rolling restart of every worker: sampled every 100 ms, no device goes
//! without a live lease for as long as the lease time. Runs against the simulator only.

mod support;

use std::collections::HashMap;
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use reqwest::StatusCode;
use serde_json::{Value, json};
use support::{link_simulated_devices, postgres, wait_all_held};
use wafleet_core::Db;
use wafleet_core::testing::{Backend, TestDb};
use wafleet_core::types::Timestamp;
use wafleet_sim::ControlClient;

const LEASE_TTL_SECS: u64 = 5;
const DEVICES: usize = 60;
/// Processes before the simulator's port: 2 api, 3 workers, 2 schedulers.
const SIM_PORT_OFFSET: u16 = 7;

/// A cluster started by `infra/local-cluster`, stopped when dropped (also when the test fails).
struct Cluster {
    run_dir: tempfile::TempDir,
    base_port: u16,
    running: bool,
}

fn script() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("infra/local-cluster")
}

/// `infra/local-cluster --run-dir … <args>`, with only the settings this test chooses.
fn local_cluster(run_dir: &Path, args: &[&str], env: &[(&str, &str)]) -> Output {
    // Queues of this cluster only, even when other test runs share the Redis database.
    let queue_namespace = format!(
        "wafleet-lc-{}",
        run_dir
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default()
    );
    Command::new(script())
        .arg("--run-dir")
        .arg(run_dir)
        .args(args)
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .env("LEASE_TTL_SECS", LEASE_TTL_SECS.to_string())
        .env("SHUTDOWN_TIMEOUT_SECS", "10")
        .env("DATABASE_MAX_CONNECTIONS", "4")
        .env("RUST_LOG", "info")
        .env("QUEUE_NAMESPACE", &queue_namespace)
        .envs(env.iter().copied())
        .output()
        .expect("run infra/local-cluster")
}

fn assert_ran(what: &str, output: &Output) {
    assert!(
        output.status.success(),
        "infra/local-cluster {what} failed ({}):\n{}{}",
        output.status,
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
}

/// A run of consecutive free loopback ports below the ephemeral range, so outgoing connections
/// cannot take one between this check and the processes binding them.
fn free_port_range(len: u16) -> u16 {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.subsec_nanos());
    let seed = u64::from(std::process::id()) ^ u64::from(nanos);
    for attempt in 0..200u64 {
        let base = 20_000 + ((seed + attempt * 7919) % 10_000) as u16;
        let listeners: Vec<_> = (base..base + len)
            .map_while(|port| TcpListener::bind(("127.0.0.1", port)).ok())
            .collect();
        if listeners.len() == usize::from(len) {
            return base;
        }
    }
    panic!("no {len} consecutive free ports between 20000 and 30000");
}

impl Cluster {
    /// `keys_secret`: the key the workers open the devices' credentials with.
    fn start(database_url: &str, redis_url: &str, keys_secret: &str) -> Cluster {
        let run_dir = tempfile::tempdir().unwrap();
        let base_port = free_port_range(SIM_PORT_OFFSET + 1);
        let binary = env!("CARGO_BIN_EXE_wafleet");
        let port = base_port.to_string();
        let args = [
            "--bin",
            binary,
            "--database-url",
            database_url,
            "--redis-url",
            redis_url,
            "--base-port",
            &port,
            "--sim",
            "start",
        ];
        let output = local_cluster(run_dir.path(), &args, &[("WA_KEYS_SECRET", keys_secret)]);
        let cluster = Cluster {
            run_dir,
            base_port,
            running: true,
        };
        assert_ran("start", &output);
        cluster
    }

    fn run(&self, args: &[&str]) -> Output {
        local_cluster(self.run_dir.path(), args, &[])
    }

    fn api(&self, i: u16) -> String {
        format!("http://127.0.0.1:{}", self.base_port + i)
    }

    fn sim_port(&self) -> u16 {
        self.base_port + SIM_PORT_OFFSET
    }

    /// The pid of each worker process, by name.
    fn worker_pids(&self) -> HashMap<String, String> {
        (1..=3)
            .map(|i| {
                let name = format!("worker-{i}");
                let pid = std::fs::read_to_string(self.run_dir.path().join(format!("pids/{name}.pid")))
                    .unwrap_or_default()
                    .trim()
                    .to_owned();
                (name, pid)
            })
            .collect()
    }

    fn stop(&mut self) -> Output {
        self.running = false;
        self.run(&["stop"])
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        if self.running {
            let output = self.stop();
            if !output.status.success() {
                eprintln!(
                    "stopping the cluster failed: {}",
                    String::from_utf8_lossy(&output.stderr)
                );
            }
        }
    }
}

/// What the lease sampler saw.
#[derive(Debug, Default)]
struct Gaps {
    samples: usize,
    /// Longest time one device went without a live lease, and which device.
    longest: Duration,
    longest_device: i64,
    /// Devices that went without a lease at least once.
    devices_unheld: usize,
    /// Numbers the simulator saw connected from two sessions at once, in any sample.
    connected_twice: Vec<String>,
}

/// Samples `device_leases` every 100 ms until `stop`: for each device, how long it went without a
/// live lease (no holder, or expired), from the first sample that saw it unheld to the first that
/// saw it held again. Each sample also asks the simulator whether any number is connected twice.
async fn sample_leases(db: Db, sim: ControlClient, stop: Arc<AtomicBool>) -> Gaps {
    let mut gaps = Gaps::default();
    let mut unheld_since: HashMap<i64, Instant> = HashMap::new();
    let mut ever_unheld = std::collections::HashSet::new();
    let mut tick = tokio::time::interval(Duration::from_millis(100));
    while !stop.load(Ordering::Relaxed) {
        tick.tick().await;
        let rows: Vec<(i64, bool)> = sqlx::query_as(
            "SELECT device_id, holder IS NOT NULL AND expires_at > $1 FROM device_leases ORDER BY device_id",
        )
        .bind(Timestamp::now())
        .fetch_all(postgres(&db))
        .await
        .unwrap();
        let now = Instant::now();
        gaps.samples += 1;
        let state = sim.state().await.unwrap();
        for account in state.accounts.iter().filter(|a| a.connected > 1) {
            if !gaps.connected_twice.contains(&account.phone) {
                gaps.connected_twice.push(account.phone.clone());
            }
        }
        for (device, held) in rows {
            if held {
                if let Some(since) = unheld_since.remove(&device) {
                    let gap = now - since;
                    if gap > gaps.longest {
                        gaps.longest = gap;
                        gaps.longest_device = device;
                    }
                }
            } else {
                unheld_since.entry(device).or_insert(now);
                ever_unheld.insert(device);
            }
        }
    }
    // Devices still unheld at the end count up to now.
    let now = Instant::now();
    for (device, since) in unheld_since {
        if now - since > gaps.longest {
            gaps.longest = now - since;
            gaps.longest_device = device;
        }
    }
    gaps.devices_unheld = ever_unheld.len();
    gaps
}

/// The Redis of the tests, database 9: apart from an operator's local cluster (database 1).
fn redis_url() -> String {
    let base = std::env::var("WAFLEET_TEST_REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379".into());
    let mut url = url::Url::parse(&base).expect("WAFLEET_TEST_REDIS_URL is a URL");
    url.set_path("/9");
    url.to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rolling_restart_of_workers_keeps_every_device_held() {
    let test = TestDb::new(Backend::Postgres).await;
    let db = &test.db;
    let url = test.settings.database_url.as_ref().unwrap().expose().to_owned();
    let secret = test.settings.wa_keys_secret.as_ref().unwrap().expose().to_owned();
    let mut cluster = Cluster::start(&url, &redis_url(), &secret);
    let control = ControlClient::new(format!("http://127.0.0.1:{}/control", cluster.sim_port()));

    // An operator registers through one api process; the first account becomes the administrator.
    let client = reqwest::Client::builder().cookie_store(true).build().unwrap();
    let creds = json!({"email": "ops@example.com", "password": "correct horse battery"});
    let registered = client
        .post(format!("{}/api/register", cluster.api(0)))
        .json(&creds)
        .send()
        .await
        .unwrap();
    assert_eq!(registered.status(), StatusCode::CREATED);

    let ws_url = format!("ws://127.0.0.1:{}/ws", cluster.sim_port());
    link_simulated_devices(db, &control, &ws_url, DEVICES, &test.keys, |_| "ops".into()).await;
    let took = wait_all_held(db, &control, DEVICES, Duration::from_secs(60)).await;
    println!("{DEVICES} devices held and online across 3 worker processes in {took:?}");

    // The other api process knows the session (state lives in the database) and serves the
    // dashboard and the devices, all online.
    let dashboard = client
        .get(format!("{}/dashboard", cluster.api(1)))
        .send()
        .await
        .unwrap();
    assert_eq!(dashboard.status(), StatusCode::OK);
    let page = dashboard.text().await.unwrap();
    assert!(page.contains("<title>Dashboard · wafleet</title>"), "{page}");
    assert!(page.contains("ops@example.com"));
    let devices: Value = client
        .get(format!("{}/api/devices", cluster.api(1)))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let listed = devices["results"].as_array().expect("a list of devices");
    assert_eq!(listed.len(), DEVICES, "{devices}");
    assert!(listed.iter().all(|d| d["status"] == "online"), "{devices}");

    // Rolling restart while sampling the leases.
    let before = cluster.worker_pids();
    let stop = Arc::new(AtomicBool::new(false));
    let sampler = tokio::spawn(sample_leases(db.clone(), control.clone(), stop.clone()));
    let run_dir = cluster.run_dir.path().to_owned();
    let started = Instant::now();
    let restart = tokio::task::spawn_blocking(move || local_cluster(&run_dir, &["restart-workers"], &[]))
        .await
        .unwrap();
    assert_ran("restart-workers", &restart);
    let rolled = started.elapsed();
    let settled = wait_all_held(db, &control, DEVICES, Duration::from_secs(60)).await;
    stop.store(true, Ordering::Relaxed);
    let gaps = sampler.await.unwrap();

    let after = cluster.worker_pids();
    for (name, pid) in &before {
        assert!(
            !pid.is_empty() && after[name] != *pid,
            "{name} was restarted: {before:?} → {after:?}"
        );
    }
    println!(
        "rolling restart of 3 workers took {rolled:?} (+{settled:?} to settle); {} samples; {} of {DEVICES} devices \
         were unheld at some point; the longest a device went unheld: {:?} (device {}), lease TTL {LEASE_TTL_SECS} s",
        gaps.samples, gaps.devices_unheld, gaps.longest, gaps.longest_device
    );
    assert!(gaps.samples > 10, "the sampler ran through the restart: {gaps:?}");
    assert!(
        gaps.connected_twice.is_empty(),
        "numbers connected from two sessions at once: {:?}",
        gaps.connected_twice
    );
    assert!(
        gaps.longest < Duration::from_secs(LEASE_TTL_SECS),
        "a device went unheld for longer than the lease time: {gaps:?}"
    );

    let status = cluster.run(&["status"]);
    assert_ran("status", &status);
    let stopped = cluster.stop();
    assert_ran("stop", &stopped);
    let status = cluster.run(&["status"]);
    assert!(!status.status.success(), "status fails once stopped");
    assert_eq!(
        String::from_utf8_lossy(&status.stdout).matches("stopped").count(),
        8,
        "every process stopped:\n{}",
        String::from_utf8_lossy(&status.stdout)
    );
}
