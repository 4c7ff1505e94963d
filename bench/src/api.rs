//! API: latency and throughput of the chat list, a chat's messages page and the analytics
//! against a trivial route (the ceiling: `/health`, which touches nothing), at 200 concurrent
//! keep-alive connections to one `wafleet api` process. The load generator runs in this process
//! (one HTTP/1.1 connection per task), on the same cores.

use std::time::Instant;

use anyhow::ensure;
use wafleet_core::db::NewUserRole;
use wafleet_core::types::{DeviceId, Email, Timestamp};

use crate::client::ApiClient;
use crate::cluster::{Cluster, Link, Topology};
use crate::report::{Row, thousands};
use crate::{Common, dataset, fleet, load};

/// Settings of the API scenario.
#[derive(clap::Parser, Clone, Debug)]
pub struct Options {
    /// Concurrent connections.
    #[arg(long, default_value_t = 200)]
    pub connections: usize,
    /// Seconds of load per route.
    #[arg(long, default_value_t = 10)]
    pub secs: u64,
    /// Chats of the device whose list is read (the list shows the latest 100).
    #[arg(long, default_value_t = 1_000)]
    pub chats: u64,
    /// Messages stored in the database, over all devices (the data set's size).
    #[arg(long, default_value_t = 100_000)]
    pub messages: u64,
    /// Devices of the user, the messages spread over them.
    #[arg(long, default_value_t = 100)]
    pub devices: u64,
    /// `READ_CACHE_TTL_SECS` of the API process; 0 reads the database on every request.
    #[arg(long, default_value_t = 5)]
    pub read_cache_ttl: u64,
}

impl Default for Options {
    fn default() -> Self {
        <Options as clap::Parser>::parse_from(["api"])
    }
}

/// Runs the scenario; fails on any non-2xx answer.
pub async fn run(common: &Common, options: &Options) -> anyhow::Result<Vec<Row>> {
    let o = if common.smoke {
        Options {
            connections: 20,
            secs: 2,
            chats: 50,
            messages: 1_000,
            devices: 10,
            read_cache_ttl: options.read_cache_ttl,
        }
    } else {
        options.clone()
    };
    let topology = Topology {
        apis: 1,
        workers: 0,
        schedulers: 0,
    };
    let env = [("READ_CACHE_TTL_SECS", o.read_cache_ttl.to_string())];
    let cluster = Cluster::start(common, "api", topology, Link::Sim, &env).await?;
    let (device, api) = data_set(&cluster, &o).await?;
    let port = cluster.api_port(1);
    let command = format!(
        "wafleet-bench api --connections {} --secs {} --chats {} --messages {} --devices {} --read-cache-ttl {}",
        o.connections, o.secs, o.chats, o.messages, o.devices, o.read_cache_ttl
    );
    let cache = match o.read_cache_ttl {
        0 => "read cache off".to_owned(),
        ttl => format!("read cache {ttl} s"),
    };
    let size = format!(
        "{} messages on {} devices, {} connections, {cache}",
        thousands(o.messages),
        thousands(o.devices),
        o.connections
    );
    let trivial = load::run(port, "/health", None, o.connections, o.secs).await?;
    ensure!(
        trivial.failures == 0 && !trivial.latencies.is_empty(),
        "GET /health failed under load"
    );
    let routes = [
        (
            format!("GET /api/devices/{{id}}/chats ({} chats)", thousands(o.chats)),
            format!("/api/devices/{}/chats", device.0),
        ),
        (
            "GET /api/devices/{id}/messages/{chat}".to_owned(),
            format!("/api/devices/{}/messages/{}%40s.whatsapp.net", device.0, jid(1)),
        ),
        ("GET /api/analytics/30".to_owned(), "/api/analytics/30".to_owned()),
    ];
    let mut rows = Vec::new();
    for (name, path) in routes {
        let listed = load::run(port, &path, Some(&api.authorization), o.connections, o.secs).await?;
        ensure!(listed.failures == 0, "{} requests to {path} failed", listed.failures);
        ensure!(!listed.latencies.is_empty(), "no request to {path} completed");
        rows.extend(rows_of("api", &format!("{name}, {size}"), &listed, &trivial, &command));
    }
    Ok(rows)
}

