//! The `wafleet` binary as an operator runs it: a fresh start on the embedded default, a clean
//! drain on SIGTERM, migrations on PostgreSQL, and one clear line for each misconfiguration.

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::Path;
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

/// `wafleet` with an empty environment (so the developer's own settings cannot leak in).
fn wafleet(dir: &Path) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_wafleet"));
    cmd.current_dir(dir)
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .env("RUST_LOG", "warn");
    cmd
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

/// A plain HTTP/1.0 GET; `None` while nothing listens.
fn get(port: u16, path: &str) -> Option<String> {
    let mut stream = TcpStream::connect(("127.0.0.1", port)).ok()?;
    write!(stream, "GET {path} HTTP/1.0\r\nHost: localhost\r\n\r\n").ok()?;
    let mut response = String::new();
    stream.read_to_string(&mut response).ok()?;
    Some(response)
}

fn wait_for_exit(child: &mut Child, limit: Duration) -> Option<std::process::ExitStatus> {
    let start = Instant::now();
    while start.elapsed() < limit {
        if let Some(status) = child.try_wait().unwrap() {
            return Some(status);
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    None
}

#[test]
fn embedded_default_serves_the_login_page_and_drains_on_sigterm() {
    let dir = tempfile::tempdir().unwrap();
    // The second start finds the database (and the embedded queue's tables) already there.
    for round in ["first start", "restart on the same data"] {
        let port = free_port();
        let mut child = wafleet(dir.path())
            .env("PORT", port.to_string())
            .stdout(Stdio::null())
            .spawn()
            .unwrap();
        let start = Instant::now();
        let page = loop {
            if let Some(page) = get(port, "/login") {
                break page;
            }
            assert!(
                start.elapsed() < Duration::from_secs(30),
                "{round}: wafleet did not start listening on {port}"
            );
            assert!(child.try_wait().unwrap().is_none(), "{round}: wafleet exited early");
            std::thread::sleep(Duration::from_millis(100));
        };
        assert!(
            page.starts_with("HTTP/1.0 200") || page.starts_with("HTTP/1.1 200"),
            "{page}"
        );
        assert!(page.contains("<title>Log in · wafleet</title>"), "{page}");
        assert!(
            dir.path().join("data/wafleet.db").is_file(),
            "the SQLite file is created under ./data"
        );
        assert!(get(port, "/ready").unwrap().contains("ready"));

        let kill = Command::new("kill")
            .args(["-TERM", &child.id().to_string()])
            .status()
            .unwrap();
        assert!(kill.success());
        let status =
            wait_for_exit(&mut child, Duration::from_secs(15)).expect("wafleet drains and exits after SIGTERM");
        assert!(status.success(), "{round}: clean exit after SIGTERM: {status:?}");
    }
}

fn run(cmd: &mut Command) -> Output {
    let mut child = cmd.stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().unwrap();
    let Some(_) = wait_for_exit(&mut child, Duration::from_secs(30)) else {
        let _ = child.kill();
        panic!("wafleet did not exit");
    };
    child.wait_with_output().unwrap()
}

/// Asserts a failed start whose stderr names the problem in one line (`wafleet: …` from our own
/// checks, `error: …` from the argument parser).
fn assert_fails_with(output: Output, needle: &str) {
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(!output.status.success(), "should fail: {stderr}");
    let line = stderr
        .lines()
        .find(|l| l.starts_with("wafleet: ") || l.starts_with("error: "))
        .unwrap_or_else(|| panic!("no error line: {stderr}"));
    assert!(line.contains(needle), "{line:?} should contain {needle:?}");
}

#[test]
fn misconfiguration_gets_one_clear_line_and_a_failing_exit() {
    let dir = tempfile::tempdir().unwrap();
    assert_fails_with(
        run(wafleet(dir.path()).env("DATABASE_URL", "mysql://db/x")),
        "DATABASE_URL must start with postgres://",
    );
    assert_fails_with(
        run(wafleet(dir.path())
            .env("DATABASE_URL", "postgres://nobody@127.0.0.1:1/none")
            .env("REDIS_URL", "redis://127.0.0.1:6379")
            .env("WA_KEYS_SECRET", format!("{}=", "A".repeat(43)))),
        "cannot connect to PostgreSQL at DATABASE_URL",
    );
    assert_fails_with(
        run(wafleet(dir.path()).env("DATA_DIR", "/proc/wafleet")),
        "cannot create data directory /proc/wafleet",
    );
    let taken = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = taken.local_addr().unwrap().port().to_string();
    assert_fails_with(run(wafleet(dir.path()).env("PORT", &port)), "is the port in use");
    assert_fails_with(
        run(wafleet(dir.path()).env("DEFAULT_COUNTRY", "Narnia")),
        "not a country",
    );
    assert_fails_with(
        run(wafleet(dir.path()).env("REDIS_URL", "redis://127.0.0.1:1")),
        "cannot connect to Redis at REDIS_URL",
    );
    assert_fails_with(
        run(wafleet(dir.path())
            .arg("worker")
            .env("DATABASE_URL", "postgres://nobody@127.0.0.1:1/none")),
        "REDIS_URL is not set",
    );
    assert_fails_with(
        run(wafleet(dir.path())
            .arg("worker")
            .env("DATABASE_URL", "postgres://nobody@127.0.0.1:1/none")
            .env("REDIS_URL", "redis://127.0.0.1:1")),
        "WA_KEYS_SECRET is not set: with PostgreSQL every process that holds WhatsApp sessions needs",
    );
    assert_fails_with(
        run(wafleet(dir.path()).env("WA_KEYS_SECRET", "c2hvcnQ=")),
        "WA_KEYS_SECRET holds 5 bytes, not 32",
    );
}

/// Starts `wafleet serve` in `dir` until it answers, then stops it with SIGTERM.
fn start_and_stop(dir: &Path, env: &[(&str, &str)]) {
    let port = free_port();
    let mut child = wafleet(dir)
        .env("PORT", port.to_string())
        .envs(env.iter().copied())
        .stdout(Stdio::null())
        .spawn()
        .unwrap();
    let start = Instant::now();
    while get(port, "/ready").is_none() {
        assert!(start.elapsed() < Duration::from_secs(30), "wafleet did not start");
        assert!(child.try_wait().unwrap().is_none(), "wafleet exited early");
        std::thread::sleep(Duration::from_millis(100));
    }
    Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    let status = wait_for_exit(&mut child, Duration::from_secs(15)).expect("exits after SIGTERM");
    assert!(status.success(), "{status:?}");
}

/// The embedded default makes its own key file (owner-only) beside the database on first start
/// and keeps using it; another key, or none once the database has one, stops start-up with an
/// error that says what to set; `wafleet keys status` names the key in use.
#[test]
fn embedded_key_file_is_made_once_and_a_wrong_or_missing_key_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    start_and_stop(dir.path(), &[]);
    let key_file = dir.path().join("data/wa-keys.secret");
    let secret = std::fs::read_to_string(&key_file).expect("a key file is made on first start");
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&key_file).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600, "only its owner may read the key file");
    }
    start_and_stop(dir.path(), &[]);
    assert_eq!(std::fs::read_to_string(&key_file).unwrap(), secret, "the key is kept");

    let generated = run(wafleet(dir.path()).args(["keys", "generate"]));
    assert!(generated.status.success());
    let other = String::from_utf8(generated.stdout).unwrap();
    assert_fails_with(
        run(wafleet(dir.path()).env("WA_KEYS_SECRET", other.trim())),
        "wrong WA_KEYS_SECRET: the WhatsApp keys in the database are encrypted with key",
    );
    start_and_stop(dir.path(), &[("WA_KEYS_SECRET", secret.trim())]);

    let status = run(wafleet(dir.path()).args(["keys", "status"]));
    assert!(status.status.success(), "{}", String::from_utf8_lossy(&status.stderr));
    let table = String::from_utf8_lossy(&status.stdout);
    assert!(table.contains("in use"), "{table}");

    std::fs::rename(&key_file, dir.path().join("elsewhere.secret")).unwrap();
    assert_fails_with(
        run(&mut wafleet(dir.path())),
        "no WA_KEYS_SECRET or WA_KEYS_SECRET_FILE is set and the key file ./data/wa-keys.secret does not exist",
    );
    let elsewhere = dir.path().join("elsewhere.secret");
    start_and_stop(dir.path(), &[("WA_KEYS_SECRET_FILE", elsewhere.to_str().unwrap())]);
}

