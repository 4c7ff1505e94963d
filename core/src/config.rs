//! Typed configuration: defaults, then an optional TOML file, then environment, then flags.
//!
//! Every setting is a `clap` argument with an environment variable, so `wafleet --help` lists them
//! all. The file layer sits between defaults and environment: a key in the file is used only where
//! neither a flag nor an environment variable set the value.

use std::ffi::OsString;
use std::fmt;
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::str::FromStr;

use anyhow::{Context, bail};
use clap::parser::ValueSource;
use clap::{ArgMatches, CommandFactory, FromArgMatches};

use crate::egress::AllowedHosts;
use crate::types::Country;

/// A string that never shows in `Debug` or logs (database URLs with passwords, admin password).
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    /// The secret value; call only where it is used, never to log it.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret([redacted])")
    }
}

impl FromStr for Secret {
    type Err = std::convert::Infallible;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Ok(Secret(s.to_owned()))
    }
}

impl From<&str> for Secret {
    fn from(s: &str) -> Self {
        Secret(s.to_owned())
    }
}

/// How log lines are written.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum LogFormat {
    /// Human-readable lines.
    Text,
    /// One JSON object per line, for log shippers.
    Json,
}

/// Which WhatsApp network the workers' sessions connect to.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum LinkChoice {
    /// The real WhatsApp, through the whatsapp-rust client.
    Whatsapp,
    /// The project's network simulator (`wafleet sim`) at `SIMULATOR_URL`.
    Simulator,
}

/// A WhatsApp Web version, `major.minor.patch` (e.g. `2.3000.1023456789`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct AppVersion(pub u32, pub u32, pub u32);

impl FromStr for AppVersion {
    type Err = String;

    fn from_str(input: &str) -> Result<Self, Self::Err> {
        let parts: Vec<u32> = input
            .trim()
            .split('.')
            .map(str::parse)
            .collect::<Result<_, _>>()
            .map_err(|_| format!("`{input}` is not a version: use three numbers such as 2.3000.1023456789"))?;
        match parts.as_slice() {
            [major, minor, patch] => Ok(AppVersion(*major, *minor, *patch)),
            _ => Err(format!(
                "`{input}` is not a version: use three numbers such as 2.3000.1023456789"
            )),
        }
    }
}

/// Where data lives, resolved from [`Settings::database_url`] and [`Settings::data_dir`].
#[derive(Clone, Debug)]
pub enum DatabaseTarget {
    /// An SQLite file (the embedded default).
    Sqlite(PathBuf),
    /// A PostgreSQL server (scale-out).
    Postgres(Secret),
}

/// Every setting of every role.
#[derive(Clone, Debug, clap::Args)]
#[command(next_help_heading = "Settings (flag, environment variable, or key of the --config file)")]
pub struct Settings {
    /// TOML file with settings; keys are the flag names with `_` (e.g. `database_url = "…"`).
    #[arg(long, env = "WAFLEET_CONFIG", global = true, value_name = "FILE")]
    pub config: Option<PathBuf>,

    /// Directory for the embedded SQLite database and other local files.
    #[arg(long, env = "DATA_DIR", global = true, default_value = "./data", value_name = "DIR")]
    pub data_dir: PathBuf,

