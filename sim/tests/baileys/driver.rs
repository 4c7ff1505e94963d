//! The pinned Baileys, installed into a cache directory, and one Node process driving it
//! (`driver.mjs`), spoken to in JSON lines.

use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::time::Duration;

use tokio::sync::mpsc;

/// The Baileys release the test runs: pinned, as a new release may change what it sends.
const BAILEYS: &str = "baileys@7.0.0-rc14";

/// The driver script, written next to the installed package.
const DRIVER: &str = include_str!("driver.mjs");

/// A directory holding the installed Baileys and the driver.
pub struct Baileys {
    /// The cache directory.
    dir: PathBuf,
}

impl Baileys {
    /// A fresh directory for one session's credentials.
    pub fn auth_dir(&self) -> PathBuf {
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos());
        self.dir.join(format!("auth-{}-{nanos}", std::process::id()))
    }
}

/// Installs the pinned Baileys into the cache directory unless it is there already. Panics when
/// Node is not installed (`infra/test` installs it).
pub async fn install() -> Baileys {
    assert!(
        Command::new("node").arg("--version").output().is_ok(),
        "node is not installed: install Node 20 and npm (infra/test does, from Debian's packages)"
    );
    let dir = std::env::var_os("BAILEYS_CACHE_DIR").map_or_else(
        || Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/baileys"),
        PathBuf::from,
    );
    let task_dir = dir.clone();
    tokio::task::spawn_blocking(move || {
        let dir = task_dir;
        std::fs::create_dir_all(&dir).expect("create the Baileys cache directory");
        let installed = dir.join("node_modules/baileys/package.json");
        let wanted = BAILEYS.trim_start_matches("baileys@");
        let version_ok = std::fs::read_to_string(&installed)
            .ok()
            .and_then(|text| serde_json::from_str::<serde_json::Value>(&text).ok())
            .is_some_and(|package| package["version"] == wanted);
        if !version_ok {
            std::fs::write(
                dir.join("package.json"),
                r#"{"name":"wafleet-baileys-test","private":true}"#,
            )
            .expect("write the cache's package.json");
            let status = Command::new("npm")
                .args(["install", "--no-audit", "--no-fund", "--save-exact", BAILEYS])
                .current_dir(&dir)
                .status()
                .expect("run npm");
            assert!(status.success(), "npm install {BAILEYS} failed");
        }
        std::fs::write(dir.join("driver.mjs"), DRIVER).expect("write the driver");
    })
    .await
    .expect("the install task");
    Baileys { dir }
}

/// What the driver reports.
#[derive(Debug)]
pub enum Event {
    /// A QR code to show (a new one for each ref).
    Qr(String),
    /// Logged in as this JID.
    Open(String),
    /// The connection closed, with Baileys' status code.
    Close(Option<i64>),
    /// A text from someone else.
    Message {
        /// Its id.
        id: String,
        /// The text.
        text: String,
    },
    /// A text went out under this id.
    Sent(String),
    /// A command failed.
    Error(String),
}

/// One running driver.
pub struct Driver {
    /// The Node process.
    child: Child,
    /// Its stdin, for commands.
    stdin: ChildStdin,
    /// Its events, read by a thread.
    events: mpsc::UnboundedReceiver<Event>,
}

impl Driver {
    /// Starts Baileys on the credentials in `auth` against the front end at `url`, trusting
    /// certificate chains signed by `root`.
    pub fn spawn(baileys: &Baileys, url: &str, auth: &Path, root: &[u8; 32]) -> Driver {
        let root: String = root.iter().map(|b| format!("{b:02x}")).collect();
        let mut child = Command::new("node")
            .arg(baileys.dir.join("driver.mjs"))
            .arg(&baileys.dir)
            .arg(url)
            .arg(auth)
            .arg(root)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("start node");
        let stdin = child.stdin.take().expect("the driver's stdin");
        let stdout = child.stdout.take().expect("the driver's stdout");
        let (tx, events) = mpsc::unbounded_channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                let Ok(value) = serde_json::from_str::<serde_json::Value>(&line) else {
                    eprintln!("driver: {line}");
                    continue;
                };
                let text = |key: &str| value[key].as_str().unwrap_or_default().to_owned();
                let event = match value["event"].as_str() {
                    Some("qr") => Event::Qr(text("code")),
                    Some("open") => Event::Open(text("jid")),
                    Some("close") => {
                        eprintln!("driver: closed: {line}");
                        Event::Close(value["code"].as_i64())
                    }
                    Some("message") => Event::Message {
                        id: text("id"),
                        text: text("text"),
                    },
                    Some("sent") => Event::Sent(text("id")),
                    _ => Event::Error(line.clone()),
                };
                if tx.send(event).is_err() {
                    break;
                }
            }
        });
        Driver { child, stdin, events }
    }

    /// The next event, or a panic naming what was expected.
    pub async fn next(&mut self, limit: Duration, expecting: &str) -> Event {
        match tokio::time::timeout(limit, self.events.recv()).await {
            Ok(Some(event)) => event,
            Ok(None) => panic!("the driver ended while expecting {expecting}"),
            Err(_) => panic!("nothing within {limit:?} while expecting {expecting}"),
        }
    }

    /// Sends `text` to `to` (a JID).
    pub fn send(&mut self, to: &str, text: &str) {
        let command = serde_json::json!({"cmd": "send", "to": to, "text": text});
        writeln!(self.stdin, "{command}").expect("write to the driver");
    }

    /// Stops Baileys (its credentials saved) and waits for the process to end.
    pub async fn quit(mut self) {
        let _ = writeln!(self.stdin, r#"{{"cmd":"quit"}}"#);
        let deadline = tokio::time::Instant::now() + Duration::from_secs(15);
        while self.child.try_wait().ok().flatten().is_none() {
            if tokio::time::Instant::now() > deadline {
                let _ = self.child.kill();
                break;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

impl Drop for Driver {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
