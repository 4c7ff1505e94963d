-- Leads: the people a device's owner keeps in touch with, one row per number per device.
--
-- `status` is where the lead stands in the sales funnel; the set is fixed so that campaigns and
-- analytics can count by it:
--   new        added, not contacted yet
--   contacted  we wrote to them
--   replied    they answered
--   interested they asked for more (a quote, a call, a demo)
--   converted  they bought or signed up
--   lost       not interested, wrong number, or asked not to be contacted
-- `niche` (what market they belong to) and `journey` (which sequence or stage of follow-ups they
-- are in) are the owner's free labels; campaigns select leads by device and niche.
CREATE TABLE leads (
    id         BIGINT  GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    device_id  BIGINT  NOT NULL REFERENCES devices (id) ON DELETE CASCADE,
    name       TEXT    NOT NULL,
    phone      TEXT    NOT NULL,                    -- E.164, normalised by the application
    niche      TEXT,                                -- NULL when not given
    journey    TEXT,
    status     TEXT    NOT NULL DEFAULT 'new'
               CHECK (status IN ('new', 'contacted', 'replied', 'interested', 'converted', 'lost')),
    notes      TEXT,
    created_at BIGINT  NOT NULL,
    updated_at BIGINT  NOT NULL,
    -- One lead per number per device, under any concurrency (imports, API, page).
    UNIQUE (device_id, phone)
);
-- Listing a device's leads newest first, with `id` as the pagination cursor.
CREATE INDEX leads_device_id ON leads (device_id, id);
-- Campaigns select a device's leads by niche.
CREATE INDEX leads_device_niche ON leads (device_id, niche);
