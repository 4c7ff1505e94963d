//! `wafleet serve --demo` as a user starts it, on a free port in a directory of its own, for the
//! browser tests that walk the demo.

use std::net::TcpListener;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// The `wafleet` process, killed when dropped.
pub struct Server {
    child: Child,
    pub base: String,
    _dir: tempfile::TempDir,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        // A failing test shows what the server warned about (a session that failed to open and
        // waits to retry, a lost lease), which the page alone does not say.
        if std::thread::panicking() {
            let log = std::fs::read_to_string(self._dir.path().join("wafleet.log")).unwrap_or_default();
            let tail: Vec<&str> = log.lines().rev().take(80).collect();
            eprintln!("--- the last {} lines of wafleet serve --demo ---", tail.len());
            for line in tail.into_iter().rev() {
                eprintln!("{line}");
            }
        }
    }
}

pub fn serve_demo() -> Server {
    let dir = tempfile::tempdir().unwrap();
    let port = TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let child = Command::new(env!("CARGO_BIN_EXE_wafleet"))
        .args(["serve", "--demo"])
        .current_dir(dir.path())
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .env("PORT", port.to_string())
        .env("RUST_LOG", "warn,wafleet_workers=info")
        .stdout(Stdio::from(
            std::fs::File::create(dir.path().join("wafleet.log")).unwrap(),
        ))
        .spawn()
        .unwrap();
    let base = format!("http://127.0.0.1:{port}");
    let started = Instant::now();
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "wafleet serve --demo did not start"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    Server { child, base, _dir: dir }
}
