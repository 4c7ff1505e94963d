//! Campaign: a campaign to many leads, created through the API, dispatched by the real scheduler
//! (listed and its first sends recorded), then sent by the workers against the simulator under a
//! pacing policy fast enough to observe, set through `PUT /api/devices/{id}/pacing`.
//!
//! The figures are the time from the campaign's due instant until every recipient is listed and
//! until the first round of sends is recorded, and the send rate against what the pace allows.
//! The check is that no device sent faster than its pace, over its daily cap, or to anyone twice,
//! from the simulator's own record of what each account sent and from the send times in the
//! database. The ceiling is a bare `INSERT … SELECT` of the same recipient rows into the same
//! table.

mod check;

use std::collections::HashMap;
use std::time::{Duration, Instant};

use anyhow::{Context, ensure};
use wafleet_core::db::Pacing;
use wafleet_core::types::{Timestamp, UserId};

use crate::client::ApiClient;
use crate::cluster::{Cluster, Link, Topology};
use crate::report::{Row, thousands};
use crate::{Common, fleet};

/// Settings of the campaign scenario.
#[derive(clap::Parser, Clone, Debug)]
pub struct Options {
    /// Recipients of the campaign (leads of its niche), spread evenly over the devices.
    #[arg(long, default_value_t = 100_000)]
    pub recipients: u64,
    /// The devices and their pace.
    #[command(flatten)]
    pub pace: Pace,
}

/// The devices a paced scenario (campaign, sequences) sends from and the pace each is given.
#[derive(clap::Args, Clone, Debug)]
pub struct Pace {
    /// Devices it goes out from (one user's).
    #[arg(long, default_value_t = 20)]
    pub devices: usize,
    /// Each device's pace (`per_minute` of its pacing policy).
    #[arg(long, default_value_t = 60)]
    pub per_minute: i64,
    /// Each device's daily cap; reached within the run, so that the cap is seen to hold.
    #[arg(long, default_value_t = 75)]
    pub daily_cap: i64,
    /// Seconds the workers send for, from the moment the first round of sends is recorded (a
    /// holder finds new sends within its 5 s sweep).
    #[arg(long, default_value_t = 90)]
    pub send_secs: u64,
}

impl Pace {
    /// The small run CI makes.
    pub(crate) fn smoke() -> Pace {
        Pace {
            devices: 4,
            per_minute: 120,
            daily_cap: 8,
            send_secs: 10,
        }
    }

    /// The flags that repeat it.
    pub(crate) fn flags(&self) -> String {
        format!(
            "--devices {} --per-minute {} --daily-cap {} --send-secs {}",
            self.devices, self.per_minute, self.daily_cap, self.send_secs
        )
    }

    /// The policy every device is given (see [`steady_policy`]).
    pub(crate) fn policy(&self) -> Pacing {
        steady_policy(self.per_minute, self.daily_cap)
    }

    /// Sends the first round records for `total` spread evenly: each device's two minutes of
    /// pace, or all of its share.
    pub(crate) fn first_round(&self, total: u64) -> i64 {
        self.devices as i64 * (self.per_minute * 2).min(total as i64 / self.devices as i64)
    }

    /// Sends a second the pace allows over all the devices.
    fn allowed(&self) -> f64 {
        self.devices as f64 * self.per_minute as f64 / 60.0
    }

    /// The rows of `scenario`'s paced sends (`sent` names them): their rate against what the pace
    /// allows, and the violations found (none, or the check would have failed).
    pub(crate) fn paced_rows(&self, scenario: &str, sent: &str, findings: &Findings, command: &str) -> [Row; 2] {
        let allowed = self.allowed();
        [
            Row::new(
                format!(
                    "{scenario}: {sent}/s while paced ({} a minute per device, {} devices, 3 workers)",
                    self.per_minute, self.devices
                ),
                format!("{:.1} sends/s", findings.rate),
                format!("{allowed:.1} sends/s (what the pace allows)"),
            )
            .ratio(findings.rate / allowed)
            .command(command),
            Row::new(
                format!("{scenario}: pacing violations (per-minute, daily cap, recipient twice)"),
                format!(
                    "0 in {} sends (at most {} in a minute, {} per device at most)",
                    thousands(findings.sends as u64),
                    findings.max_per_minute,
                    findings.max_per_device
                ),
                format!("≤ {} a minute, ≤ {} a day", self.per_minute, self.daily_cap),
            )
            .command(command),
        ]
    }
}

