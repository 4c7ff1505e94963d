//! Analytics: many sends (with receipts and replies as the analytics count them) generated
//! straight into PostgreSQL, the roll-up timed (the first full recount, then one minute's new
//! sends), then `GET /api/analytics/{days}` and `/api/analytics/custom` under concurrent load,
//! with the read cache on (the cluster's API process) and off (a second API process with
//! `READ_CACHE_TTL_SECS=0`). Every answer is checked against counts taken directly from the rows.
//! The ceiling is `GET /health` on the same server at the same concurrency.

mod data;

use std::time::{Duration, Instant};

use anyhow::{Context, ensure};
use wafleet_core::types::Timestamp;

use crate::client::ApiClient;
use crate::cluster::{Cluster, Link, Topology, wafleet_bin};
use crate::report::{Row, thousands};
use crate::{Common, api, load};

/// Settings of the analytics scenario.
#[derive(clap::Parser, Clone, Debug)]
pub struct Options {
    /// Sends in the database (outbound messages), spread over the devices and the days.
    #[arg(long, default_value_t = 10_000_000)]
    pub messages: u64,
    /// Devices of the user.
    #[arg(long, default_value_t = 100)]
    pub devices: u64,
    /// Days the sends are spread over, up to today; `GET /api/analytics/{days}` asks for them all.
    #[arg(long, default_value_t = 90)]
    pub days: u64,
    /// Concurrent connections.
    #[arg(long, default_value_t = 200)]
    pub connections: usize,
    /// Seconds of load per route and server.
    #[arg(long, default_value_t = 10)]
    pub secs: u64,
}

impl Default for Options {
    fn default() -> Self {
        <Options as clap::Parser>::parse_from(["analytics"])
    }
}

impl Options {
    fn smoke() -> Options {
        Options {
            messages: 20_000,
            devices: 10,
            days: 30,
            connections: 20,
            secs: 2,
        }
    }

    fn command(&self) -> String {
        format!(
            "wafleet-bench analytics --messages {} --devices {} --days {} --connections {} --secs {}",
            self.messages, self.devices, self.days, self.connections, self.secs
        )
    }
}

