//! API: latency and throughput of the chat list against a trivial route (the ceiling: `/health`,
//! which touches nothing), at 200 concurrent keep-alive connections to one `wafleet api` process.
//! The load generator runs in this process (one HTTP/1.1 connection per task), on the same cores.

use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, ensure};
use bytes::Bytes;
use http_body_util::{BodyExt, Empty};
use hyper::header::{AUTHORIZATION, HOST};
use hyper_util::rt::TokioIo;
use wafleet_core::auth;
use wafleet_core::db::NewUserRole;
use wafleet_core::types::{DeviceId, Email, Timestamp};

use crate::cluster::{Cluster, Topology};
use crate::report::{Row, quantile, thousands};
use crate::{Common, fleet};

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
    /// Messages stored in the database, over 100 devices (the data set's size).
    #[arg(long, default_value_t = 100_000)]
    pub messages: u64,
    /// `READ_CACHE_TTL_SECS` of the API process; 0 reads the database on every request.
    #[arg(long, default_value_t = 5)]
    pub read_cache_ttl: u64,
}

impl Default for Options {
    fn default() -> Self {
        <Options as clap::Parser>::parse_from(["api"])
    }
}

/// Latencies and failures of one route under load.
struct Load {
    /// Microseconds, sorted; requests after the warm-up only.
    latencies: Vec<u64>,
    /// Non-2xx answers.
    failures: u64,
    /// Seconds measured.
    secs: f64,
}

impl Load {
    fn rate(&self) -> f64 {
        self.latencies.len() as f64 / self.secs
    }