impl Default for Options {
    fn default() -> Self {
        <Options as clap::Parser>::parse_from(["campaign"])
    }
}

impl Options {
    fn smoke() -> Options {
        Options {
            recipients: 2_000,
            pace: Pace::smoke(),
        }
    }

    fn command(&self) -> String {
        format!(
            "wafleet-bench campaign --recipients {} {}",
            self.recipients,
            self.pace.flags()
        )
    }
}

/// A pace of `per_minute` with `daily_cap`, jitter off and nothing that pauses, so the pace is
/// the only limit and it is reached.
pub(crate) fn steady_policy(per_minute: i64, daily_cap: i64) -> Pacing {
    Pacing {
        enabled: true,
        per_minute,
        jitter_ms: 0,
        daily_cap,
        warmup_days: 0,
        warmup_first_day: 1,
        error_burst: 0,
        pause_minutes: 1,
        unreplied_max_percent: 100,
        unreplied_min_sends: 100_000,
    }
}

/// The simulator bans accounts that write to strangers quickly; the pace here is far above what
/// it tolerates, since the bench measures wafleet's pacing, not the ban model.
pub(crate) const SIM_ENV: [(&str, &str); 3] = [
    ("WAFLEET_SIM_BAN_STRANGERS_PER_MINUTE", "1000000"),
    ("WAFLEET_SIM_BAN_MIN_STRANGER_MESSAGES", "1000000"),
    ("WAFLEET_SIM_REPLY_PROBABILITY", "0"),
];

/// The niche of the generated leads and of the campaign.
pub(crate) const NICHE: &str = "bench";

/// Runs the scenario; fails on any pacing violation or recipient listed or sent twice.
pub async fn run(common: &Common, options: &Options) -> anyhow::Result<Vec<Row>> {
    let o = if common.smoke {
        Options::smoke()
    } else {
        options.clone()
    };
    let env: Vec<(&str, String)> = SIM_ENV.iter().map(|(k, v)| (*k, (*v).to_owned())).collect();
    let topology = Topology {
        apis: 1,
        ..Topology::SHIPPED
    };
    let cluster = Cluster::start(common, "campaign", topology, Link::Sim, &env).await?;
    let db = cluster.db();
    let devices = fleet::provision(&cluster, o.pace.devices).await?;
    let pool = fleet::postgres(db);
    let user: UserId = sqlx::query_scalar("SELECT user_id FROM devices LIMIT 1")
        .fetch_one(pool)
        .await?;
    let api = ApiClient::new(db, user, cluster.api_port(1)).await?;
    generate_leads(pool, o.recipients).await?;
    let policy = o.pace.policy();
    set_pacing(&api, &devices, &policy).await?;
    fleet::want_sessions(db).await?;
    fleet::wait_all_held(&cluster, o.pace.devices, "", Duration::from_secs(120)).await?;

    let due = next_tick(Timestamp::now().millis());
    let campaign = create_campaign(&api, &devices, due).await?;
    eprintln!(
        "[bench] campaign: {} due in {:.1} s",
        campaign,
        (due - Timestamp::now().millis()) as f64 / 1e3
    );
    let first_round = o.pace.first_round(o.recipients);
    let (listed_after, queued_after) = wait_dispatched(pool, campaign, due, o.recipients as i64, first_round).await?;
    eprintln!("[bench] campaign: listed {listed_after:.2} s after due, first round recorded {queued_after:.2} s after");

    tokio::time::sleep(Duration::from_secs(o.pace.send_secs)).await;
    wait_first_send(pool, Sends::Campaign(campaign), Duration::from_secs(90)).await?;
    let findings = check_sends(&cluster, &devices, Sends::Campaign(campaign), &policy).await?;
    cluster.stop_processes();
    let ceiling = ceiling(pool, campaign).await?;

    let command = o.command();
    let what = format!("{} recipients, {} devices", thousands(o.recipients), o.pace.devices);
    let mut rows = vec![
        Row::new(
            format!("campaign: due → every recipient listed ({what})"),
            format!("{listed_after:.2} s"),
            format!("{ceiling:.2} s (bare INSERT … SELECT of the same rows)"),
        )
        .ratio(listed_after / ceiling)
        .command(&command),
        Row::new(
            format!("campaign: due → first round of sends recorded ({what})"),
            format!("{queued_after:.2} s ({} sends)", thousands(first_round as u64)),
            "—",
        )
        .command(&command),
    ];
    rows.extend(o.pace.paced_rows("campaign", "sends", &findings, &command));
    rows.extend([Row::new(
        "campaign: sends closer than the pace's interval (bunched)",
        format!(
            "{} of {} gaps, shortest {} ms",
            thousands(findings.short_gaps as u64),
            thousands(findings.sends.saturating_sub(o.pace.devices) as u64),
            findings.min_gap_ms
        ),
        format!("0 gaps under {} ms", 60_000 / o.pace.per_minute - check::TOLERANCE_MS),
    )
    .command(&command)]);
    Ok(rows)
}

