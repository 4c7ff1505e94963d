//! Starting each role: connect, migrate, run until SIGINT/SIGTERM, drain.

use std::sync::Arc;

use anyhow::Context;
use wafleet_api::AppState;
use wafleet_core::cache::{Invalidations, ReadCache};
use wafleet_core::config::LinkChoice;
use wafleet_core::keys::KeyRing;
use wafleet_core::keys::reseal::{self, SweepOptions};
use wafleet_core::link::Link;
use wafleet_core::queue::Queues;
use wafleet_core::{Db, Settings, shutdown};
use wafleet_workers::WorkerOptions;

use crate::{Role, demo};

/// Runs `role` until a shutdown signal, then drains.
pub async fn run(role: Role, settings: Settings) -> anyhow::Result<()> {
    // Installed first, so nothing counted before the first scrape is lost.
    let _ = wafleet_core::metrics::handle();
    let (trigger, shutdown) = shutdown::channel();
    trigger.trigger_on_signals();
    if let Role::Sim(config) = role {
        return wafleet_sim::run(config, shutdown).await;
    }
    if let Role::McpTools = role {
        print!("{}", wafleet_api::mcp_tool_table());
        return Ok(());
    }
    if let Role::Keys(crate::keys::KeysCommand::Generate) = role {
        crate::keys::generate();
        return Ok(());
    }

    // Checked before touching the database, so a misconfigured process changes nothing.
    if !matches!(role, Role::Migrate | Role::Keys(_))
        && settings.redis_url.is_none()
        && matches!(settings.database()?, wafleet_core::config::DatabaseTarget::Postgres(_))
    {
        anyhow::bail!(
            "REDIS_URL is not set: with PostgreSQL (scale-out mode) the job queue lives in Redis; \
             set REDIS_URL=redis://host:6379"
        );
    }
    if matches!(role, Role::Serve { .. } | Role::Worker) {
        wafleet_core::keys::source::require_for_scale_out(&settings)?;
    }
    let db = Db::connect(&settings).await?;
    db.migrate().await?;
    if matches!(role, Role::Migrate) {
        tracing::info!(backend = db.backend_name(), "migrations applied");
        return Ok(());
    }
    if let Role::Keys(command) = role {
        let result = crate::keys::run(command, &settings, &db).await;
        db.close().await;
        return result;
    }
    // The roles that hold sessions read and write key material: they need the key (checked
    // against the database before anything else starts) and carry the re-encryption sweep.
    let keys = if matches!(role, Role::Serve { .. } | Role::Worker) {
        let columns = crate::keys::sealed_columns();
        let keys = wafleet_core::keys::registry::load(&settings, &db, &columns).await?;
        reseal::seal_plaintext_before_start(&db, &keys, &columns).await?;
        Some(keys)
    } else {
        None
    };
    wafleet_core::accounts::ensure_admin(&db, &settings).await?;
    let queues = Queues::connect(&settings, &db).await?;

    // The read cache serves the API; workers and the scheduler only announce what they change.
    let cache = match role {
        Role::Serve { .. } | Role::Api => ReadCache::from_settings(&settings),
        _ => ReadCache::off(),
    };
    let invalidations = Invalidations::connect(&settings, cache.clone()).await?;
    let scheduler_context = wafleet_scheduler::Context {
        invalidations: invalidations.clone(),
        live_worker: std::time::Duration::from_secs(settings.lease_ttl_secs),
        queues: queues.clone(),
        webhook_keep: std::time::Duration::from_secs(settings.webhook_keep_days.saturating_mul(24 * 3600)),
        media: wafleet_core::media_store::MediaStore::from_settings(&settings)?,
    };

    let settings = Arc::new(settings);
    let mut tasks = tokio::task::JoinSet::new();
    if matches!(role, Role::Serve { .. } | Role::Api) {
        // In scale-out mode, other processes' writes reach this one's cache through Redis.
        let follow = wafleet_core::cache::follow(&settings, cache.clone(), shutdown.clone());
        tasks.spawn(async move {
            follow.await;
            Ok(())
        });
    }
    if let Some(keys) = keys.clone() {
        let sweep = reseal::run(
            db.clone(),
            keys,
            crate::keys::sealed_columns(),
            SweepOptions::default(),
            shutdown.clone(),
        );
        tasks.spawn(async move {
            sweep.await;
            Ok(())
        });
    }
    // Kept alive for the life of the process in demo mode.
    let mut _simulator = None;
    match role {
        Role::Serve { demo } => {
            let keys = keys.expect("serve loads the keys");
            let mut state = AppState::new(db.clone(), settings.clone())
                .with_queues(queues.clone())
                .with_cache(cache, invalidations.clone());
            let link: Arc<dyn Link> = if demo {
                let handle = demo::start().await?;
                state = state.with_demo(demo::DemoPhones::new(&handle));
                let link = Arc::new(wafleet_sim::SimLink::new(handle.ws_url(), db.clone(), keys.clone()));
                _simulator = Some(handle);
                link
            } else {
                link_for(&settings, &db, &keys)
            };
            let listener = wafleet_api::bind(&settings).await?;
            tracing::info!(url = %format!("http://{}", listener.local_addr()?), demo, "wafleet is running (all roles, embedded)");
            tasks.spawn(wafleet_api::serve(state, listener, shutdown.clone()));
            tasks.spawn(wafleet_workers::run(
                db.clone(),
                link,
                queues,
                invalidations,
                WorkerOptions::from_settings(&settings)?,
                shutdown.clone(),
            ));
            tasks.spawn(wafleet_scheduler::run(db.clone(), scheduler_context, shutdown.clone()));
        }
        Role::Api => {
            let listener = wafleet_api::bind(&settings).await?;
            tasks.spawn(wafleet_api::serve(
                AppState::new(db.clone(), settings.clone())
                    .with_queues(queues)
                    .with_cache(cache, invalidations),
                listener,
                shutdown.clone(),
            ));
        }
        Role::Worker => {
            tasks.spawn(probes(db.clone(), settings.clone(), shutdown.clone()));
            let options = WorkerOptions::from_settings(&settings)?;
            tasks.spawn(wafleet_workers::run(
                db.clone(),
                link_for(&settings, &db, &keys.expect("a worker loads the keys")),
                queues,
                invalidations,
                options,
                shutdown.clone(),
            ));
        }
        Role::Scheduler => {
            tasks.spawn(probes(db.clone(), settings.clone(), shutdown.clone()));
            tasks.spawn(wafleet_scheduler::run(db.clone(), scheduler_context, shutdown.clone()));
        }
        Role::Migrate | Role::Sim(_) | Role::Keys(_) | Role::McpTools => unreachable!("handled above"),
    }
    // Tasks end at shutdown; if one fails first, the others are told to stop and its error is returned.
    let mut result = Ok(());
    while let Some(joined) = tasks.join_next().await {
        let outcome = joined.context("a role task panicked").and_then(|r| r);
        if let Err(err) = outcome {
            if result.is_ok() {
                result = Err(err);
            }
            trigger.trigger();
        }
    }
    db.close().await;
    tracing::info!("stopped");
    result
}

