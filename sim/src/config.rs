//! The simulator's settings: network behaviour, ban thresholds and where it listens.

use serde::{Deserialize, Serialize};

/// How the simulated WhatsApp network behaves. Every setting is also a `wafleet sim` flag and
/// environment variable; the control API reports the settings in force (`GET /control/config`).
#[derive(Clone, Debug, PartialEq, clap::Args, Serialize, Deserialize)]
pub struct SimConfig {
    /// Address to listen on (loopback unless the simulator must be reachable from elsewhere).
    #[arg(
        id = "sim_host",
        long = "sim-host",
        env = "WAFLEET_SIM_HOST",
        default_value = "127.0.0.1"
    )]
    pub host: String,

    /// Port for both the device WebSocket (`/ws`) and the control API (`/control`); 0 picks a free one.
    #[arg(id = "sim_port", long = "sim-port", env = "WAFLEET_SIM_PORT", default_value_t = 3100)]
    pub port: u16,

    /// Milliseconds the network waits before answering each request of a device (send, check, …).
    #[arg(long, env = "WAFLEET_SIM_LATENCY_MS", default_value_t = 5)]
    pub latency_ms: u64,

    /// Seconds a QR code stays valid before the next one replaces it.
    #[arg(long, env = "WAFLEET_SIM_QR_REFRESH_SECS", default_value_t = 20.0)]
    pub qr_refresh_secs: f64,

    /// QR codes shown before pairing fails as timed out (also bounds a pair code's life: this many
    /// QR periods).
    #[arg(long, env = "WAFLEET_SIM_QR_MAX_CODES", default_value_t = 6)]
    pub qr_max_codes: u32,

    /// Milliseconds from a send until the recipient's phone reports delivery.
    #[arg(long, env = "WAFLEET_SIM_DELIVERED_MS", default_value_t = 300)]
    pub delivered_ms: u64,

    /// Milliseconds from delivery until the recipient reads the message (when they read it).
    #[arg(long, env = "WAFLEET_SIM_READ_MS", default_value_t = 2000)]
    pub read_ms: u64,

    /// Probability (0-1) that a recipient reads a message; per-number rules override it.
    #[arg(long, env = "WAFLEET_SIM_READ_PROBABILITY", default_value_t = 0.8)]
    pub read_probability: f64,

    /// Probability (0-1) that a recipient replies to a message; per-number rules override it.
    #[arg(long, env = "WAFLEET_SIM_REPLY_PROBABILITY", default_value_t = 0.3)]
    pub reply_probability: f64,

    /// Milliseconds from reading until the reply arrives.
    #[arg(long, env = "WAFLEET_SIM_REPLY_MS", default_value_t = 5000)]
    pub reply_ms: u64,

    /// Ban an account that sends more than this many messages within one minute to numbers that
    /// never wrote to it (community reports put the limit around 5).
    #[arg(long, env = "WAFLEET_SIM_BAN_STRANGERS_PER_MINUTE", default_value_t = 5)]
    pub ban_strangers_per_minute: u32,

    /// Ban an account when more than this share (0-1) of its messages to strangers stays unreplied…
    #[arg(long, env = "WAFLEET_SIM_BAN_UNREPLIED_RATIO", default_value_t = 0.7)]
    pub ban_unreplied_ratio: f64,

    /// …once it has sent at least this many messages to strangers.
    #[arg(long, env = "WAFLEET_SIM_BAN_MIN_STRANGER_MESSAGES", default_value_t = 20)]
    pub ban_min_stranger_messages: u32,

    /// Seconds of reach-out timelock a first breach of the ban thresholds brings (messages to
    /// new chats refused with 463, existing chats untouched); a breach after one bans. 0: the
    /// first breach bans.
    #[arg(long, env = "WAFLEET_SIM_TIMELOCK_SECS", default_value_t = 3600)]
    pub timelock_secs: u64,

    /// Messages to new chats an account may send per 30-day cycle (refused with 475 beyond it);
    /// 0: no cap. WhatsApp tries the cap on some accounts: the control API sets one per account.
    #[arg(long, env = "WAFLEET_SIM_NEW_CHAT_CAP", default_value_t = 0)]
    pub new_chat_cap: u32,

    /// Personal chats WhatsApp pushes to a device when it is linked (history sync), each with a
    /// line from the contact and the account's answer, plus one group message a client must drop.
    #[arg(long, env = "WAFLEET_SIM_HISTORY_CHATS", default_value_t = 0)]
    pub history_chats: usize,

    /// Read and write buffer size of each WebSocket, in bytes; small buffers keep tens of
    /// thousands of idle sessions cheap.
    #[arg(long, env = "WAFLEET_SIM_WS_BUFFER_BYTES", default_value_t = 4096)]
    pub ws_buffer_bytes: usize,

    /// Port of the WhatsApp Web front end, where the real wa-rs client connects
    /// (`WA_SERVER_URL=ws://HOST:PORT/ws/chat`); unset: not started; 0 picks a free one.
    #[arg(long, env = "WAFLEET_SIM_WAWEB_PORT")]
    pub waweb_port: Option<u16>,
}

impl Default for SimConfig {
    fn default() -> Self {
        SimConfig {
            host: "127.0.0.1".into(),
            port: 3100,
            latency_ms: 5,
            qr_refresh_secs: 20.0,
            qr_max_codes: 6,
            delivered_ms: 300,
            read_ms: 2000,
            read_probability: 0.8,
            reply_probability: 0.3,
            reply_ms: 5000,
            ban_strangers_per_minute: 5,
            ban_unreplied_ratio: 0.7,
            ban_min_stranger_messages: 20,
            timelock_secs: 3600,
            new_chat_cap: 0,
            history_chats: 0,
            ws_buffer_bytes: 4096,
            waweb_port: None,
        }
    }
}

impl SimConfig {
    /// Settings for tests: a free port on loopback, tiny latencies, quick QR refresh, every
    /// message read and none replied (tests opt in to replies per number). Ban thresholds keep
    /// their defaults, but a breach bans at once (tests of timelocks impose them).
    pub fn for_tests() -> Self {
        SimConfig {
            port: 0,
            latency_ms: 0,
            qr_refresh_secs: 0.3,
            qr_max_codes: 20,
            delivered_ms: 20,
            read_ms: 40,
            read_probability: 1.0,
            reply_probability: 0.0,
            reply_ms: 50,
            timelock_secs: 0,
            ..SimConfig::default()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Parser)]
    struct Cli {
        #[command(flatten)]
        sim: SimConfig,
    }

    #[test]
    fn flag_defaults_match_default() {
        let cli = Cli::try_parse_from(["sim"]).expect("defaults parse");
        assert_eq!(cli.sim, SimConfig::default());
    }
}
