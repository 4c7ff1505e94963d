-- Sends move by the database alone: the device's holder takes the oldest queued send that is due,
-- so the queue is only a wake-up and losing it loses nothing.
--
-- `not_before`: a send put back after a failure that reached nothing (a dropped connection) is not
-- tried again before this (backoff); NULL for a new send. `waiting_reason` and `next_attempt_at`
-- say, for people and API clients, why a queued send has not gone yet (its device's pace, daily
-- cap, warm-up, a pause, a retry) and when it is expected to move; cleared when it goes.
ALTER TABLE outbound_messages ADD COLUMN not_before BIGINT;
ALTER TABLE outbound_messages ADD COLUMN waiting_reason TEXT;
ALTER TABLE outbound_messages ADD COLUMN next_attempt_at BIGINT;

-- A tick's claim is kept alive by its runner while it runs; a tick whose runner stopped beating
-- (a killed scheduler) is finished by another replica within seconds instead of waiting for the
-- next tick. NULL on rows claimed before this column existed.
ALTER TABLE cron_runs ADD COLUMN heartbeat_at BIGINT;
CREATE INDEX cron_runs_unfinished ON cron_runs (heartbeat_at) WHERE finished_at IS NULL;

-- Workers that hold a liveness lock for as long as their process lives (a PostgreSQL advisory lock
-- on a connection of their own): when the lock is gone, the process is gone, and its devices can
-- move before their leases expire. Workers of earlier releases hold none and are judged by their
-- leases alone.
ALTER TABLE fleet_workers ADD COLUMN liveness_lock BOOLEAN NOT NULL DEFAULT FALSE;
