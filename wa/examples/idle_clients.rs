//! Memory of idle WhatsApp clients on wafleet's storage: builds N clients (one device each, state
//! on a fresh SQLite database) without connecting them and prints the resident memory per client.
//!
//! `cargo run --release -p wafleet-wa --example idle_clients -- 1000`

use anyhow::Context;
use wafleet_core::Settings;
use wafleet_core::db::NewUserRole;
use wafleet_core::types::Email;
use wafleet_wa::WaStore;
use whatsapp_rust::bot::Bot;
use whatsapp_rust::http::UreqHttpClient;
use whatsapp_rust::transport::TokioWebSocketTransportFactory;

/// Resident memory of this process in KiB (`VmRSS` of `/proc/self/status`).
fn rss_kib() -> anyhow::Result<u64> {
    let status = std::fs::read_to_string("/proc/self/status").context("reading /proc/self/status")?;
    let line = status
        .lines()
        .find(|l| l.starts_with("VmRSS:"))
        .context("no VmRSS line")?;
    line.split_whitespace()
        .nth(1)
        .context("VmRSS without value")?
        .parse()
        .context("VmRSS value")
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let n: usize = std::env::args()
        .nth(1)
        .map_or(Ok(1000), |a| a.parse())
        .context("N is a number")?;
    let dir = std::env::temp_dir().join(format!("wafleet-idle-clients-{}", std::process::id()));
    let mut settings = Settings::defaults();
    settings.database_url = Some(format!("sqlite://{}/wafleet.db", dir.display()).as_str().into());
    settings.database_max_connections = 4;
    let db = wafleet_core::Db::connect(&settings).await?;
    db.migrate().await?;
    // A throwaway key: the example's database lives only as long as the run.
    let keys = wafleet_core::keys::KeyRing::random();
    let email = Email::parse("idle@example.com").map_err(anyhow::Error::msg)?;
    let user = db.create_user(&email, "x", NewUserRole::FirstBecomesAdmin).await?;
    let mut devices = Vec::with_capacity(n);
    for i in 0..n {
        devices.push(db.create_device(user.id, &format!("idle {i}"), None).await?.id);
    }

    let before = rss_kib()?;
    let mut bots = Vec::with_capacity(n);
    for &device in &devices {
        let bot = Bot::builder()
            .with_backend(WaStore::new(db.clone(), keys.clone(), device))
            .with_transport_factory(TokioWebSocketTransportFactory::new())
            .with_http_client(UreqHttpClient::new())
            .skip_history_sync()
            .build()
            .await?;
        bots.push(bot);
    }
    let after = rss_kib()?;
    let per_client = (after.saturating_sub(before)) as f64 / n as f64;
    println!("clients: {n}");
    println!("RSS before: {before} KiB, after: {after} KiB");
    println!("RSS per idle client: {per_client:.1} KiB");
    drop(bots);
    db.close().await;
    let _ = std::fs::remove_dir_all(&dir);
    Ok(())
}
