-- The session side of a device: what its owner asked for, what the worker holding it reports, and
-- the credentials a link needs to reconnect from any worker.

-- One row per device that has ever been asked to link. The API writes `desired` (and
-- `pair_phone`); the worker holding the device reconciles the live session toward it and writes
-- the pairing material and errors back, so the API stays stateless.
CREATE TABLE device_sessions (
    device_id     INTEGER PRIMARY KEY REFERENCES devices (id) ON DELETE CASCADE,
    desired       TEXT   NOT NULL DEFAULT 'unlinked'
                  CHECK (desired IN ('unlinked', 'pair_qr', 'pair_code', 'connected')),
    pair_phone    TEXT,            -- E.164, for pairing by code
    qr_code       TEXT,            -- the QR payload to show while pairing by QR
    qr_expires_at BIGINT,
    pair_code     TEXT,            -- the code to type on the phone while pairing by code
    last_error    TEXT,            -- why the last attempt failed, for people
    generation    BIGINT NOT NULL DEFAULT 0, -- bumped on every request, so workers see repeats
    updated_at    BIGINT NOT NULL
);

-- Credentials of links that keep them as one opaque value (the simulator's client). The wa-rs
-- adapter keeps its Signal and app state in tables of its own.
CREATE TABLE link_credentials (
    device_id  INTEGER PRIMARY KEY REFERENCES devices (id) ON DELETE CASCADE,
    link       TEXT   NOT NULL,    -- which link wrote it, e.g. 'sim'
    data       TEXT  NOT NULL,
    updated_at BIGINT NOT NULL
);