/// Gives every device `policy` through the API, and checks it was kept.
pub(crate) async fn set_pacing(api: &ApiClient, devices: &[fleet::Device], policy: &Pacing) -> anyhow::Result<()> {
    #[derive(serde::Deserialize)]
    struct Set {
        policy: Pacing,
    }
    for device in devices {
        let set: Set = api
            .call(
                reqwest::Method::PUT,
                &format!("/api/devices/{}/pacing", device.id.0),
                Some(policy),
            )
            .await?;
        ensure!(
            &set.policy == policy,
            "the API kept a different policy: {:?}",
            set.policy
        );
    }
    Ok(())
}

/// Whose sends a check reads.
#[derive(Clone, Copy, Debug)]
pub(crate) enum Sends {
    /// A campaign's, by id.
    Campaign(i64),
    /// A sequence's (every step), by id.
    Sequence(i64),
}

impl Sends {
    /// The performed sends: device, recipient, when, WhatsApp's id (`$1` the id).
    fn sql(self) -> &'static str {
        match self {
            Sends::Campaign(_) => {
                "SELECT o.device_id, o.recipient, o.sent_at, o.wa_message_id FROM campaign_recipients r \
                 JOIN outbound_messages o ON o.id = r.outbound_id \
                 WHERE r.campaign_id = $1 AND o.status IN ('sent', 'delivered', 'read')"
            }
            Sends::Sequence(_) => {
                "SELECT o.device_id, o.recipient, o.sent_at, o.wa_message_id FROM sequence_sends ss \
                 JOIN sequence_enrolments e ON e.id = ss.enrolment_id JOIN outbound_messages o ON o.id = ss.outbound_id \
                 WHERE e.sequence_id = $1 AND o.status IN ('sent', 'delivered', 'read')"
            }
        }
    }

    fn id(self) -> i64 {
        match self {
            Sends::Campaign(id) | Sends::Sequence(id) => id,
        }
    }

    /// How many went out so far.
    async fn count(self, pool: &sqlx::PgPool) -> anyhow::Result<i64> {
        let sql = format!("SELECT COUNT(*) FROM ({}) s", self.sql());
        Ok(sqlx::query_scalar(sqlx::AssertSqlSafe(sql))
            .bind(self.id())
            .fetch_one(pool)
            .await?)
    }
}

/// The next whole minute at least 5 s away: campaign dispatch runs at the start of every minute.
fn next_tick(now_ms: i64) -> i64 {
    (now_ms + 5_000).div_euclid(60_000) * 60_000 + 60_000
}