/// The link the settings choose for workers.
fn link_for(settings: &Settings, db: &Db, keys: &KeyRing) -> Arc<dyn Link> {
    match settings.whatsapp_link {
        LinkChoice::Whatsapp => {
            let config = wafleet_wa::WaLinkConfig {
                server_url: settings.wa_server_url.clone(),
                app_version: settings.wa_app_version.map(|v| (v.0, v.1, v.2)),
                ..Default::default()
            };
            Arc::new(wafleet_wa::WaLink::with_config(db.clone(), keys.clone(), config))
        }
        LinkChoice::Simulator => {
            tracing::warn!(url = %settings.simulator_url, "workers connect to the network SIMULATOR, not to WhatsApp");
            Arc::new(wafleet_sim::SimLink::new(
                settings.simulator_url.clone(),
                db.clone(),
                keys.clone(),
            ))
        }
    }
}

/// Health and readiness probes for roles without the API.
async fn probes(db: Db, settings: Arc<Settings>, shutdown: shutdown::Shutdown) -> anyhow::Result<()> {
    let listener = wafleet_api::bind(&settings).await?;
    tracing::info!(addr = %listener.local_addr()?, "probes listening");
    axum::serve(listener, wafleet_api::health::probes(db))
        .with_graceful_shutdown(shutdown.wait())
        .await
        .context("probe server failed")
}