    /// `postgres://user:pass@host/db` for scale-out, `sqlite://path` for a chosen SQLite file.
    /// Unset: SQLite at `<data_dir>/wafleet.db`.
    #[arg(
        long,
        env = "DATABASE_URL",
        global = true,
        value_name = "URL",
        hide_env_values = true
    )]
    pub database_url: Option<Secret>,

    /// Largest number of pooled database connections per process.
    #[arg(long, env = "DATABASE_MAX_CONNECTIONS", global = true, default_value_t = 10)]
    pub database_max_connections: u32,

    /// `redis://host:6379` for the scale-out queue and leases. Unset: the embedded queue.
    #[arg(long, env = "REDIS_URL", global = true, value_name = "URL", hide_env_values = true)]
    pub redis_url: Option<Secret>,

    /// Prefix of every queue name, so several deployments can share one Redis.
    #[arg(long, env = "QUEUE_NAMESPACE", global = true, default_value = "wafleet")]
    pub queue_namespace: String,

    /// Address to listen on. Use 0.0.0.0 in containers.
    #[arg(long, env = "HOST", global = true, default_value = "127.0.0.1")]
    pub host: IpAddr,

    /// HTTP port (`APP_PORT` is accepted too, for compatibility).
    #[arg(long, env = "PORT", global = true, default_value_t = 3000)]
    pub port: u16,

    /// Country used for phone numbers written without an international prefix: ISO code
    /// (`MY`) or calling code (`+60`).
    #[arg(long, env = "DEFAULT_COUNTRY", global = true, default_value = "MY")]
    pub default_country: Country,

    /// Email of an administrator created at start-up when no account has it yet.
    #[arg(long, env = "ADMIN_EMAIL", global = true, requires = "admin_password")]
    pub admin_email: Option<String>,

    /// Password for `admin_email` (used only when that account is created).
    #[arg(long, env = "ADMIN_PASSWORD", global = true, hide_env_values = true)]
    pub admin_password: Option<Secret>,

    /// Whether anyone may register an account (the first account becomes administrator).
    #[arg(long, env = "ALLOW_REGISTRATION", global = true, default_value_t = true,
          action = clap::ArgAction::Set, value_parser = clap::builder::BoolishValueParser::new())]
    pub allow_registration: bool,

    /// Mark cookies `Secure` (set this when wafleet is served over HTTPS).
    #[arg(long, env = "COOKIE_SECURE", global = true, default_value_t = false,
          action = clap::ArgAction::Set, value_parser = clap::builder::BoolishValueParser::new())]
    pub cookie_secure: bool,

    /// How long a login session lasts, in hours.
    #[arg(long, env = "SESSION_TTL_HOURS", global = true, default_value_t = 24 * 14)]
    pub session_ttl_hours: u32,

    /// Failed logins allowed per account within `login_lockout_secs` before logins are refused
    /// (an IP address gets four times as many, so one office behind NAT is not locked out).
    #[arg(long, env = "LOGIN_MAX_FAILURES", global = true, default_value_t = 5)]
    pub login_max_failures: u32,

    /// Window and lockout time for failed logins, in seconds.
    #[arg(long, env = "LOGIN_LOCKOUT_SECS", global = true, default_value_t = 900)]
    pub login_lockout_secs: u64,

    /// Messages one API token may send per minute through MCP tools, on top of each device's
    /// own pacing (agents retry and loop; this bounds what one token can queue).
    #[arg(long, env = "MCP_SENDS_PER_MINUTE", global = true, default_value_t = 20)]
    pub mcp_sends_per_minute: u32,

    /// Take the client address from `X-Forwarded-For` (only behind a proxy you control).
    #[arg(long, env = "TRUST_PROXY_HEADERS", global = true, default_value_t = false,
          action = clap::ArgAction::Set, value_parser = clap::builder::BoolishValueParser::new())]
    pub trust_proxy_headers: bool,

    /// Largest accepted request body, in bytes.
    #[arg(long, env = "MAX_BODY_BYTES", global = true, default_value_t = 1024 * 1024)]
    pub max_body_bytes: usize,

    /// Largest accepted body on the routes that take a media file (`POST /send/image`), in
    /// bytes: clients of the compatible API send photos of up to 20 MB. Every image is still
    /// checked for its pixel count before it is decoded.
    #[arg(long, env = "MAX_MEDIA_BYTES", global = true, default_value_t = 20 * 1024 * 1024)]
    pub max_media_bytes: usize,

    /// Where the files of received messages (pictures, videos, voice notes, documents, stickers)
    /// are kept; unset: `<data_dir>/media`. In scale-out, every API and worker process must see
    /// the same directory (a shared volume).
    #[arg(long, env = "MEDIA_DIR", global = true, value_name = "DIR")]
    pub media_dir: Option<PathBuf>,

    /// Keep those files in an S3-compatible bucket instead (AWS S3, MinIO, Cloudflare R2, …):
    /// `s3://bucket` or `s3://bucket/prefix`, shared by every process with nothing to mount. The
    /// standard `AWS_*` variables give the credentials, region and server (`AWS_ACCESS_KEY_ID`,
    /// `AWS_SECRET_ACCESS_KEY`, `AWS_REGION`, `AWS_ENDPOINT` for a server other than AWS,
    /// `AWS_ALLOW_HTTP=true` for one without TLS). Used instead of `MEDIA_DIR` when set.
    #[arg(long, env = "MEDIA_URL", global = true, value_name = "URL")]
    pub media_url: Option<String>,

    /// Options of that bucket beside the `AWS_*` variables, by object_store's names
    /// (`aws_endpoint`, `aws_access_key_id`, …), for programs that start wafleet's roles
    /// themselves; not a flag or a variable.
    #[arg(skip)]
    pub media_options: Vec<(String, Secret)>,

    /// Largest file of a received message that workers fetch and keep, in bytes; a larger one is
    /// listed with its message but not kept (WhatsApp allows documents of up to 2 GB).
    #[arg(long, env = "MAX_RECEIVED_MEDIA_BYTES", global = true, default_value_t = 100 * 1024 * 1024)]
    pub max_received_media_bytes: u64,

    /// Seconds in-flight work gets to finish after SIGTERM before the process exits.
    #[arg(long, env = "SHUTDOWN_TIMEOUT_SECS", global = true, default_value_t = 30)]
    pub shutdown_timeout_secs: u64,

    /// Which WhatsApp network workers connect to: `whatsapp` (real, through whatsapp-rust) or `simulator`.
    #[arg(long, env = "WHATSAPP_LINK", global = true, value_enum, default_value_t = LinkChoice::Whatsapp)]
    pub whatsapp_link: LinkChoice,

    /// WebSocket URL of the network simulator, used when `WHATSAPP_LINK=simulator`.
    #[arg(long, env = "SIMULATOR_URL", global = true, default_value = "ws://127.0.0.1:3100/ws")]
    pub simulator_url: String,

    /// WhatsApp server URL for the whatsapp-rust client; unset means the real WhatsApp (for testing against
    /// a protocol-level server).
    #[arg(long, env = "WA_SERVER_URL", global = true)]
    pub wa_server_url: Option<String>,

    /// WhatsApp Web version the whatsapp-rust client announces; unset fetches the current one from
    /// web.whatsapp.com (set it with `WA_SERVER_URL`, or where that host is unreachable).
    #[arg(long, env = "WA_APP_VERSION", global = true)]
    pub wa_app_version: Option<AppVersion>,

    /// The secret that encrypts WhatsApp key material (Signal and Noise keys, sessions, app-state
    /// keys, link credentials) in the database: 32 random bytes in base64, from `wafleet keys
    /// generate`. Required by `worker` and `serve` with PostgreSQL. Unset with SQLite: the key
    /// file `<data_dir>/wa-keys.secret`, created on first start (back it up apart from the database).
    #[arg(
        long,
        env = "WA_KEYS_SECRET",
        global = true,
        hide_env_values = true,
        value_name = "BASE64"
    )]
    pub wa_keys_secret: Option<Secret>,

    /// A file holding `WA_KEYS_SECRET` (e.g. a mounted secret), instead of the value itself.
    #[arg(long, env = "WA_KEYS_SECRET_FILE", global = true, value_name = "FILE")]
    pub wa_keys_secret_file: Option<PathBuf>,

    /// During a key rotation, the old secret: rows sealed with it are still read, and moved to
    /// `WA_KEYS_SECRET` in the background. Remove it once `wafleet keys status` shows no row on it.
    #[arg(
        long,
        env = "WA_KEYS_SECRET_PREVIOUS",
        global = true,
        hide_env_values = true,
        value_name = "BASE64"
    )]
    pub wa_keys_secret_previous: Option<Secret>,

    /// A file holding `WA_KEYS_SECRET_PREVIOUS`, instead of the value itself.
    #[arg(long, env = "WA_KEYS_SECRET_PREVIOUS_FILE", global = true, value_name = "FILE")]
    pub wa_keys_secret_previous_file: Option<PathBuf>,

    /// Seconds a worker's claim on a device lasts without renewal. A worker whose process died is
    /// noticed sooner on PostgreSQL (its connection, and the liveness lock on it, go with it); this
    /// bounds the move of a worker that is cut off but still running.
    #[arg(long, env = "LEASE_TTL_SECS", global = true, default_value_t = 15)]
    pub lease_ttl_secs: u64,

    /// Seconds a cached read (chat list, messages page, device) may be served before it is read
    /// again; writes invalidate it sooner. 0 turns the read cache off.
    #[arg(long, env = "READ_CACHE_TTL_SECS", global = true, default_value_t = 5)]
    pub read_cache_ttl_secs: u64,

    /// Memory the read cache of one API process may use, in MiB.
    #[arg(long, env = "READ_CACHE_MIB", global = true, default_value_t = 64)]
    pub read_cache_mib: u64,

    /// Most device sessions one worker holds.
    #[arg(long, env = "WORKER_CAPACITY", global = true, default_value_t = 5000)]
    pub worker_capacity: u32,

    /// Devices one worker claims (sessions it opens) per second at most, so thousands of devices
    /// do not reconnect to WhatsApp at the same instant after a worker dies or the fleet restarts.
    /// A dead worker's devices are held again after about two seconds (on PostgreSQL, where its
    /// death is noticed by its lost connection; `LEASE_TTL_SECS` otherwise) plus its devices ÷
    /// (live workers × this).
    #[arg(long, env = "WORKER_CLAIM_RATE", global = true, default_value_t = 250,
        value_parser = clap::value_parser!(u32).range(1..=10_000))]
    pub worker_claim_rate: u32,

    /// Seconds a send that left for WhatsApp without a confirmation (its worker died, the answer
    /// timed out) waits for a delivery or read receipt naming its id before it is marked failed
    /// with "outcome unknown". It is never sent again; a receipt that comes later still marks it
    /// delivered.
    #[arg(long, env = "SEND_CONFIRM_WAIT_SECS", global = true, default_value_t = 60)]
    pub send_confirm_wait_secs: u64,

    /// Name of this worker in leases and metrics (default: host name, process id and a random suffix).
    #[arg(long, env = "WORKER_ID", global = true)]
    pub worker_id: Option<String>,

    /// Seconds an API request waits for the worker holding a device (QR code, pair code, number
    /// check) before answering 503.
    #[arg(long, env = "WORKER_WAIT_SECS", global = true, default_value_t = 15)]
    pub worker_wait_secs: u64,

    /// Seconds a webhook receiver has to answer one delivery before the attempt counts as failed.
    #[arg(long, env = "WEBHOOK_TIMEOUT_SECS", global = true, default_value_t = 10)]
    pub webhook_timeout_secs: u64,

    /// Attempts at delivering one webhook event before it is marked dead (and can be replayed).
    #[arg(long, env = "WEBHOOK_MAX_ATTEMPTS", global = true, default_value_t = 6,
        value_parser = clap::value_parser!(u32).range(1..=20))]
    pub webhook_max_attempts: u32,

    /// Wait before the first webhook retry, in milliseconds; each next retry waits about twice as
    /// long (with jitter), up to ten minutes.
    #[arg(long, env = "WEBHOOK_FIRST_RETRY_MS", global = true, default_value_t = 1000)]
    pub webhook_first_retry_ms: u64,

    /// How often each worker looks for newly recorded webhook events to queue, in milliseconds;
    /// the webhook queue is checked for due retries at twice this.
    #[arg(long, env = "WEBHOOK_POLL_MS", global = true, default_value_t = 500)]
    pub webhook_poll_ms: u64,

    /// Internal hosts webhooks may be delivered to, comma-separated: host names (matched exactly),
    /// addresses or networks, e.g. `hooks.internal,10.1.2.3,10.0.0.0/8`. Webhooks reach public
    /// addresses only otherwise: loopback, private, link-local, unique-local and other
    /// special-purpose addresses are refused when a URL is saved and again at every delivery.
    #[arg(
        long,
        env = "WEBHOOK_ALLOWED_HOSTS",
        global = true,
        default_value = "",
        value_name = "HOSTS"
    )]
    pub webhook_allowed_hosts: AllowedHosts,

    /// Days webhook deliveries stay listed before housekeeping removes them.
    #[arg(long, env = "WEBHOOK_KEEP_DAYS", global = true, default_value_t = 7)]
    pub webhook_keep_days: u64,

    /// Log line format.
    #[arg(long, env = "LOG_FORMAT", global = true, value_enum, default_value_t = LogFormat::Text)]
    pub log_format: LogFormat,
}

