//! What a backup of a test's database holds, and checks that a secret is not in it.

use base64::Engine;
use base64::engine::general_purpose::{STANDARD, STANDARD_NO_PAD, URL_SAFE_NO_PAD};
use wafleet_core::Db;
use wafleet_core::testing::TestDb;

/// What a backup of a database holds.
pub struct Dump {
    /// SQLite: the database file and its WAL as they are on disk (empty for PostgreSQL).
    pub files: Vec<u8>,
    /// SQLite: every value of every table (decoded from `hex()`); PostgreSQL: `pg_dump`'s
    /// plain-text output (bytea in hex).
    pub logical: Vec<u8>,
}

impl Dump {
    /// Both parts.
    pub fn all(&self) -> Vec<u8> {
        [&self.files[..], &self.logical].concat()
    }
}

/// What a backup of `test`'s database holds.
pub async fn dump(test: &TestDb) -> Dump {
    let url = test
        .settings
        .database_url
        .as_ref()
        .expect("a database URL")
        .expose()
        .to_owned();
    match &test.db {
        Db::Sqlite(pool) => {
            let path = url.strip_prefix("sqlite://").expect("an SQLite URL");
            let mut files = std::fs::read(path).expect("read the database file");
            files.extend(std::fs::read(format!("{path}-wal")).unwrap_or_default());
            let mut bytes = Vec::new();
            let tables: Vec<String> = sqlx::query_scalar("SELECT name FROM sqlite_master WHERE type = 'table'")
                .fetch_all(pool)
                .await
                .unwrap();
            for table in tables {
                let columns: Vec<String> = sqlx::query_scalar("SELECT name FROM pragma_table_info($1)")
                    .bind(&table)
                    .fetch_all(pool)
                    .await
                    .unwrap();
                for column in columns {
                    let sql = format!("SELECT hex(\"{column}\") FROM \"{table}\"");
                    let values: Vec<String> = sqlx::query_scalar(sqlx::AssertSqlSafe(sql))
                        .fetch_all(pool)
                        .await
                        .unwrap();
                    for value in values {
                        bytes.extend(decode_hex(&value));
                        bytes.push(b'\n');
                    }
                }
            }
            Dump { files, logical: bytes }
        }
        Db::Postgres(_) => {
            let output = std::process::Command::new("pg_dump")
                .args(["--no-owner", "--format=plain", &url])
                .output()
                .expect("pg_dump is installed (PostgreSQL's client tools)");
            assert!(
                output.status.success(),
                "pg_dump failed: {}",
                String::from_utf8_lossy(&output.stderr)
            );
            Dump {
                files: Vec::new(),
                logical: output.stdout,
            }
        }
    }
}

fn decode_hex(hex: &str) -> Vec<u8> {
    (0..hex.len() / 2)
        .map(|i| u8::from_str_radix(&hex[2 * i..2 * i + 2], 16).expect("hex() gives hex"))
        .collect()
}

/// The ways a value can appear in a dump: raw, hex (both cases) and base64 (three alphabets).
fn forms(secret: &[u8]) -> Vec<(&'static str, Vec<u8>)> {
    let hex: String = secret.iter().map(|b| format!("{b:02x}")).collect();
    vec![
        ("raw bytes", secret.to_vec()),
        ("lower-case hex", hex.clone().into_bytes()),
        ("upper-case hex", hex.to_uppercase().into_bytes()),
        ("base64", STANDARD.encode(secret).into_bytes()),
        ("base64 without padding", STANDARD_NO_PAD.encode(secret).into_bytes()),
        ("URL-safe base64", URL_SAFE_NO_PAD.encode(secret).into_bytes()),
        // The client's `Device` is stored as JSON, where bytes are arrays of numbers, and
        // pg_dump shows a bytea column holding that JSON in hex.
        ("JSON numbers", json_numbers(secret)),
        (
            "JSON numbers in hex",
            json_numbers(secret)
                .iter()
                .map(|b| format!("{b:02x}"))
                .collect::<String>()
                .into_bytes(),
        ),
    ]
}

/// `secret` as the numbers inside a JSON array (a key stored as part of a longer array).
fn json_numbers(secret: &[u8]) -> Vec<u8> {
    let numbers: Vec<String> = secret.iter().map(u8::to_string).collect();
    numbers.join(",").into_bytes()
}

fn find(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle)
}

/// The form in which `secret` appears in `dump`, if any.
pub fn appears(dump: &[u8], secret: &[u8]) -> Option<&'static str> {
    forms(secret)
        .into_iter()
        .find(|(_, form)| find(dump, form))
        .map(|(name, _)| name)
}
