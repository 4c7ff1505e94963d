//! Sequences: a 10-step sequence whose rule enrols 100,000 leads over 20 devices, created through
//! the API and dispatched by the real scheduler (its `sequence_dispatch` tick), then sent by the
//! workers against the simulator under the same fast pacing policy as the campaign scenario.
//!
//! The figures are the rows the enrolling round wrote (one per lead and the first round of step
//! sends, never one per future step), how long that round took against a bare `INSERT … SELECT`
//! of the same enrolment rows, how long a later round takes with every lead active (it looks for
//! replies and due steps over all of them), and the step sends per second against what the pace
//! allows. The check is the campaign scenario's: no device sent faster than its pace, over its
//! daily cap, or to anyone twice, from the simulator's record and from the database.

use std::time::{Duration, Instant};

use anyhow::{Context, ensure};
use wafleet_core::types::{Timestamp, UserId};

use crate::campaign::{self, NICHE, Pace, SIM_ENV, Sends};
use crate::client::ApiClient;
use crate::cluster::{Cluster, Link, Topology};
use crate::report::{Row, thousands};
use crate::{Common, fleet};

/// Settings of the sequences scenario.
#[derive(clap::Parser, Clone, Debug)]
pub struct Options {
    /// Leads the sequence's rule enrols, spread evenly over the devices.
    #[arg(long, default_value_t = 100_000)]
    pub leads: u64,
    /// Steps of the sequence, a day apart.
    #[arg(long, default_value_t = 10)]
    pub steps: usize,
    /// The devices and their pace.
    #[command(flatten)]
    pub pace: Pace,
}

impl Default for Options {
    fn default() -> Self {
        <Options as clap::Parser>::parse_from(["sequences"])
    }
}

impl Options {
    fn smoke() -> Options {
        Options {
            leads: 2_000,
            steps: 10,
            pace: Pace::smoke(),
        }
    }

    fn command(&self) -> String {
        format!(
            "wafleet-bench sequences --leads {} --steps {} {}",
            self.leads,
            self.steps,
            self.pace.flags()
        )
    }

    /// Step sends the first round records: each device's two minutes of pace, or all its leads.
    fn first_round(&self) -> i64 {
        self.pace.first_round(self.leads)
    }
}

/// One finished tick of the scheduler's sequence dispatch: when it started and how long it ran.
#[derive(Clone, Copy, Debug)]
struct Round {
    started_at: i64,
    secs: f64,
}

