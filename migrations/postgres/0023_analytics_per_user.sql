-- Analytics of all of a user's devices per UTC day, the figures the dashboard asks for most: the
-- answer reads one row per day instead of summing one row per device and day (100 devices over 90
-- days are 9,000 rows, read on every request the read cache does not answer). The roll-up
-- recounts a user's day from `analytics_daily` whenever one of its device's days was recounted;
-- deleting a device recounts its user's days. The counts mean what they mean in `analytics_daily`.
CREATE TABLE analytics_user_daily (
    user_id   BIGINT NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    day       BIGINT NOT NULL,
    sent      BIGINT NOT NULL,
    delivered BIGINT NOT NULL,
    read      BIGINT NOT NULL,
    replied   BIGINT NOT NULL,
    failed    BIGINT NOT NULL,
    PRIMARY KEY (user_id, day)
);

-- The device-days a roll-up recounted: the user-days to recount after them.
CREATE INDEX analytics_daily_updated ON analytics_daily (updated_at);

INSERT INTO analytics_user_daily (user_id, day, sent, delivered, read, replied, failed)
SELECT d.user_id, a.day, SUM(a.sent), SUM(a.delivered), SUM(a.read), SUM(a.replied), SUM(a.failed)
FROM analytics_daily a JOIN devices d ON d.id = a.device_id
GROUP BY d.user_id, a.day;