/// Environment variables accepted as second names of a setting: `(setting id, variable)`.
const ENV_ALIASES: &[(&str, &str)] = &[("port", "APP_PORT")];

impl Settings {
    /// The defaults alone, ignoring environment and files (for tests and tools).
    pub fn defaults() -> Self {
        #[derive(clap::Parser)]
        struct Only {
            #[command(flatten)]
            settings: Settings,
        }
        let cmd = Only::command().mut_args(|arg| arg.env(None));
        let matches = cmd.get_matches_from(["wafleet"]);
        Only::from_arg_matches(&matches).expect("defaults are valid").settings
    }

    /// Resolves which database to use.
    pub fn database(&self) -> anyhow::Result<DatabaseTarget> {
        let Some(url) = &self.database_url else {
            return Ok(DatabaseTarget::Sqlite(self.data_dir.join("wafleet.db")));
        };
        let raw = url.expose();
        if raw.starts_with("postgres://") || raw.starts_with("postgresql://") {
            Ok(DatabaseTarget::Postgres(url.clone()))
        } else if let Some(path) = raw.strip_prefix("sqlite://").or_else(|| raw.strip_prefix("sqlite:")) {
            let path = path.split('?').next().unwrap_or_default();
            if path.is_empty() {
                bail!("DATABASE_URL `sqlite://` names no file: use e.g. sqlite://./data/wafleet.db");
            }
            Ok(DatabaseTarget::Sqlite(PathBuf::from(path)))
        } else {
            bail!(
                "DATABASE_URL must start with postgres://, postgresql:// or sqlite:// (got a URL with another scheme)"
            )
        }
    }
}

