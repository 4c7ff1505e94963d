//! Baileys, the JavaScript WhatsApp Web client behind WAHA and Evolution API, as a second real
//! client of the WhatsApp Web front end: the pinned release installed into a cache directory,
//! and one Node process (`driver.mjs`) holding one or many of its sessions, spoken to in JSON
//! lines. The `baileys` test runs it for correctness, `wafleet-bench sessions --link wa` for its
//! memory beside wafleet's. Needs Node 20 and npm.

use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::time::Duration;

use anyhow::{Context, bail};
use tokio::sync::mpsc;

/// The Baileys release: pinned, as a new release may change what it sends.
const BAILEYS: &str = "baileys@7.0.0-rc14";

/// The driver script, written next to the installed package.
const DRIVER: &str = include_str!("driver.mjs");

/// A directory holding the installed Baileys and the driver.
pub struct Baileys {
    /// The cache directory.
    dir: PathBuf,
}

impl Baileys {
    /// Installs the pinned Baileys into the cache directory (`BAILEYS_CACHE_DIR`, default
    /// `target/baileys` of this repository) unless it is there already.
    pub async fn install() -> anyhow::Result<Baileys> {
        if Command::new("node").arg("--version").output().is_err() {
            bail!("node is not installed: install Node 20 and npm (infra/test does, from Debian's packages)");
        }
        let dir = std::env::var_os("BAILEYS_CACHE_DIR").map_or_else(
            || Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/baileys"),
            PathBuf::from,
        );
        let task_dir = dir.clone();
        tokio::task::spawn_blocking(move || install_into(&task_dir)).await??;
        Ok(Baileys { dir })
    }

    /// A fresh directory for one session's credentials.
    pub fn auth_dir(&self) -> PathBuf {
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos());
        self.dir.join(format!("auth-{}-{nanos}", std::process::id()))
    }
}

fn install_into(dir: &Path) -> anyhow::Result<()> {
    std::fs::create_dir_all(dir).context("creating the Baileys cache directory")?;
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
        .context("writing the cache's package.json")?;
        let status = Command::new("npm")
            .args(["install", "--no-audit", "--no-fund", "--save-exact", BAILEYS])
            .current_dir(dir)
            .status()
            .context("running npm")?;
        if !status.success() {
            bail!("npm install {BAILEYS} failed");
        }
    }
    std::fs::write(dir.join("driver.mjs"), DRIVER).context("writing the driver")
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
    /// The garbage collection asked for has run (`forced` false: Node was started without
    /// `--expose-gc`), leaving this many bytes of JavaScript heap in use.
    Gc {
        /// Whether a full collection ran.
        forced: bool,
        /// V8's `heapUsed` after it.
        heap_used: u64,
    },
    /// A command failed.
    Error(String),
}

/// One Node process holding Baileys sessions; killed when dropped.
pub struct Driver {
    /// The Node process.
    child: Child,
    /// Its stdin, for commands.
    stdin: ChildStdin,
    /// Its events with the session each is of (0 for the process's own), read by a thread.
    events: mpsc::UnboundedReceiver<(usize, Event)>,
}

impl Driver {
    /// Starts Node with no session yet, against the front end at `url`, trusting certificate
    /// chains signed by `root`. Node runs with `--expose-gc`, so [`Driver::gc`] can force a
    /// full collection.
    pub fn spawn(baileys: &Baileys, url: &str, root: &[u8; 32]) -> anyhow::Result<Driver> {
        let root: String = root.iter().map(|b| format!("{b:02x}")).collect();
        let mut child = Command::new("node")
            .arg("--expose-gc")
            .arg(baileys.dir.join("driver.mjs"))
            .arg(&baileys.dir)
            .arg(url)
            .arg(root)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .context("starting node")?;
        let stdin = child.stdin.take().context("the driver's stdin")?;
        let stdout = child.stdout.take().context("the driver's stdout")?;
        let (tx, events) = mpsc::unbounded_channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                let Some(event) = parse(&line) else {
                    eprintln!("driver: {line}");
                    continue;
                };
                if tx.send(event).is_err() {
                    break;
                }
            }
        });
        Ok(Driver { child, stdin, events })
    }

    /// The Node process's id (for its memory and CPU in `/proc`).
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Opens session `session` on the credentials in `auth`: a fresh directory shows QR codes
    /// until a phone scans one, stored credentials log in.
    pub fn open(&mut self, session: usize, auth: &Path) -> anyhow::Result<()> {
        self.command(serde_json::json!({"cmd": "open", "session": session, "auth": auth}))
    }

    /// The next event and the session it is of; fails when the driver ended or nothing came
    /// within `limit`.
    pub async fn next(&mut self, limit: Duration) -> anyhow::Result<(usize, Event)> {
        match tokio::time::timeout(limit, self.events.recv()).await {
            Ok(Some(event)) => Ok(event),
            Ok(None) => bail!("the Baileys driver ended"),
            Err(_) => bail!("nothing from the Baileys driver within {limit:?}"),
        }
    }

    /// Session `session` sends `text` to `to` (a JID).
    pub fn send(&mut self, session: usize, to: &str, text: &str) -> anyhow::Result<()> {
        self.command(serde_json::json!({"cmd": "send", "session": session, "to": to, "text": text}))
    }

    /// Asks for a full garbage collection; [`Event::Gc`] follows.
    pub fn gc(&mut self) -> anyhow::Result<()> {
        self.command(serde_json::json!({"cmd": "gc"}))
    }

    fn command(&mut self, command: serde_json::Value) -> anyhow::Result<()> {
        writeln!(self.stdin, "{command}").context("writing to the Baileys driver")
    }

    /// Stops every session (credentials saved) and waits for the process to end.
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

/// One line of the driver's output as an event and its session; `None` when it is not JSON.
fn parse(line: &str) -> Option<(usize, Event)> {
    let value = serde_json::from_str::<serde_json::Value>(line).ok()?;
    let text = |key: &str| value[key].as_str().unwrap_or_default().to_owned();
    let event = match value["event"].as_str() {
        Some("qr") => Event::Qr(text("code")),
        Some("open") => Event::Open(text("jid")),
        Some("close") => Event::Close(value["code"].as_i64()),
        Some("message") => Event::Message {
            id: text("id"),
            text: text("text"),
        },
        Some("sent") => Event::Sent(text("id")),
        Some("gc") => Event::Gc {
            forced: value["forced"].as_bool().unwrap_or(false),
            heap_used: value["heapUsed"].as_u64().unwrap_or(0),
        },
        _ => Event::Error(line.to_owned()),
    };
    let session = value["session"].as_u64().unwrap_or(0) as usize;
    Some((session, event))
}