/// Runs the scenario; fails on any pacing violation, lead enrolled or sent to twice, or a row
/// written for a future step.
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
    let cluster = Cluster::start(common, "sequences", topology, Link::Sim, &env).await?;
    let db = cluster.db();
    let devices = fleet::provision(&cluster, o.pace.devices).await?;
    let pool = fleet::postgres(db);
    let user: UserId = sqlx::query_scalar("SELECT user_id FROM devices LIMIT 1")
        .fetch_one(pool)
        .await?;
    let api = ApiClient::new(db, user, cluster.api_port(1)).await?;
    campaign::generate_leads(pool, o.leads).await?;
    let policy = o.pace.policy();
    campaign::set_pacing(&api, &devices, &policy).await?;
    fleet::want_sessions(db).await?;
    fleet::wait_all_held(&cluster, o.pace.devices, "", Duration::from_secs(120)).await?;

    let outbound_before = count(pool, "SELECT COUNT(*) FROM outbound_messages").await?;
    let created_at = Timestamp::now().millis();
    let sequence = create_sequence(&api, &devices, o.steps).await?;
    eprintln!("[bench] sequences: sequence {sequence} created; waiting for the scheduler's tick");
    let enrolling = wait_enrolled(pool, sequence, created_at, o.leads as i64, o.first_round()).await?;
    let enrolments = count_of(
        pool,
        "SELECT COUNT(*) FROM sequence_enrolments WHERE sequence_id = $1",
        sequence,
    )
    .await?;
    let step_sends = count_of(
        pool,
        "SELECT COUNT(*) FROM sequence_sends ss JOIN sequence_enrolments e ON e.id = ss.enrolment_id \
         WHERE e.sequence_id = $1",
        sequence,
    )
    .await?;
    let outbound = count(pool, "SELECT COUNT(*) FROM outbound_messages").await? - outbound_before;
    ensure!(
        enrolments == o.leads as i64,
        "{enrolments} enrolments for {} leads",
        o.leads
    );
    // Rounds go on every minute while the harness counts: more than the first round may be
    // recorded by then, but each a first step, and each lead's at most once.
    ensure!(
        step_sends == outbound && step_sends >= o.first_round() && step_sends <= o.leads as i64,
        "{step_sends} step sends noted and {outbound} sends recorded (the first round is {})",
        o.first_round()
    );
    let future = count_of(
        pool,
        "SELECT COUNT(*) FROM sequence_sends ss JOIN sequence_enrolments e ON e.id = ss.enrolment_id \
         WHERE e.sequence_id = $1 AND ss.step > 1",
        sequence,
    )
    .await?;
    ensure!(future == 0, "{future} rows written for steps after the first");
    eprintln!(
        "[bench] sequences: {enrolments} enrolled by a round of {:.2} s; {step_sends} step sends recorded so far",
        enrolling.secs
    );

    tokio::time::sleep(Duration::from_secs(o.pace.send_secs)).await;
    campaign::wait_first_send(pool, Sends::Sequence(sequence), Duration::from_secs(90)).await?;
    let later = later_round(pool, enrolling).await?;
    let findings = campaign::check_sends(&cluster, &devices, Sends::Sequence(sequence), &policy).await?;
    cluster.stop_processes();
    let ceiling = ceiling(pool, sequence).await?;

    let command = o.command();
    let what = format!(
        "{} leads, {} devices, {} steps",
        thousands(o.leads),
        o.pace.devices,
        o.steps
    );
    let per_step = o.leads * o.steps as u64;
    let mut rows = vec![
        Row::new(
            format!("sequences: rows written once the leads are enrolled and first steps go ({what})"),
            format!(
                "{} ({} enrolments, {} step-send notes, {} sends: first steps only)",
                thousands((enrolments + step_sends + outbound) as u64),
                thousands(enrolments as u64),
                thousands(step_sends as u64),
                thousands(outbound as u64)
            ),
            format!("{} (a row per lead and step)", thousands(per_step)),
        )
        .ratio((enrolments + step_sends + outbound) as f64 / per_step as f64)
        .command(&command),
        Row::new(
            format!("sequences: the enrolling round: enrol, plan, record the first sends ({what})"),
            format!("{:.2} s", enrolling.secs),
            format!("{ceiling:.2} s (bare INSERT … SELECT of the enrolment rows)"),
        )
        .ratio(enrolling.secs / ceiling)
        .command(&command),
    ];
    if let Some(later) = later {
        rows.push(
            Row::new(
                format!(
                    "sequences: a later round with {} leads active (replies, settles, due steps)",
                    thousands(o.leads)
                ),
                format!("{:.2} s", later.secs),
                "—",
            )
            .command(&command),
        );
    }
    rows.extend(o.pace.paced_rows("sequences", "step sends", &findings, &command));
    Ok(rows)
}

async fn count(pool: &sqlx::PgPool, sql: &'static str) -> anyhow::Result<i64> {
    Ok(sqlx::query_scalar(sql).fetch_one(pool).await?)
}

async fn count_of(pool: &sqlx::PgPool, sql: &'static str, id: i64) -> anyhow::Result<i64> {
    Ok(sqlx::query_scalar(sql).bind(id).fetch_one(pool).await?)
}

/// The sequence, created through the API: a rule enrolling the generated leads, `steps` steps a
/// day apart (the first at once), open every hour of every day in UTC.
async fn create_sequence(api: &ApiClient, devices: &[fleet::Device], steps: usize) -> anyhow::Result<i64> {
    #[derive(serde::Deserialize)]
    struct Created {
        id: i64,
    }
    let steps: Vec<serde_json::Value> = (1..=steps)
        .map(|n| {
            serde_json::json!({
                "message": format!("{{Hi|Hello}} {{first_name}}, step {n} of the benchmark"),
                "delay_days": if n == 1 { 0 } else { 1 },
            })
        })
        .collect();
    let body = serde_json::json!({
        "name": "Benchmark sequence",
        "device_ids": devices.iter().map(|d| d.id.0).collect::<Vec<_>>(),
        "time_zone": "UTC",
        "window": {"start": "00:00", "end": "24:00", "weekdays": []},
        "enrol_rule": {"niche": NICHE},
        "steps": steps,
    });
    let created: Created = api.call(reqwest::Method::POST, "/api/sequences", Some(&body)).await?;
    Ok(created.id)
}