/// `count` leads of the niche, spread evenly over the user's devices, in one statement.
pub(crate) async fn generate_leads(pool: &sqlx::PgPool, count: u64) -> anyhow::Result<()> {
    let started = Instant::now();
    let devices: Vec<i64> = sqlx::query_scalar("SELECT id FROM devices ORDER BY id")
        .fetch_all(pool)
        .await?;
    sqlx::query(
        "INSERT INTO leads (device_id, name, phone, niche, created_at, updated_at) \
         SELECT ($1::BIGINT[])[1 + n % $2], 'Lead ' || n, '+6017' || lpad(n::TEXT, 8, '0'), $3, $4, $4 \
         FROM generate_series(0, $5 - 1) AS n",
    )
    .bind(&devices)
    .bind(devices.len() as i64)
    .bind(NICHE)
    .bind(Timestamp::now())
    .bind(count as i64)
    .execute(pool)
    .await
    .context("generating leads")?;
    sqlx::query("ANALYZE leads").execute(pool).await?;
    eprintln!(
        "[bench] {} leads written in {:.1?}",
        thousands(count),
        started.elapsed()
    );
    Ok(())
}

/// The campaign, created through the API to go out at `due` (UTC ms) from every device.
async fn create_campaign(api: &ApiClient, devices: &[fleet::Device], due: i64) -> anyhow::Result<i64> {
    #[derive(serde::Deserialize)]
    struct Created {
        id: i64,
    }
    let send_at = Timestamp(due).to_datetime().to_rfc3339();
    let body = serde_json::json!({
        "title": "Benchmark campaign",
        "niche": NICHE,
        "message": "Hello from the benchmark",
        "send_at": send_at,
        "time_zone": "UTC",
        "device_ids": devices.iter().map(|d| d.id.0).collect::<Vec<_>>(),
        "status": "scheduled",
    });
    let created: Created = api.call(reqwest::Method::POST, "/api/campaigns", Some(&body)).await?;
    Ok(created.id)
}