/// Parses `C` from the command line, environment and the optional config file, in that order of
/// precedence (flags win). Exits with a usage message on invalid input, like `clap` does.
pub fn parse_layered<C: clap::Parser>() -> anyhow::Result<C> {
    parse_layered_from(std::env::args_os().collect())
}

/// [`parse_layered`] with an explicit argument list (the first item is the program name).
pub fn parse_layered_from<C: clap::Parser>(argv: Vec<OsString>) -> anyhow::Result<C> {
    let cmd = C::command();
    let first = cmd.clone().get_matches_from(argv.clone());
    // Values to add as flags, by setting id: an alias variable first, then the file.
    let mut layered = std::collections::BTreeMap::new();
    for (id, var) in ENV_ALIASES {
        if let Ok(value) = std::env::var(var) {
            layered.insert((*id).to_owned(), value);
        }
    }
    if let Some(path) = first.get_one::<PathBuf>("config") {
        let known: Vec<String> = cmd.get_arguments().map(|a| a.get_id().to_string()).collect();
        for (key, value) in read_config_file(path)? {
            let id = key.replace('-', "_");
            if !known.contains(&id) || id == "config" {
                bail!(
                    "unknown setting `{key}` in {}; see `wafleet --help` for the names",
                    path.display()
                );
            }
            layered.entry(id).or_insert(value);
        }
    }
    // Only settings that neither a flag nor their own variable set take a layered value.
    let extra: Vec<OsString> = layered
        .into_iter()
        .filter(|(id, _)| is_default(&first, id))
        .map(|(id, value)| OsString::from(format!("--{}={value}", id.replace('_', "-"))))
        .collect();
    if extra.is_empty() {
        return Ok(C::from_arg_matches(&first)?);
    }
    // Global settings may follow the subcommand, so appending keeps the user's own arguments intact.
    let layered = cmd.get_matches_from(argv.into_iter().chain(extra));
    Ok(C::from_arg_matches(&layered)?)
}

