-- Which worker holds each device's session. A device is held by at most one worker at a time:
-- claiming takes a lease whose `token` (the fencing token) rises on every claim, and every write a
-- holder makes names its token, so a holder that lost its lease (paused, partitioned) can no longer
-- change anything. Claim, renew and release are single statements, atomic in both dialects.
CREATE TABLE device_leases (
    device_id  INTEGER   PRIMARY KEY REFERENCES devices (id) ON DELETE CASCADE,
    holder     TEXT,                      -- worker id; NULL when released
    token      BIGINT NOT NULL DEFAULT 0, -- fencing token
    expires_at BIGINT NOT NULL DEFAULT 0  -- free to claim once passed
);
CREATE INDEX device_leases_holder ON device_leases (holder);
CREATE INDEX device_leases_expires_at ON device_leases (expires_at);

-- Every device that was ever asked to link needs a lease row to be claimable.
INSERT INTO device_leases (device_id) SELECT device_id FROM device_sessions;

-- Live workers and their capacity; the fair share of devices is computed from the live ones.
CREATE TABLE workers (
    id           TEXT   PRIMARY KEY,
    capacity     BIGINT NOT NULL,
    heartbeat_at BIGINT NOT NULL,
    started_at   BIGINT NOT NULL
);
