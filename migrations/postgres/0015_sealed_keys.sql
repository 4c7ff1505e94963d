-- Encryption at rest of WhatsApp key material (core/src/keys). The secrets themselves are never
-- stored here: they come from WA_KEYS_SECRET or a key file. (0014 is taken by another change.)

-- Every key that has sealed values in this database. `key_id` is derived from the key (HKDF),
-- so it names the key without revealing it; `check_value` is a known text sealed with it, so a
-- process given the wrong key stops at start-up instead of failing on every row. A key is
-- retired once the re-encryption sweep has moved every row off it; start-up refuses to run
-- without every key that is not retired.
CREATE TABLE seal_keys (
    key_id      BIGINT PRIMARY KEY,
    check_value BYTEA   NOT NULL,
    added_at    BIGINT NOT NULL,
    retired_at  BIGINT
);

-- One row: how far sealing has come. `plaintext_done_at` is set once every row written in plain
-- text before encryption has been sealed (from then on plain text is refused); the last sweep's
-- figures are for `wafleet keys status`.
CREATE TABLE seal_progress (
    id                INTEGER PRIMARY KEY CHECK (id = 1),
    plaintext_done_at BIGINT,
    sweep_finished_at BIGINT,
    sweep_key_id      BIGINT,
    sweep_moved       BIGINT NOT NULL DEFAULT 0,
    sweep_unreadable  BIGINT NOT NULL DEFAULT 0
);
INSERT INTO seal_progress (id) VALUES (1);
