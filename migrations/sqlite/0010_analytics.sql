-- Analytics roll-ups: per device and UTC day, what became of the sends of that day, so that the
-- dashboard reads a few rows per day instead of counting millions of sends.

-- A send belongs to the UTC day it went out (`sent_at`), or, when it never went out (failed), the
-- day it was recorded. `day` is that day's midnight in milliseconds. The counts are cumulative
-- statuses: `delivered` includes the read sends, `sent` includes both; `replied` counts sends whose
-- contact wrote back in the chat afterwards; `failed` sends are not in `sent`.
CREATE TABLE analytics_daily (
    device_id  BIGINT NOT NULL REFERENCES devices (id) ON DELETE CASCADE,
    day        BIGINT NOT NULL,
    sent       BIGINT NOT NULL,
    delivered  BIGINT NOT NULL,
    read       BIGINT NOT NULL,
    replied    BIGINT NOT NULL,
    failed     BIGINT NOT NULL,
    updated_at BIGINT NOT NULL,
    PRIMARY KEY (device_id, day)
);

-- One row: the instant the last roll-up started. The next one recomputes the days of sends changed
-- (or replied to) since then.
CREATE TABLE analytics_rollup (
    id        INTEGER PRIMARY KEY CHECK (id = 1),
    watermark BIGINT NOT NULL
);

-- Sends changed since the watermark (recorded, sent, receipts, failures).
CREATE INDEX outbound_messages_updated ON outbound_messages (updated_at);
-- A reply finds the sends it answers; a day is recounted from its device's sends of that day.
CREATE INDEX outbound_messages_chat ON outbound_messages (device_id, recipient, sent_at);
CREATE INDEX outbound_messages_day ON outbound_messages (device_id, (COALESCE(sent_at, created_at)));