fn is_default(matches: &ArgMatches, id: &str) -> bool {
    matches!(matches.value_source(id), None | Some(ValueSource::DefaultValue))
}

fn read_config_file(path: &Path) -> anyhow::Result<Vec<(String, String)>> {
    let text = std::fs::read_to_string(path).with_context(|| format!("cannot read config file {}", path.display()))?;
    let table: toml::Table = text
        .parse()
        .with_context(|| format!("config file {} is not valid TOML", path.display()))?;
    table
        .into_iter()
        .map(|(key, value)| {
            let value = match value {
                toml::Value::String(s) => s,
                toml::Value::Integer(i) => i.to_string(),
                toml::Value::Boolean(b) => b.to_string(),
                other => bail!(
                    "setting `{key}` in {} must be a string, number or boolean, not {}",
                    path.display(),
                    other.type_str()
                ),
            };
            Ok((key, value))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_use_sqlite_under_data_and_port_3000() {
        let settings = Settings::defaults();
        assert_eq!(settings.port, 3000);
        match settings.database().unwrap() {
            DatabaseTarget::Sqlite(path) => assert_eq!(path, PathBuf::from("./data/wafleet.db")),
            other => panic!("expected SQLite, got {other:?}"),
        }
    }

    #[test]
    fn database_url_schemes() {
        let mut settings = Settings::defaults();
        settings.database_url = Some("postgres://u:p@h/db".into());
        assert!(matches!(settings.database().unwrap(), DatabaseTarget::Postgres(_)));
        settings.database_url = Some("sqlite://other/x.db?mode=rwc".into());
        assert!(matches!(settings.database().unwrap(), DatabaseTarget::Sqlite(p) if p == Path::new("other/x.db")));
        settings.database_url = Some("mysql://h/db".into());
        let err = settings.database().unwrap_err().to_string();
        assert!(err.contains("must start with postgres://"), "{err}");
    }

    #[derive(clap::Parser, Debug)]
    struct Cli {
        #[command(flatten)]
        settings: Settings,
    }

    #[test]
    fn file_fills_defaults_and_flags_win() {
        let dir = std::env::temp_dir().join(format!("wafleet-config-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let file = dir.join("wafleet.toml");
        std::fs::write(&file, "port = 4001\nlog_format = \"json\"\nsession_ttl_hours = 2\n").unwrap();
        let argv = ["wafleet", "--config", file.to_str().unwrap(), "--port", "5000"];
        let cli: Cli = parse_layered_from(argv.iter().map(OsString::from).collect()).unwrap();
        assert_eq!(cli.settings.port, 5000, "a flag beats the file");
        assert_eq!(cli.settings.log_format, LogFormat::Json, "the file beats the default");
        assert_eq!(cli.settings.session_ttl_hours, 2);

        std::fs::write(&file, "no_such_setting = 1\n").unwrap();
        let err = parse_layered_from::<Cli>(
            ["wafleet", "--config", file.to_str().unwrap()]
                .iter()
                .map(OsString::from)
                .collect(),
        )
        .unwrap_err()
        .to_string();
        assert!(err.contains("unknown setting `no_such_setting`"), "{err}");
    }

    #[test]
    fn app_versions_need_three_numbers() {
        assert_eq!(
            "2.3000.1023456789".parse::<AppVersion>().unwrap(),
            AppVersion(2, 3000, 1_023_456_789)
        );
        for bad in ["", "2.3000", "2.x.1", "1.2.3.4"] {
            assert!(bad.parse::<AppVersion>().is_err(), "{bad:?}");
        }
    }

    #[test]
    fn webhook_allowed_hosts_are_parsed_at_start_up() {
        assert_eq!(Settings::defaults().webhook_allowed_hosts, AllowedHosts::default());
        let argv = ["wafleet", "--webhook-allowed-hosts", "hooks.internal, 10.0.0.0/8"];
        let cli: Cli = parse_layered_from(argv.iter().map(OsString::from).collect()).unwrap();
        assert!(cli.settings.webhook_allowed_hosts.allows_name("hooks.internal"));
        assert_eq!(
            cli.settings.webhook_allowed_hosts.refusal("10.1.2.3".parse().unwrap()),
            None
        );
    }

    #[test]
    fn secrets_do_not_show_in_debug() {
        let mut settings = Settings::defaults();
        settings.database_url = Some("postgres://u:hunter2@h/db".into());
        settings.wa_keys_secret = Some("c2VjcmV0LWtleS1ieXRlcw==".into());
        settings.wa_keys_secret_previous = Some("b2xkLXNlY3JldA==".into());
        let shown = format!("{settings:?}");
        assert!(!shown.contains("hunter2"));
        assert!(!shown.contains("c2VjcmV0") && !shown.contains("b2xkLXNl"), "{shown}");
    }
}