/// Waits for the tick that enrols every lead and records the first round, polling every 50 ms;
/// returns that tick's run as the scheduler recorded it.
async fn wait_enrolled(
    pool: &sqlx::PgPool,
    sequence: i64,
    created_at: i64,
    leads: i64,
    first_round: i64,
) -> anyhow::Result<Round> {
    let deadline = Instant::now() + Duration::from_secs(150);
    loop {
        let (enrolled, noted): (i64, i64) =
            sqlx::query_as("SELECT COUNT(*), COUNT(pending_id) FROM sequence_enrolments WHERE sequence_id = $1")
                .bind(sequence)
                .fetch_one(pool)
                .await?;
        ensure!(enrolled <= leads, "{enrolled} enrolments for {leads} leads");
        if enrolled == leads && noted >= first_round {
            // The tick that did it, once the scheduler noted it finished.
            let round: Option<(i64, i64)> = sqlx::query_as(
                "SELECT started_at, finished_at FROM cron_runs WHERE job = 'sequence_dispatch' \
                 AND started_at >= $1 AND finished_at IS NOT NULL ORDER BY tick_at LIMIT 1",
            )
            .bind(created_at)
            .fetch_optional(pool)
            .await?;
            if let Some((started_at, finished_at)) = round {
                return Ok(Round {
                    started_at,
                    secs: (finished_at - started_at) as f64 / 1e3,
                });
            }
        }
        ensure!(
            Instant::now() < deadline,
            "150 s after the sequence was created, {enrolled} of {leads} leads enrolled and {noted} of {first_round} step sends noted"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// The last finished dispatch tick after the enrolling one, when the run lasted long enough for
/// one (each is a minute apart).
async fn later_round(pool: &sqlx::PgPool, enrolling: Round) -> anyhow::Result<Option<Round>> {
    let round: Option<(i64, i64)> = sqlx::query_as(
        "SELECT started_at, finished_at FROM cron_runs WHERE job = 'sequence_dispatch' \
         AND started_at > $1 AND finished_at IS NOT NULL ORDER BY tick_at DESC LIMIT 1",
    )
    .bind(enrolling.started_at)
    .fetch_optional(pool)
    .await
    .context("reading the scheduler's runs")?;
    Ok(round.map(|(started_at, finished_at)| Round {
        started_at,
        secs: (finished_at - started_at) as f64 / 1e3,
    }))
}

/// Seconds for a bare `INSERT … SELECT` of the sequence's enrolment rows into the same table
/// (under a copy of the sequence, so the key does not collide).
async fn ceiling(pool: &sqlx::PgPool, sequence: i64) -> anyhow::Result<f64> {
    let copy: i64 = sqlx::query_scalar(
        "INSERT INTO sequences (user_id, name, time_zone, window_start, window_end, weekdays, stop_on_reply, \
         stop_statuses, enrol_rule, status, created_at, updated_at) \
         SELECT user_id, name || ' (copy)', time_zone, window_start, window_end, weekdays, stop_on_reply, \
         stop_statuses, false, 'paused', created_at, updated_at FROM sequences WHERE id = $1 RETURNING id",
    )
    .bind(sequence)
    .fetch_one(pool)
    .await?;
    let started = Instant::now();
    sqlx::query(
        "INSERT INTO sequence_enrolments (sequence_id, device_id, lead_id, phone, source, enrolled_at, updated_at) \
         SELECT $2, device_id, lead_id, phone, source, enrolled_at, updated_at FROM sequence_enrolments \
         WHERE sequence_id = $1",
    )
    .bind(sequence)
    .bind(copy)
    .execute(pool)
    .await?;
    Ok(started.elapsed().as_secs_f64())
}
