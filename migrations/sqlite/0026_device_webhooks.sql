-- A webhook of one device, used instead of its owner's for that device's events (as the REST API
-- wafleet grew out of has it: `PATCH /devices/{device_id}/webhook`). Deleting it sends the device's
-- events to the owner's webhook again.
CREATE TABLE device_webhooks (
    device_id  BIGINT PRIMARY KEY REFERENCES devices (id) ON DELETE CASCADE,
    url        TEXT   NOT NULL,
    secret     TEXT   NOT NULL,
    events     TEXT   NOT NULL DEFAULT '',
    created_at BIGINT NOT NULL,
    updated_at BIGINT NOT NULL
);

-- The device whose own webhook a delivery goes to; NULL for the owner's webhook. No foreign key:
-- a delivery outlives its device's webhook (it then goes to the owner's) and is the owner's row.
ALTER TABLE webhook_deliveries ADD COLUMN device_id BIGINT;
