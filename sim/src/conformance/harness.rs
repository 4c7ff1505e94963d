//! [`SimHarness`]: the checks against [`SimLink`] and an in-process simulator.

use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use async_trait::async_trait;
use wafleet_core::Db;
use wafleet_core::keys::KeyRing;
use wafleet_core::link::Link;
use wafleet_core::types::DeviceId;

use super::{Harness, Phones};
use crate::{ControlClient, LinkOptions, SimConfig, SimHandle, SimLink};

/// An in-process simulator on 127.0.0.1 with test timings and links to it.
pub struct SimHarness {
    /// The running simulator.
    sim: SimHandle,
    /// Its control API.
    network: ControlClient,
    /// Credentials storage.
    db: Db,
    /// A random key sealing the credentials.
    keys: KeyRing,
    /// Link timings (fast reconnects).
    options: LinkOptions,
    /// A URL nothing listens on.
    dead_url: String,
}

impl SimHarness {
    /// Starts a simulator with [`SimConfig::for_tests`].
    pub async fn start(db: Db) -> anyhow::Result<SimHarness> {
        Self::with_config(db, SimConfig::for_tests()).await
    }

    /// Starts a simulator with `config`.
    pub async fn with_config(db: Db, config: SimConfig) -> anyhow::Result<SimHarness> {
        let sim = crate::start(config).await?;
        // A port that was free a moment ago and is closed now: connecting is refused.
        let probe = std::net::TcpListener::bind("127.0.0.1:0").context("finding a closed port")?;
        let dead_url = format!("ws://{}/ws", probe.local_addr().context("reading the probe's port")?);
        drop(probe);
        let options = LinkOptions {
            connect_timeout: Duration::from_secs(2),
            request_timeout: Duration::from_secs(5),
            backoff_initial: Duration::from_millis(50),
            backoff_max: Duration::from_millis(500),
            ..LinkOptions::default()
        };
        Ok(SimHarness {
            network: sim.control(),
            sim,
            db,
            keys: KeyRing::random(),
            options,
            dead_url,
        })
    }

    /// The simulator.
    pub fn sim(&self) -> &SimHandle {
        &self.sim
    }

    /// The simulator's control API.
    pub fn network(&self) -> &ControlClient {
        &self.network
    }
}

#[async_trait]
impl Harness for SimHarness {
    fn link(&self) -> Arc<dyn Link> {
        Arc::new(SimLink::with_options(
            self.sim.ws_url(),
            self.db.clone(),
            self.keys.clone(),
            self.options.clone(),
        ))
    }

    fn unreachable_link(&self) -> Arc<dyn Link> {
        Arc::new(SimLink::with_options(
            self.dead_url.clone(),
            self.db.clone(),
            self.keys.clone(),
            self.options.clone(),
        ))
    }

    fn db(&self) -> &Db {
        &self.db
    }

    fn phones(&self) -> &dyn Phones {
        &self.network
    }

    async fn has_credentials(&self, device: DeviceId) -> bool {
        self.db
            .link_credentials(&self.keys, device, crate::client::LINK_NAME)
            .await
            .expect("read credentials")
            .is_some()
    }
}