    fn ms(&self, q: f64) -> f64 {
        quantile(&self.latencies, q) as f64 / 1e3
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
    let cluster = Cluster::start(common, "api", topology, &env).await?;
    let (device, token) = data_set(&cluster, &o).await?;
    let port = cluster.api_port(1);
    let chats = format!("/api/devices/{}/chats", device.0);
    let trivial = run_load(port, "/health", None, &o).await?;
    let listed = run_load(port, &chats, Some(format!("Bearer {token}")), &o).await?;
    for (load, path) in [(&trivial, "/health"), (&listed, chats.as_str())] {
        ensure!(load.failures == 0, "{} requests to {path} failed", load.failures);
        ensure!(!load.latencies.is_empty(), "no request to {path} completed");
    }
    let command = format!(
        "wafleet-bench api --connections {} --secs {} --chats {} --messages {} --read-cache-ttl {}",
        o.connections, o.secs, o.chats, o.messages, o.read_cache_ttl
    );
    let cache = match o.read_cache_ttl {
        0 => "read cache off".to_owned(),
        ttl => format!("read cache {ttl} s"),
    };
    let what = format!(
        "GET /api/devices/{{id}}/chats ({} chats, {} messages), {} connections, {cache}",
        thousands(o.chats),
        thousands(o.messages),
        o.connections
    );
    Ok(vec![
        Row::new(
            format!("api: req/s, {what}"),
            format!("{} req/s", thousands(listed.rate() as u64)),
            format!("{} req/s (GET /health)", thousands(trivial.rate() as u64)),
        )
        .ratio(listed.rate() / trivial.rate())
        .command(&command),
        Row::new(
            format!("api: latency, {what}"),
            format!("p50 {:.1} ms, p99 {:.1} ms", listed.ms(0.5), listed.ms(0.99)),
            format!(
                "p50 {:.1} ms, p99 {:.1} ms (GET /health)",
                trivial.ms(0.5),
                trivial.ms(0.99)
            ),
        )
        .ratio(listed.ms(0.99) / trivial.ms(0.99).max(0.001))
        .command(&command),
    ])
}

/// A user with an API token and 100 devices; the first gets `chats` chats, and `messages`
/// messages are spread over all of them. Returns the first device and the token.
async fn data_set(cluster: &Cluster, o: &Options) -> anyhow::Result<(DeviceId, String)> {
    let db = cluster.db();
    let started = Instant::now();
    let email = Email::parse("api-bench@example.com").map_err(anyhow::Error::msg)?;
    let user = db.create_user(&email, "unused", NewUserRole::FirstBecomesAdmin).await?;
    let token = format!("{}{}", auth::API_TOKEN_PREFIX, auth::random_secret());
    db.create_api_token(user.id, "bench", &auth::digest(&token), "bench")
        .await?;
    let mut devices = Vec::new();
    for n in 0..100 {
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
    sqlx::query(
        "INSERT INTO messages (device_id, id, chat_jid, sender_jid, from_me, kind, body, sent_at, status, \
         received_at) SELECT ($1::BIGINT[])[1 + n % 100], 'API' || n, '60190' || lpad((n % $2)::TEXT, 7, '0') || \
         '@s.whatsapp.net', '60190' || lpad((n % $2)::TEXT, 7, '0') || '@s.whatsapp.net', false, 'text', \
         'Message ' || n, $3 - n, NULL, $3 - n FROM generate_series(1, $4) AS n",
    )
    .bind(&ids)
    .bind(o.chats.max(1) as i64)
    .bind(now)
    .bind(o.messages as i64)
    .execute(pool)
    .await?;
    sqlx::query("ANALYZE").execute(pool).await?;
    eprintln!("[bench] api: data set written in {:.1?}", started.elapsed());
    Ok((devices[0], token))
}

/// `connections` keep-alive connections asking for `path` in a loop for `secs` (the first
/// second, or a fifth of a short run, is warm-up and not counted).
async fn run_load(port: u16, path: &str, authorization: Option<String>, o: &Options) -> anyhow::Result<Load> {
    let warm = Duration::from_secs_f64((o.secs as f64 / 5.0).min(1.0));
    let started = Instant::now();
    let (measure_from, until) = (started + warm, started + Duration::from_secs(o.secs));
    let path: Arc<str> = path.into();
    let authorization: Option<Arc<str>> = authorization.map(Into::into);
    let tasks: Vec<_> = (0..o.connections)
        .map(|_| {
            let (path, authorization) = (path.clone(), authorization.clone());
            tokio::spawn(async move { connection(port, &path, authorization.as_deref(), measure_from, until).await })
        })
        .collect();
    let mut load = Load {
        latencies: Vec::new(),
        failures: 0,
        secs: (until - measure_from).as_secs_f64(),
    };
    for task in tasks {
        let (latencies, failures) = task.await??;
        load.latencies.extend(latencies);
        load.failures += failures;
    }
    load.latencies.sort_unstable();
    eprintln!(
        "[bench] api: {path}: {:.0} req/s, p99 {:.1} ms",
        load.rate(),
        load.ms(0.99)
    );
    Ok(load)
}

/// One connection's request loop; returns its latencies (µs) after `measure_from` and failures.
async fn connection(
    port: u16,
    path: &str,
    authorization: Option<&str>,
    measure_from: Instant,
    until: Instant,
) -> anyhow::Result<(Vec<u64>, u64)> {
    let stream = tokio::net::TcpStream::connect(("127.0.0.1", port))
        .await
        .context("connecting to the API")?;
    stream.set_nodelay(true)?;
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream)).await?;
    tokio::spawn(conn);
    let (mut latencies, mut failures) = (Vec::new(), 0);
    while Instant::now() < until {
        let mut request = hyper::Request::get(path).header(HOST, "127.0.0.1");
        if let Some(value) = authorization {
            request = request.header(AUTHORIZATION, value);
        }
        let request = request.body(Empty::<Bytes>::new())?;
        sender.ready().await?;
        let sent = Instant::now();
        let response = sender.send_request(request).await?;
        let ok = response.status().is_success();
        response.into_body().collect().await?;
        if sent >= measure_from {
            latencies.push(sent.elapsed().as_micros() as u64);
            failures += u64::from(!ok);
        }
    }
    Ok((latencies, failures))
}