/// Runs the scenario; fails when an answer differs from the counts taken from the rows.
pub async fn run(common: &Common, options: &Options) -> anyhow::Result<Vec<Row>> {
    let o = if common.smoke {
        Options::smoke()
    } else {
        options.clone()
    };
    // No scheduler: the roll-up is run and timed here, exactly as the scheduler's job runs it.
    let topology = Topology {
        apis: 1,
        workers: 0,
        schedulers: 0,
    };
    let env = [("READ_CACHE_TTL_SECS", "5".to_owned())];
    let cluster = Cluster::start(common, "analytics", topology, Link::Sim, &env).await?;
    let db = cluster.db();
    let user = data::generate(db, &o).await?;
    let (marked, marking) = data::mark_replies(db).await?;
    eprintln!("[bench] analytics: {marked} replied sends marked in {marking:.2} s (migration 0013's statement)");

    let started = Instant::now();
    let rows = db.refresh_analytics().await.context("first roll-up")?;
    let full = started.elapsed().as_secs_f64();
    let minute = data::one_minute(db, &o, user).await?;
    let started = Instant::now();
    db.refresh_analytics().await.context("incremental roll-up")?;
    let incremental = started.elapsed().as_secs_f64();
    eprintln!("[bench] analytics: roll-up {full:.2} s for {rows} rows, then {incremental:.3} s for {minute} new sends");

    let uncached = UncachedApi::start(common, &cluster, common.base_port + 90).await?;
    let cached_client = ApiClient::new(db, user, cluster.api_port(1)).await?;
    let uncached_client = ApiClient::new(db, user, uncached.port).await?;
    let today = Timestamp::now().to_datetime().date_naive();
    let custom = (
        today - chrono::Days::new(o.days / 2),
        today - chrono::Days::new(o.days / 4),
    );
    let paths = [
        (
            format!("GET /api/analytics/{}", o.days),
            format!("/api/analytics/{}", o.days),
        ),
        (
            "GET /api/analytics/custom".to_owned(),
            format!("/api/analytics/custom?start={}&end={}", custom.0, custom.1),
        ),
    ];
    let ranges = [(today - chrono::Days::new(o.days - 1), today), custom];
    for ((_, path), (first, last)) in paths.iter().zip(ranges) {
        let expected = data::direct_counts(db, user, first, last).await?;
        for client in [&cached_client, &uncached_client] {
            let answer: serde_json::Value = client.get(path).await?;
            check_answer(&answer, &expected, path)?;
        }
    }
    eprintln!("[bench] analytics: answers equal the counts taken from the rows");

    let count = data::count_time(db, user).await?.max(0.001);
    let command = o.command();
    let size = format!("{} sends on {} devices", thousands(o.messages), o.devices);
    let mut out = vec![
        Row::new(
            format!("analytics: first roll-up ({size}, {} days)", o.days),
            format!("{full:.2} s ({} device-days)", thousands(rows)),
            format!("{count:.2} s to count the same rows directly"),
        )
        .ratio(full / count)
        .command(&command),
        Row::new(
            format!("analytics: marking replied sends of stored data ({size}; migration 0013)"),
            format!("{marking:.2} s ({} sends marked)", thousands(marked)),
            format!("{count:.2} s to count the same rows directly"),
        )
        .ratio(marking / count)
        .command(&command),
        Row::new(
            format!(
                "analytics: incremental roll-up ({} new sends, {size})",
                thousands(minute)
            ),
            format!("{:.0} ms", incremental * 1e3),
            "60 s (the roll-up's period)",
        )
        .ratio(incremental / 60.0)
        .command(&command),
    ];
    for (port, client, cache) in [
        (cluster.api_port(1), &cached_client, "read cache 5 s"),
        (uncached.port, &uncached_client, "read cache off"),
    ] {
        let trivial = load::run(port, "/health", None, o.connections, o.secs).await?;
        ensure!(
            trivial.failures == 0 && !trivial.latencies.is_empty(),
            "GET /health failed under load"
        );
        for (name, path) in &paths {
            let route = load::run(port, path, Some(&client.authorization), o.connections, o.secs).await?;
            ensure!(route.failures == 0, "{} requests to {path} failed", route.failures);
            ensure!(!route.latencies.is_empty(), "no request to {path} completed");
            let what = format!("{name} ({size}), {} connections, {cache}", o.connections);
            out.extend(api::rows_of("analytics", &what, &route, &trivial, &command));
        }
    }
    drop(uncached);
    Ok(out)
}

/// The totals of an analytics answer equal `expected` (sent, delivered, read, replied, failed).
fn check_answer(answer: &serde_json::Value, expected: &[i64; 5], path: &str) -> anyhow::Result<()> {
    let totals = &answer["totals"];
    let got: Vec<i64> = ["sent", "delivered", "read", "replied", "failed"]
        .iter()
        .map(|k| totals[*k].as_i64().unwrap_or(-1))
        .collect();
    ensure!(
        got == expected,
        "{path} answered (sent, delivered, read, replied, failed) = {got:?}, the rows say {expected:?}"
    );
    Ok(())
}

/// A second `wafleet api` process on the same database with the read cache off; killed when
/// dropped.
struct UncachedApi {
    port: u16,
    _child: tokio::process::Child,
}

impl UncachedApi {
    async fn start(common: &Common, cluster: &Cluster, port: u16) -> anyhow::Result<UncachedApi> {
        let settings = &cluster.test.settings;
        let database = settings.database_url.as_ref().context("database URL")?.expose();
        let redis = settings.redis_url.as_ref().context("Redis URL")?.expose();
        let child = tokio::process::Command::new(wafleet_bin(common)?)
            .arg("api")
            .env("HOST", "127.0.0.1")
            .env("PORT", port.to_string())
            .env("DATABASE_URL", database)
            .env("REDIS_URL", redis)
            .env("QUEUE_NAMESPACE", &settings.queue_namespace)
            .env("READ_CACHE_TTL_SECS", "0")
            .env("RUST_LOG", "warn")
            .stdout(std::process::Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .context("starting a second API process")?;
        let started = Instant::now();
        while reqwest::get(format!("http://127.0.0.1:{port}/ready")).await.is_err() {
            ensure!(
                started.elapsed() < Duration::from_secs(60),
                "the second API process did not start"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        Ok(UncachedApi { port, _child: child })
    }
}
