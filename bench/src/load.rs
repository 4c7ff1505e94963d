//! An HTTP load generator in this process: keep-alive HTTP/1.1 connections (hyper), one task
//! each, asking for one path in a loop; on the same cores as the system under test.

use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use bytes::Bytes;
use http_body_util::{BodyExt, Empty};
use hyper::header::{AUTHORIZATION, HOST};
use hyper_util::rt::TokioIo;

use crate::report::quantile;

/// Latencies and failures of one route under load.
pub struct Load {
    /// Microseconds, sorted; requests after the warm-up only.
    pub latencies: Vec<u64>,
    /// Non-2xx answers.
    pub failures: u64,
    /// Seconds measured.
    pub secs: f64,
}

impl Load {
    /// Requests per second.
    pub fn rate(&self) -> f64 {
        self.latencies.len() as f64 / self.secs
    }

    /// Latency quantile `q`, in ms.
    pub fn ms(&self, q: f64) -> f64 {
        quantile(&self.latencies, q) as f64 / 1e3
    }
}

/// `connections` keep-alive connections asking for `path` in a loop for `secs` (the first
/// second, or a fifth of a short run, is warm-up and not counted).
pub async fn run(
    port: u16,
    path: &str,
    authorization: Option<&str>,
    connections: usize,
    secs: u64,
) -> anyhow::Result<Load> {
    let warm = Duration::from_secs_f64((secs as f64 / 5.0).min(1.0));
    let started = Instant::now();
    let (measure_from, until) = (started + warm, started + Duration::from_secs(secs));
    let path: Arc<str> = path.into();
    let authorization: Option<Arc<str>> = authorization.map(Into::into);
    let tasks: Vec<_> = (0..connections)
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
    eprintln!("[bench] {path}: {:.0} req/s, p99 {:.1} ms", load.rate(), load.ms(0.99));
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
