-- One row per (job, tick) a scheduler replica ran. Every replica's cron fires every tick; the tick
-- time comes from the schedule itself (whole seconds, identical on every replica), so the primary key
-- makes the tick's id deterministic: the replica whose INSERT ... ON CONFLICT DO NOTHING inserts the
-- row runs the tick, the others skip it. Rows older than a week are deleted by housekeeping.
CREATE TABLE cron_runs (
    job         TEXT   NOT NULL,
    tick_at     BIGINT NOT NULL,  -- the schedule's tick time, whole seconds in milliseconds
    started_at  BIGINT NOT NULL,
    finished_at BIGINT,           -- NULL while running, or when the run failed
    runner      TEXT   NOT NULL,  -- the replica that claimed the tick
    PRIMARY KEY (job, tick_at)
);
CREATE INDEX cron_runs_tick_at ON cron_runs (tick_at);
