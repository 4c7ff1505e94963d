-- Campaigns: one message sent from chosen devices to their leads of one niche, from a given time,
-- and the pacing policy every send of a device follows (campaigns and single sends alike).

-- `send_at` is UTC; `time_zone` is the IANA name the owner planned in (the calendar shows days in it).
-- status: draft (being written, never sent), scheduled (goes out at send_at), running (recipients
-- being sent), paused (no new sends are queued; resumable), finished, cancelled.
CREATE TABLE campaigns (
    id          BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    user_id     BIGINT  NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    title       TEXT    NOT NULL,
    niche       TEXT    NOT NULL,                   -- leads of the target devices with this niche
    message     TEXT    NOT NULL,                   -- text, or the image's caption
    image       BYTEA,                              -- JPEG, already compressed
    send_at     BIGINT  NOT NULL,
    time_zone   TEXT    NOT NULL,
    status      TEXT    NOT NULL DEFAULT 'draft'
                CHECK (status IN ('draft', 'scheduled', 'running', 'paused', 'finished', 'cancelled')),
    expanded_at BIGINT,                             -- when its recipients were listed
    created_at  BIGINT  NOT NULL,
    updated_at  BIGINT  NOT NULL
);
CREATE INDEX campaigns_user_send_at ON campaigns (user_id, send_at);
-- The dispatcher looks for scheduled campaigns that are due and running ones.
CREATE INDEX campaigns_status_send_at ON campaigns (status, send_at);

-- The devices a campaign goes out from; each sends to its own leads.
CREATE TABLE campaign_devices (
    campaign_id BIGINT  NOT NULL REFERENCES campaigns (id) ON DELETE CASCADE,
    device_id   BIGINT  NOT NULL REFERENCES devices (id) ON DELETE CASCADE,
    PRIMARY KEY (campaign_id, device_id)
);

-- One row per lead a campaign goes to. The key, not a lookup before inserting, is what keeps a
-- re-run dispatch (or two dispatchers) from listing anyone twice; the send itself is recorded under
-- the idempotency key `campaign:{campaign}:{lead}`, so it is never performed twice either.
-- The status shown is derived from the send (`outbound_id`); the column only says `queued` until a
-- send is recorded, or `failed` (with `reason`) when none could be.
CREATE TABLE campaign_recipients (
    id          BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    campaign_id BIGINT  NOT NULL REFERENCES campaigns (id) ON DELETE CASCADE,
    device_id   BIGINT  NOT NULL REFERENCES devices (id) ON DELETE CASCADE,
    lead_id     BIGINT  NOT NULL,                   -- no foreign key: the report outlives a deleted lead
    phone       TEXT    NOT NULL,                   -- E.164, copied from the lead
    attempt     BIGINT  NOT NULL DEFAULT 1,         -- raised by "retry failed": a new send, a new key
    outbound_id BIGINT  REFERENCES outbound_messages (id) ON DELETE SET NULL,
    status      TEXT    NOT NULL DEFAULT 'queued' CHECK (status IN ('queued', 'failed')),
    reason      TEXT,
    created_at  BIGINT  NOT NULL,
    UNIQUE (campaign_id, device_id, lead_id)
);
-- Recipients whose send is still to be recorded, in the order they are sent.
CREATE INDEX campaign_recipients_unsent ON campaign_recipients (campaign_id, device_id, id) WHERE outbound_id IS NULL;
CREATE INDEX campaign_recipients_outbound ON campaign_recipients (outbound_id);

-- A device's pacing policy; a device without a row follows the defaults (see `Pacing::default`).
-- `paused_until` / `pause_reason` are set by the holder when the device's own sends fail in a
-- burst or too many go unreplied, so the pause is visible and survives a change of holder.
CREATE TABLE device_pacing (
    device_id             BIGINT  PRIMARY KEY REFERENCES devices (id) ON DELETE CASCADE,
    enabled               BOOLEAN NOT NULL,
    per_minute            BIGINT  NOT NULL,
    jitter_ms             BIGINT  NOT NULL,
    daily_cap             BIGINT  NOT NULL,
    warmup_days           BIGINT  NOT NULL,
    warmup_first_day      BIGINT  NOT NULL,
    error_burst           BIGINT  NOT NULL,
    pause_minutes         BIGINT  NOT NULL,
    unreplied_max_percent BIGINT  NOT NULL,
    unreplied_min_sends   BIGINT  NOT NULL,
    paused_until          BIGINT,
    pause_reason          TEXT,
    updated_at            BIGINT  NOT NULL
);
