//! `wafleet keys`: the key that seals WhatsApp key material at rest (generate one, see which keys
//! hold rows, re-encrypt now).

use clap::Subcommand;
use wafleet_core::keys::reseal::{self, SweepOptions};
use wafleet_core::keys::{KeyRing, SealedColumn, registry, source};
use wafleet_core::{Db, Settings};

/// What `wafleet keys` does.
#[derive(Clone, Debug, Subcommand)]
pub enum KeysCommand {
    /// Print a new random secret for WA_KEYS_SECRET (and its key id); stores nothing.
    Generate,
    /// Show which keys seal how many rows, and the re-encryption sweep's progress.
    Status,
    /// Run the re-encryption sweep now, in the foreground, until every row is under the current
    /// key (workers also do it in the background).
    Reseal,
}

/// Every sealed column: the whatsapp-rust store's and the link credentials.
pub fn sealed_columns() -> Vec<&'static SealedColumn> {
    wafleet_wa::store::sealed::SEALED_COLUMNS
        .iter()
        .copied()
        .chain([&wafleet_core::db::LINK_CREDENTIALS])
        .collect()
}

/// Prints a new secret; touches nothing else.
pub fn generate() {
    let secret = source::random_secret();
    let ring = KeyRing::new(&secret, None);
    println!("{}", *source::encode_secret(&secret));
    eprintln!(
        "key {}: give it to every worker as WA_KEYS_SECRET (or in a file named by WA_KEYS_SECRET_FILE), \
         and keep a copy apart from database backups",
        ring.current_id()
    );
}

/// Runs `status` or `reseal` against the database.
pub async fn run(command: KeysCommand, settings: &Settings, db: &Db) -> anyhow::Result<()> {
    let columns = sealed_columns();
    match command {
        KeysCommand::Generate => generate(),
        KeysCommand::Status => status(settings, db, &columns).await?,
        KeysCommand::Reseal => {
            let ring = registry::load(settings, db, &columns).await?;
            let (_trigger, shutdown) = wafleet_core::shutdown::channel();
            let report = reseal::sweep(db, &ring, &columns, &SweepOptions::default(), &shutdown).await?;
            println!(
                "moved {} rows to key {}; {} unreadable; {}",
                report.moved,
                ring.current_id(),
                report.unreadable,
                if report.complete {
                    "every row is under the current key"
                } else {
                    "rows remain on other keys"
                }
            );
            if !report.complete {
                anyhow::bail!("the sweep did not finish: see the warnings above and `wafleet keys status`");
            }
        }
    }
    Ok(())
}

async fn status(settings: &Settings, db: &Db, columns: &[&SealedColumn]) -> anyhow::Result<()> {
    // The configured keys are only named, never required: status works from any machine.
    let ring = source::configured(settings)?;
    let registered = registry::registered(db).await?;
    let census = reseal::census(db, columns).await?;
    println!("{:<10} {:<10} {:>10}  state", "key", "config", "rows");
    for key in &registered {
        let config = match &ring {
            Some(r) if r.current_id() == key.id => "current",
            Some(r) if r.previous_id() == Some(key.id) => "previous",
            Some(_) => "absent",
            None => "-",
        };
        let state = if key.retired_at.is_some() { "retired" } else { "in use" };
        let rows = census.by_key.get(&key.id).copied().unwrap_or(0);
        println!("{:<10} {config:<10} {rows:>10}  {state}", key.id.to_string());
    }
    for (id, rows) in census
        .by_key
        .iter()
        .filter(|(id, _)| !registered.iter().any(|k| k.id == **id))
    {
        println!("{:<10} {:<10} {rows:>10}  not registered", id.to_string(), "-");
    }
    println!("{:<10} {:<10} {:>10}", "plain text", "", census.plaintext);
    if let Some(ring) = &ring {
        let elsewhere: u64 = census
            .by_key
            .iter()
            .filter(|(id, _)| **id != ring.current_id())
            .map(|(_, rows)| rows)
            .sum();
        println!("rows not yet under the current key: {}", elsewhere + census.plaintext);
    }
    Ok(())
}