/// Seconds from `due` until all recipients are listed, and until the first round of sends is
/// recorded, polled every 20 ms.
async fn wait_dispatched(
    pool: &sqlx::PgPool,
    campaign: i64,
    due: i64,
    recipients: i64,
    first_round: i64,
) -> anyhow::Result<(f64, f64)> {
    let limit = due + 120_000;
    let mut listed_at = None;
    loop {
        let (listed, queued): (i64, i64) =
            sqlx::query_as("SELECT COUNT(*), COUNT(outbound_id) FROM campaign_recipients WHERE campaign_id = $1")
                .bind(campaign)
                .fetch_one(pool)
                .await?;
        let now = Timestamp::now().millis();
        ensure!(
            listed <= recipients,
            "{listed} recipients listed for {recipients} leads"
        );
        if listed == recipients && listed_at.is_none() {
            listed_at = Some(now);
        }
        if let Some(listed_at) = listed_at
            && queued >= first_round
        {
            return Ok(((listed_at - due) as f64 / 1e3, (now - due) as f64 / 1e3));
        }
        ensure!(
            now < limit,
            "two minutes after due only {listed} of {recipients} recipients listed and {queued} of {first_round} sends recorded"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// What the sends showed, over every device.
pub(crate) struct Findings {
    /// Sends the simulator recorded.
    pub(crate) sends: usize,
    /// Sends per second over the devices while they sent: each device's sends from its first to
    /// its last, summed.
    pub(crate) rate: f64,
    /// Shortest gap between two sends of one device.
    pub(crate) min_gap_ms: i64,
    /// Gaps between two sends of one device shorter than the pace's interval.
    pub(crate) short_gaps: usize,
    /// Most sends of one device within a minute.
    pub(crate) max_per_minute: usize,
    /// Most sends of one device.
    pub(crate) max_per_device: usize,
}

/// Waits, up to `limit` more, until the campaign or sequence has at least one performed send: on a busy
/// machine the send window can pass before the first paced send goes, and checking nothing
/// would prove nothing.
pub(crate) async fn wait_first_send(pool: &sqlx::PgPool, of: Sends, limit: Duration) -> anyhow::Result<()> {
    let deadline = std::time::Instant::now() + limit;
    loop {
        if of.count(pool).await? > 0 {
            return Ok(());
        }
        ensure!(
            std::time::Instant::now() < deadline,
            "no device sent anything within {limit:?} after the send window"
        );
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
}

/// Checks every device's sends, as the database and the simulator recorded them; fails on any
/// violation or disagreement.
pub(crate) async fn check_sends(
    cluster: &Cluster,
    devices: &[fleet::Device],
    of: Sends,
    policy: &Pacing,
) -> anyhow::Result<Findings> {
    let pool = fleet::postgres(cluster.db());
    // The database first: everything it records as sent, the simulator had accepted before.
    let rows: Vec<(i64, String, i64, String)> = sqlx::query_as(sqlx::AssertSqlSafe(of.sql()))
        .bind(of.id())
        .fetch_all(pool)
        .await?;
    let mut recorded: HashMap<i64, Vec<(String, i64, String)>> = HashMap::new();
    for (device, to, at, wa_id) in rows {
        recorded.entry(device).or_default().push((to, at, wa_id));
    }
    let sim = cluster.sim();
    let (mut violations, mut sends, mut rate) = (Vec::new(), 0, 0.0);
    let (mut min_gap_ms, mut max_per_minute, mut max_per_device, mut short_gaps) = (i64::MAX, 0, 0, 0);
    for device in devices {
        let sent = sim.sent(&device.phone).await?;
        let times: Vec<i64> = sent.iter().map(|s| s.at.millis()).collect();
        let to: Vec<String> = sent.iter().map(|s| s.to.0.clone()).collect();
        let found = check::device(&format!("{} (simulator)", device.phone), policy, times.clone(), &to);
        violations.extend(found.violations);
        let db_rows = recorded.remove(&device.id.0).unwrap_or_default();
        let db_found = check::device(
            &format!("device {} (database)", device.id.0),
            policy,
            db_rows.iter().map(|r| r.1).collect(),
            &db_rows.iter().map(|r| r.0.clone()).collect::<Vec<_>>(),
        );
        violations.extend(db_found.violations);
        let ids: std::collections::HashSet<&str> = sent.iter().map(|s| s.id.as_str()).collect();
        for (to, _, wa_id) in &db_rows {
            if !ids.contains(wa_id.as_str()) {
                violations.push(format!(
                    "device {}: recorded as sent to {to}, never reached the simulator",
                    device.id.0
                ));
            }
        }
        // At most one send per device can be between the simulator and the database.
        ensure!(
            sent.len() <= db_rows.len() + 1,
            "device {}: the simulator saw {} sends, the database recorded {}",
            device.id.0,
            sent.len(),
            db_rows.len()
        );
        if let (Some(first), Some(last)) = (times.iter().min(), times.iter().max())
            && last > first
        {
            rate += (times.len() - 1) as f64 * 1e3 / (last - first) as f64;
        }
        sends += found.sends;
        min_gap_ms = min_gap_ms.min(found.min_gap_ms);
        short_gaps += found.short_gaps;
        max_per_minute = max_per_minute.max(found.max_per_minute);
        max_per_device = max_per_device.max(found.sends);
    }
    ensure!(recorded.is_empty(), "sends recorded for devices outside the {of:?}");
    ensure!(
        violations.is_empty(),
        "{} pacing violations:\n{}",
        violations.len(),
        violations.join("\n")
    );
    ensure!(sends > 0, "no device sent anything");
    eprintln!("[bench] {of:?}: {sends} sends checked, no violation");
    Ok(Findings {
        sends,
        rate,
        min_gap_ms,
        short_gaps,
        max_per_minute,
        max_per_device,
    })
}

/// Seconds for a bare `INSERT … SELECT` of the campaign's recipient rows into the same table
/// (under a copy of the campaign, so the key does not collide).
async fn ceiling(pool: &sqlx::PgPool, campaign: i64) -> anyhow::Result<f64> {
    let copy: i64 = sqlx::query_scalar(
        "INSERT INTO campaigns (user_id, title, niche, message, send_at, time_zone, status, created_at, updated_at) \
         SELECT user_id, title, niche, message, send_at, time_zone, 'draft', created_at, updated_at \
         FROM campaigns WHERE id = $1 RETURNING id",
    )
    .bind(campaign)
    .fetch_one(pool)
    .await?;
    let started = Instant::now();
    sqlx::query(
        "INSERT INTO campaign_recipients (campaign_id, device_id, lead_id, phone, created_at) \
         SELECT $2, device_id, lead_id, phone, created_at FROM campaign_recipients WHERE campaign_id = $1",
    )
    .bind(campaign)
    .bind(copy)
    .execute(pool)
    .await?;
    Ok(started.elapsed().as_secs_f64())
}
