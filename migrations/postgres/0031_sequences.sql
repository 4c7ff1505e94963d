-- Sequences: drip follow-ups. A sequence is a list of steps sent to each enrolled lead from the
-- lead's device, each a delay after enrolment or after the previous step, inside a send window of
-- the sequence's time zone. Only the next step of each enrolment is ever written down (its due
-- time on the enrolment row), so enrolling 100,000 leads writes 100,000 rows, not a row per step.

-- status: active (steps go out), paused (nothing new is recorded; resumable), archived (stopped
-- for good, kept for its report).
-- The send window is local minutes of the day [window_start, window_end) on the weekdays of
-- `weekdays` (a bit per day, Monday = 1 … Sunday = 64).
-- Enrolment rule: when `enrol_rule` is set, leads of the target devices whose niche, status and
-- journey match the non-NULL `enrol_*` fields are enrolled, now and whenever they come to match.
CREATE TABLE sequences (
    id                   BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    user_id              BIGINT  NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    name                 TEXT    NOT NULL,
    time_zone            TEXT    NOT NULL,
    window_start         BIGINT  NOT NULL,
    window_end           BIGINT  NOT NULL,
    weekdays             BIGINT  NOT NULL,
    stop_on_reply        BOOLEAN NOT NULL DEFAULT TRUE,
    stop_statuses        TEXT    NOT NULL DEFAULT '',   -- lead statuses that end an enrolment, comma-separated
    enrol_rule           BOOLEAN NOT NULL DEFAULT FALSE,
    enrol_niche          TEXT,
    enrol_status         TEXT,
    enrol_journey        TEXT,
    next_sequence_id     BIGINT  REFERENCES sequences (id) ON DELETE SET NULL,  -- a lead that completes moves there
    on_reply_sequence_id BIGINT  REFERENCES sequences (id) ON DELETE SET NULL,  -- a lead that replies moves there
    status               TEXT    NOT NULL DEFAULT 'active' CHECK (status IN ('active', 'paused', 'archived')),
    created_at           BIGINT  NOT NULL,
    updated_at           BIGINT  NOT NULL,
    UNIQUE (user_id, name)
);
CREATE INDEX sequences_status ON sequences (status);

-- The devices a sequence goes out from; each sends to its own leads.
CREATE TABLE sequence_devices (
    sequence_id BIGINT NOT NULL REFERENCES sequences (id) ON DELETE CASCADE,
    device_id   BIGINT NOT NULL REFERENCES devices (id) ON DELETE CASCADE,
    PRIMARY KEY (sequence_id, device_id)
);

-- Steps, numbered from 1. `delay_from` is `enrolment` or `previous` (the previous step's send).
CREATE TABLE sequence_steps (
    sequence_id   BIGINT NOT NULL REFERENCES sequences (id) ON DELETE CASCADE,
    position      BIGINT NOT NULL,
    message       TEXT   NOT NULL,                  -- text or caption, with choices and variables
    image         BYTEA,                            -- JPEG, already compressed
    delay_days    BIGINT NOT NULL,                  -- calendar days in the sequence's time zone
    delay_hours   BIGINT NOT NULL,
    delay_from    TEXT   NOT NULL CHECK (delay_from IN ('enrolment', 'previous')),
    PRIMARY KEY (sequence_id, position)
);

-- One row per lead per sequence: the key is what makes enrolling twice impossible, under any
-- concurrency. `next_step` and `due_at` are the only future written down; `pending_id` is the
-- send recorded for `next_step` and not yet settled. status: active, completed, exited (with
-- `exit_reason`: replied, status:<lead status>, by_hand, archived, device), failed (the step's send
-- failed; "retry failed" sends it again).
CREATE TABLE sequence_enrolments (
    id            BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    sequence_id   BIGINT NOT NULL REFERENCES sequences (id) ON DELETE CASCADE,
    device_id     BIGINT NOT NULL REFERENCES devices (id) ON DELETE CASCADE,
    lead_id       BIGINT NOT NULL,                  -- no foreign key: the report outlives a deleted lead
    phone         TEXT   NOT NULL,                  -- E.164, copied from the lead
    source        TEXT   NOT NULL,                  -- rule, hand, api, csv, chain, reply
    status        TEXT   NOT NULL DEFAULT 'active' CHECK (status IN ('active', 'completed', 'exited', 'failed')),
    exit_reason   TEXT,
    next_step     BIGINT NOT NULL DEFAULT 1,
    attempt       BIGINT NOT NULL DEFAULT 1,        -- raised by "retry failed": a new send, a new key
    due_at        BIGINT,                           -- when `next_step` may go; NULL until planned
    pending_id    BIGINT REFERENCES outbound_messages (id) ON DELETE SET NULL,
    last_step_at  BIGINT,                           -- when the previous step was recorded
    first_sent_at BIGINT,                           -- WhatsApp's time of the first step: replies count from it
    enrolled_at   BIGINT NOT NULL,
    updated_at    BIGINT NOT NULL,
    UNIQUE (sequence_id, lead_id)
);
-- The dispatcher's questions: which are due, which wait for planning, which have a send pending.
CREATE INDEX sequence_enrolments_due ON sequence_enrolments (sequence_id, due_at) WHERE status = 'active';
CREATE INDEX sequence_enrolments_pending ON sequence_enrolments (pending_id) WHERE pending_id IS NOT NULL;

-- Each step's send per enrolment, for the report (what went, and the text each lead got).
CREATE TABLE sequence_sends (
    enrolment_id BIGINT NOT NULL REFERENCES sequence_enrolments (id) ON DELETE CASCADE,
    step         BIGINT NOT NULL,
    attempt      BIGINT NOT NULL,
    outbound_id  BIGINT REFERENCES outbound_messages (id) ON DELETE SET NULL,
    recorded_at  BIGINT NOT NULL,
    PRIMARY KEY (enrolment_id, step, attempt)
);
CREATE INDEX sequence_sends_outbound ON sequence_sends (outbound_id);
