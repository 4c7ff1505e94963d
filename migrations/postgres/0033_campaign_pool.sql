-- A campaign may draw its recipients from one pool: the leads of its niche on all its devices,
-- each number once, dealt round-robin over the devices, at most `per_device_cap` to a device
-- (NULL: no cap). `per_device` (the default) keeps each device sending to its own leads.
-- `left_out` counts, when the campaign starts, the pool's numbers the cap left without a device.
ALTER TABLE campaigns ADD COLUMN distribution TEXT NOT NULL DEFAULT 'per_device'
    CHECK (distribution IN ('per_device', 'pool'));
ALTER TABLE campaigns ADD COLUMN per_device_cap BIGINT CHECK (per_device_cap > 0);
ALTER TABLE campaigns ADD COLUMN left_out BIGINT;
