//! Starting each role: connect, migrate, run until SIGINT/SIGTERM, drain.

use std::sync::Arc;

use anyhow::Context;
use wafleet_api::AppState;
use wafleet_core::{Db, Settings, shutdown};

use crate::Role;

/// Runs `role` until a shutdown signal, then drains.
pub async fn run(role: Role, settings: Settings) -> anyhow::Result<()> {
    let db = Db::connect(&settings).await?;
    db.migrate().await?;
    if matches!(role, Role::Migrate) {
        tracing::info!(backend = db.backend_name(), "migrations applied");
        return Ok(());
    }
    wafleet_core::accounts::ensure_admin(&db, &settings).await?;

    let (trigger, shutdown) = shutdown::channel();
    trigger.trigger_on_signals();
    let settings = Arc::new(settings);
    let mut tasks = tokio::task::JoinSet::new();
    match role {
        Role::Serve => {
            let state = AppState {
                db: db.clone(),
                settings: settings.clone(),
            };
            let listener = wafleet_api::bind(&settings).await?;
            tracing::info!(url = %format!("http://{}", listener.local_addr()?), "wafleet is running (all roles, embedded)");
            tasks.spawn(wafleet_api::serve(state, listener, shutdown.clone()));
            tasks.spawn(wafleet_workers::run(db.clone(), shutdown.clone()));
            tasks.spawn(wafleet_scheduler::run(db.clone(), shutdown.clone()));
        }
        Role::Api => {
            let state = AppState {
                db: db.clone(),
                settings: settings.clone(),
            };
            let listener = wafleet_api::bind(&settings).await?;
            tasks.spawn(wafleet_api::serve(state, listener, shutdown.clone()));
        }
        Role::Worker => {
            tasks.spawn(probes(db.clone(), settings.clone(), shutdown.clone()));
            tasks.spawn(wafleet_workers::run(db.clone(), shutdown.clone()));
        }
        Role::Scheduler => {
            tasks.spawn(probes(db.clone(), settings.clone(), shutdown.clone()));
            tasks.spawn(wafleet_scheduler::run(db.clone(), shutdown.clone()));
        }
        Role::Migrate => unreachable!("handled above"),
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

/// Health and readiness probes for roles without the API.
async fn probes(db: Db, settings: Arc<Settings>, shutdown: shutdown::Shutdown) -> anyhow::Result<()> {
    let listener = wafleet_api::bind(&settings).await?;
    tracing::info!(addr = %listener.local_addr()?, "probes listening");
    axum::serve(listener, wafleet_api::health::probes(db))
        .with_graceful_shutdown(shutdown.wait())
        .await
        .context("probe server failed")
}
