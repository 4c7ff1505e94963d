//! Scheduler tests, on SQLite and PostgreSQL (one test binary).

mod dedup;
mod replicas;
mod takeover;
