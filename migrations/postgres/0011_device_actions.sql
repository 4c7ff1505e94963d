-- Device actions: broadcasts to pasted lists of numbers, and the activity log of everything done
-- from a device's actions page (test sends, number checks, broadcasts).

-- A broadcast: one message to a pasted list of numbers, from one device. `idempotency_key` is the
-- request's key (caller-supplied or generated), so a retried request finds the same broadcast and,
-- through the per-recipient keys `broadcast:{id}:{phone}`, the same sends.
CREATE TABLE broadcasts (
    id              BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    user_id         BIGINT  NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    device_id       BIGINT  NOT NULL REFERENCES devices (id) ON DELETE CASCADE,
    idempotency_key TEXT    NOT NULL,
    message         TEXT,                           -- text, or the image's caption
    has_image       BOOLEAN NOT NULL,
    duplicates      BIGINT  NOT NULL,               -- pasted lines dropped as repeats of an earlier one
    created_at      BIGINT  NOT NULL,
    UNIQUE (user_id, idempotency_key)
);
CREATE INDEX broadcasts_device ON broadcasts (device_id, id);

-- One row per number a broadcast goes to. The key, not a lookup before inserting, keeps a retried
-- request from listing anyone twice; the status shown is the send's.
CREATE TABLE broadcast_recipients (
    broadcast_id BIGINT NOT NULL REFERENCES broadcasts (id) ON DELETE CASCADE,
    phone        TEXT   NOT NULL,                   -- E.164
    outbound_id  BIGINT NOT NULL REFERENCES outbound_messages (id) ON DELETE CASCADE,
    PRIMARY KEY (broadcast_id, phone)
);

-- What was done from a device, newest first. `actor` is the account's email at the time and `via`
-- says how it asked (`dashboard` or `api`); `ref_id` is the send or broadcast the entry is about.
CREATE TABLE device_activity (
    id         BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    user_id    BIGINT NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    device_id  BIGINT NOT NULL REFERENCES devices (id) ON DELETE CASCADE,
    actor      TEXT   NOT NULL,
    via        TEXT   NOT NULL CHECK (via IN ('dashboard', 'api')),
    kind       TEXT   NOT NULL CHECK (kind IN ('test_send', 'check_numbers', 'broadcast')),
    summary    TEXT   NOT NULL,                     -- what was asked
    result     TEXT   NOT NULL,                     -- what came of it when it was asked
    ref_id     BIGINT,
    created_at BIGINT NOT NULL
);
CREATE INDEX device_activity_device ON device_activity (device_id, id);
