//! One shutdown signal shared by every task of a process.

use std::sync::Arc;

use tokio::sync::watch;

/// A cloneable handle that resolves once shutdown has been requested.
///
/// Every long-running task holds one and stops taking new work when [`Shutdown::wait`] returns.
#[derive(Clone, Debug)]
pub struct Shutdown {
    /// Flips to `true` exactly once, when shutdown begins.
    rx: watch::Receiver<bool>,
}

/// The side that triggers a [`Shutdown`].
#[derive(Clone, Debug)]
pub struct ShutdownTrigger {
    /// Sends the one `true` all [`Shutdown`] handles wait for.
    tx: Arc<watch::Sender<bool>>,
}

/// Creates a connected trigger and handle.
pub fn channel() -> (ShutdownTrigger, Shutdown) {
    let (tx, rx) = watch::channel(false);
    (ShutdownTrigger { tx: Arc::new(tx) }, Shutdown { rx })
}

impl ShutdownTrigger {
    /// Asks every [`Shutdown`] handle to stop.
    pub fn trigger(&self) {
        self.tx.send_replace(true);
    }

    /// Triggers shutdown when the process receives SIGINT or SIGTERM.
    pub fn trigger_on_signals(&self) {
        let this = self.clone();
        tokio::spawn(async move {
            wait_for_signal().await;
            tracing::info!("shutdown signal received; draining");
            this.trigger();
        });
    }
}

impl Shutdown {
    /// Resolves once shutdown has been requested (immediately if it already was).
    pub async fn wait(mut self) {
        // An error means the trigger was dropped: treat that as shutdown too.
        let _ = self.rx.wait_for(|stop| *stop).await;
    }

    /// Whether shutdown has been requested.
    pub fn is_triggered(&self) -> bool {
        *self.rx.borrow()
    }
}

async fn wait_for_signal() {
    let ctrl_c = async {
        if let Err(err) = tokio::signal::ctrl_c().await {
            tracing::error!(%err, "cannot listen for SIGINT");
            std::future::pending::<()>().await;
        }
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut sig) => {
                sig.recv().await;
            }
            Err(err) => {
                tracing::error!(%err, "cannot listen for SIGTERM");
                std::future::pending::<()>().await;
            }
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => {}
        () = term => {}
    }
}