/// The req/s and latency rows of one route beside `/health`'s, named after `scenario`.
pub fn rows_of(scenario: &str, what: &str, route: &load::Load, trivial: &load::Load, command: &str) -> [Row; 2] {
    [
        Row::new(
            format!("{scenario}: req/s, {what}"),
            format!("{} req/s", thousands(route.rate() as u64)),
            format!("{} req/s (GET /health)", thousands(trivial.rate() as u64)),
        )
        .ratio(route.rate() / trivial.rate())
        .command(command),
        Row::new(
            format!("{scenario}: latency, {what}"),
            format!("p50 {:.1} ms, p99 {:.1} ms", route.ms(0.5), route.ms(0.99)),
            format!(
                "p50 {:.1} ms, p99 {:.1} ms (GET /health)",
                trivial.ms(0.5),
                trivial.ms(0.99)
            ),
        )
        .ratio(route.ms(0.99) / trivial.ms(0.99).max(0.001))
        .command(command),
    ]
}

/// The number of contact `n`, as chats and messages name it.
fn jid(n: u64) -> String {
    format!("60190{n:07}")
}

/// A user with an API token and `devices` devices; the first gets `chats` chats, `messages`
/// messages are spread over all of them (every chat of the first device gets its share), and
/// each device has 30 days of analytics roll-ups (what the scheduler writes from its sends).
/// Returns the first device and the user's client.
async fn data_set(cluster: &Cluster, o: &Options) -> anyhow::Result<(DeviceId, ApiClient)> {
    let db = cluster.db();
    let started = Instant::now();
    let email = Email::parse("api-bench@example.com").map_err(anyhow::Error::msg)?;
    let user = db.create_user(&email, "unused", NewUserRole::FirstBecomesAdmin).await?;
    let api = ApiClient::new(db, user.id, cluster.api_port(1)).await?;
    let mut devices = Vec::new();
    for n in 0..o.devices {
        devices.push(db.create_device(user.id, &format!("api {n}"), None).await?.id);
    }
    let pool = fleet::postgres(db);
    let now = Timestamp::now().0;
    sqlx::query(
        "INSERT INTO chats (device_id, jid, name, last_message_at, last_message_preview, unread_count) \
         SELECT $1, '60190' || lpad(n::TEXT, 7, '0') || '@s.whatsapp.net', 'Contact ' || n, $2 - n * 1000, \
         'Last message of chat ' || n, n % 7 FROM generate_series(1, $3) AS n",
    )
    .bind(devices[0])
    .bind(now)
    .bind(o.chats as i64)
    .execute(pool)
    .await?;
    let ids: Vec<i64> = devices.iter().map(|d| d.0).collect();
    // Message n goes to device n % devices, in its chat 1 + (n / devices) % chats.
    let insert = sqlx::query(
        "INSERT INTO messages (device_id, id, chat_jid, sender_jid, from_me, kind, body, sent_at, status, \
         received_at) SELECT ($1::BIGINT[])[1 + n % $5], 'API' || n, c, c, false, 'text', 'Message ' || n, $3 - n, \
         NULL, $3 - n FROM generate_series(0, $4 - 1) AS n, \
         LATERAL (SELECT '60190' || lpad((1 + (n / $5) % $2)::TEXT, 7, '0') || '@s.whatsapp.net' AS c) AS chat",
    )
    .bind(ids.clone())
    .bind(o.chats.max(1) as i64)
    .bind(now)
    .bind(o.messages as i64)
    .bind(o.devices as i64);
    dataset::fill(pool, "messages", o.messages > dataset::REBUILD_ABOVE, insert).await?;
    let today = now - now.rem_euclid(86_400_000);
    sqlx::query(
        "INSERT INTO analytics_daily (device_id, day, sent, delivered, read, replied, failed, updated_at) \
         SELECT d, $2 - k::BIGINT * 86400000, 100, 90, 60, 20, 3, $2 FROM unnest($1::BIGINT[]) AS d, generate_series(0, 29) AS k",
    )
    .bind(&ids)
    .bind(today)
    .execute(pool)
    .await?;
    sqlx::query("ANALYZE").execute(pool).await?;
    eprintln!("[bench] api: data set written in {:.1?}", started.elapsed());
    Ok((devices[0], api))
}
