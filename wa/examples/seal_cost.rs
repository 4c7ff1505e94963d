//! What sealing key material at rest costs: a Signal session written and read through `WaStore`
//! (sealed) against the same statements with the plain bytes (as the store ran before), the
//! cipher alone, and how fast the re-encryption sweep moves rows to a new key. On both backends
//! (PostgreSQL at `WAFLEET_TEST_POSTGRES_URL` or the local default).
//!
//! `cargo run --release -p wafleet-wa --example seal_cost [ROUNDS]`

use std::time::{Duration, Instant};

use wafleet_core::Db;
use wafleet_core::db::NewUserRole;
use wafleet_core::keys::reseal::{self, SweepOptions};
use wafleet_core::keys::{KeyRing, RowKey, registry, source};
use wafleet_core::testing::{Backend, TestDb};
use wafleet_core::types::Email;
use wafleet_wa::WaStore;
use wafleet_wa::store::sealed::SESSION;
use whatsapp_rust::wacore::store::traits::SignalStore;

/// A Signal session record is about this large.
const RECORD: usize = 1_200;

fn per_op(elapsed: Duration, n: usize) -> String {
    format!("{:.1} µs", elapsed.as_secs_f64() * 1e6 / n as f64)
}

async fn plain(db: &Db, device: i64, n: usize, record: &[u8]) -> (Duration, Duration) {
    let put = "INSERT INTO wa_sessions (device_id, address, record) VALUES ($1, $2, $3) \
               ON CONFLICT (device_id, address) DO UPDATE SET record = excluded.record";
    let get = "SELECT record FROM wa_sessions WHERE device_id = $1 AND address = $2";
    let started = Instant::now();
    for i in 0..n {
        let address = format!("plain{i}.0");
        match db {
            Db::Sqlite(p) => sqlx::query(put)
                .bind(device)
                .bind(address)
                .bind(record)
                .execute(p)
                .await
                .map(drop),
            Db::Postgres(p) => sqlx::query(put)
                .bind(device)
                .bind(address)
                .bind(record)
                .execute(p)
                .await
                .map(drop),
        }
        .unwrap();
    }
    let writes = started.elapsed();
    let started = Instant::now();
    for i in 0..n {
        let address = format!("plain{i}.0");
        let _: Vec<u8> = match db {
            Db::Sqlite(p) => sqlx::query_scalar(get).bind(device).bind(address).fetch_one(p).await,
            Db::Postgres(p) => sqlx::query_scalar(get).bind(device).bind(address).fetch_one(p).await,
        }
        .unwrap();
    }
    (writes, started.elapsed())
}

async fn run(backend: Backend, rounds: usize) {
    let test = TestDb::new(backend).await;
    let email = Email::parse("cost@example.com").unwrap();
    let user = test
        .db
        .create_user(&email, "h", NewUserRole::FirstBecomesAdmin)
        .await
        .unwrap();
    let device = test.db.create_device(user.id, "cost", None).await.unwrap().id;
    let record = vec![0x5a_u8; RECORD];

    let (plain_w, plain_r) = plain(&test.db, device.0, rounds, &record).await;
    let store = WaStore::new(test.db.clone(), test.keys.clone(), device);
    let started = Instant::now();
    for i in 0..rounds {
        store.put_session(&format!("sealed{i}.0"), &record).await.unwrap();
    }
    let sealed_w = started.elapsed();
    let started = Instant::now();
    for i in 0..rounds {
        store.get_session(&format!("sealed{i}.0")).await.unwrap().unwrap();
    }
    let sealed_r = started.elapsed();
    println!(
        "{backend:?}: write {} plain, {} sealed; read {} plain, {} sealed ({RECORD}-byte record, {rounds} each)",
        per_op(plain_w, rounds),
        per_op(sealed_w, rounds),
        per_op(plain_r, rounds),
        per_op(sealed_r, rounds)
    );

    // The sweep: every row (both sets above) to a new key, default pacing.
    let columns = [&SESSION];
    let old = source::parse_secret(test.settings.wa_keys_secret.as_ref().unwrap().expose(), "k").unwrap();
    registry::startup(&test.db, &test.keys, &columns).await.unwrap();
    let rotating = KeyRing::new(&source::random_secret(), Some(&old));
    registry::startup(&test.db, &rotating, &columns).await.unwrap();
    let (_trigger, shutdown) = wafleet_core::shutdown::channel();
    let started = Instant::now();
    let report = reseal::sweep(&test.db, &rotating, &columns, &SweepOptions::default(), &shutdown)
        .await
        .unwrap();
    let took = started.elapsed();
    println!(
        "{backend:?}: sweep moved {} rows in {:.2} s ({:.0} rows/s, batches of 200 with 20 ms pauses)",
        report.moved,
        took.as_secs_f64(),
        report.moved as f64 / took.as_secs_f64()
    );
}

#[tokio::main]
async fn main() {
    let rounds: usize = std::env::args().nth(1).map_or(2_000, |n| n.parse().expect("ROUNDS"));
    let keys = KeyRing::random();
    let record = vec![0x5a_u8; RECORD];
    let key = [RowKey::Text("x.0")];
    let cell = SESSION.cell(wafleet_core::types::DeviceId(1), &key);
    let started = Instant::now();
    for _ in 0..100_000 {
        let sealed = keys.seal(&cell, &record);
        std::hint::black_box(keys.open(&cell, &sealed).unwrap());
    }
    println!(
        "cipher: seal + open of {RECORD} bytes {}",
        per_op(started.elapsed(), 100_000)
    );
    run(Backend::Sqlite, rounds).await;
    run(Backend::Postgres, rounds).await;
}