#[test]
fn help_lists_every_setting() {
    let dir = tempfile::tempdir().unwrap();
    let output = run(wafleet(dir.path()).arg("--help"));
    assert!(output.status.success());
    let help = String::from_utf8_lossy(&output.stdout);
    for var in [
        "WAFLEET_CONFIG",
        "DATA_DIR",
        "DATABASE_URL",
        "DATABASE_MAX_CONNECTIONS",
        "REDIS_URL",
        "QUEUE_NAMESPACE",
        "HOST",
        "PORT",
        "APP_PORT",
        "DEFAULT_COUNTRY",
        "ADMIN_EMAIL",
        "ADMIN_PASSWORD",
        "ALLOW_REGISTRATION",
        "COOKIE_SECURE",
        "SESSION_TTL_HOURS",
        "LOGIN_MAX_FAILURES",
        "LOGIN_LOCKOUT_SECS",
        "MCP_SENDS_PER_MINUTE",
        "TRUST_PROXY_HEADERS",
        "MAX_BODY_BYTES",
        "MAX_MEDIA_BYTES",
        "SHUTDOWN_TIMEOUT_SECS",
        "LOG_FORMAT",
        "WHATSAPP_LINK",
        "SIMULATOR_URL",
        "WA_SERVER_URL",
        "WA_APP_VERSION",
        "LEASE_TTL_SECS",
        "WORKER_CAPACITY",
        "WORKER_ID",
        "WORKER_WAIT_SECS",
        "WA_KEYS_SECRET",
        "WA_KEYS_SECRET_FILE",
        "WA_KEYS_SECRET_PREVIOUS",
        "WA_KEYS_SECRET_PREVIOUS_FILE",
    ] {
        assert!(help.contains(var), "--help names {var}");
    }
    for role in ["serve", "api", "worker", "scheduler", "migrate", "sim", "keys"] {
        assert!(help.contains(&format!("  {role} ")), "--help names the {role} role");
    }
}

