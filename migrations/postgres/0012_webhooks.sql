-- Webhooks: each user may have one URL that wafleet POSTs their events to, signed with their secret.

-- `events` is the comma-separated list of event names to send; empty means every event.
-- The secret is kept as given: it signs each body (HMAC-SHA256), so it cannot be stored hashed.
CREATE TABLE webhooks (
    user_id    BIGINT  PRIMARY KEY REFERENCES users (id) ON DELETE CASCADE,
    url        TEXT    NOT NULL,
    secret     TEXT    NOT NULL,
    events     TEXT    NOT NULL DEFAULT '',
    enabled    BOOLEAN NOT NULL DEFAULT TRUE,
    created_at BIGINT  NOT NULL,
    updated_at BIGINT  NOT NULL
);

-- One row per event to deliver, written in the same transaction as the change it reports (the
-- ingest batch, the status change, the campaign finishing), so an event is never lost nor invented.
-- `body` is the exact JSON sent, so every attempt (and a replay) sends the same bytes under the
-- same id. status: pending (waiting or being retried), delivered, dead (attempts spent; replayable).
-- `queued_at` is NULL until a worker has put the delivery on the `webhooks` queue.
CREATE TABLE webhook_deliveries (
    id              BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    user_id         BIGINT  NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    event           TEXT    NOT NULL,
    body            TEXT    NOT NULL,
    status          TEXT    NOT NULL DEFAULT 'pending' CHECK (status IN ('pending', 'delivered', 'dead')),
    attempts        BIGINT  NOT NULL DEFAULT 0,
    response_status BIGINT,                          -- HTTP status of the last attempt, if it got one
    last_error      TEXT,
    queued_at       BIGINT,
    created_at      BIGINT  NOT NULL,
    updated_at      BIGINT  NOT NULL,
    delivered_at    BIGINT
);
-- A user's deliveries, newest first, by status.
CREATE INDEX webhook_deliveries_user ON webhook_deliveries (user_id, status, id);
-- What workers still have to queue: a few rows at most, so the poll reads next to nothing.
CREATE INDEX webhook_deliveries_unqueued ON webhook_deliveries (id) WHERE queued_at IS NULL;
-- Housekeeping removes old deliveries by age.
CREATE INDEX webhook_deliveries_created ON webhook_deliveries (created_at);