#[tokio::test]
async fn migrate_applies_postgres_migrations_idempotently() {
    let admin_url = std::env::var("WAFLEET_TEST_POSTGRES_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".into());
    let name = format!("wafleet_test_cli_{}", std::process::id());
    let admin = sqlx::PgPool::connect(&admin_url)
        .await
        .expect("PostgreSQL must run for the tests");
    let create = format!("DROP DATABASE IF EXISTS \"{name}\" WITH (FORCE)");
    sqlx::query(sqlx::AssertSqlSafe(create)).execute(&admin).await.unwrap();
    sqlx::query(sqlx::AssertSqlSafe(format!("CREATE DATABASE \"{name}\"")))
        .execute(&admin)
        .await
        .unwrap();
    let url = format!("{}/{name}", admin_url.rsplit_once('/').unwrap().0);

    let dir = tempfile::tempdir().unwrap();
    for _ in 0..2 {
        let output = run(wafleet(dir.path()).arg("migrate").env("DATABASE_URL", &url));
        assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    }
    let db = sqlx::PgPool::connect(&url).await.unwrap();
    let tables: Vec<(String,)> = sqlx::query_as(
        "SELECT table_name::text FROM information_schema.tables WHERE table_schema = 'public' ORDER BY 1",
    )
    .fetch_all(&db)
    .await
    .unwrap();
    let tables: Vec<&str> = tables.iter().map(|(t,)| t.as_str()).collect();
    for table in ["api_tokens", "devices", "login_failures", "sessions", "users"] {
        assert!(tables.contains(&table), "{table} in {tables:?}");
    }
    assert!(
        !dir.path().join("data").exists(),
        "no SQLite file when DATABASE_URL names PostgreSQL"
    );
    db.close().await;
    sqlx::query(sqlx::AssertSqlSafe(format!("DROP DATABASE \"{name}\" WITH (FORCE)")))
        .execute(&admin)
        .await
        .unwrap();
}

#[test]
fn sim_runs_as_its_own_process_with_a_control_api() {
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let mut child = wafleet(dir.path())
        .args(["sim", "--sim-port", &port.to_string()])
        .stdout(Stdio::null())
        .spawn()
        .unwrap();
    let start = Instant::now();
    let state = loop {
        if let Some(page) = get(port, "/control/state") {
            break page;
        }
        assert!(
            start.elapsed() < Duration::from_secs(30),
            "wafleet sim did not start listening on {port}"
        );
        std::thread::sleep(Duration::from_millis(100));
    };
    assert!(state.contains(" 200 "), "{state}");
    assert!(state.contains("application/json"), "{state}");
    assert!(!dir.path().join("data").exists(), "the simulator keeps no database");
    let kill = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(kill.success());
    let status = wait_for_exit(&mut child, Duration::from_secs(15)).expect("wafleet sim exits after SIGTERM");
    assert!(status.success(), "{status:?}");
}

/// The features `package`'s build of the WhatsApp client's Noise layer gets, by `cargo tree`
/// over the given dependency kinds.
fn noise_features(package: &str, edges: &str) -> String {
    let output = Command::new(env!("CARGO"))
        .args([
            "tree",
            "--locked",
            "--offline",
            "-p",
            package,
            "-e",
            edges,
            "-i",
            "wacore-noise",
        ])
        .args(["--depth", "0", "-f", "{f}"])
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .expect("cargo tree runs");
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    String::from_utf8(output.stdout).expect("utf-8")
}

/// The binary users run verifies WhatsApp's certificate chain: nothing it is built from turns
/// the check off. Only test builds (dev-dependencies) and the explicit `sim-server` feature trust
/// the simulator's chain, and this test would see it if they reached the binary.
#[test]
fn the_shipped_binary_verifies_whatsapps_certificate() {
    const BYPASS: &str = "danger-skip-cert-chain-verify";
    let shipped = noise_features("wafleet", "normal,build");
    assert!(
        !shipped.contains(BYPASS),
        "the binary would trust any server: {shipped}"
    );
    let tests = noise_features("wafleet", "normal,build,dev");
    assert!(tests.contains(BYPASS), "test builds trust the simulator: {tests}");
}
