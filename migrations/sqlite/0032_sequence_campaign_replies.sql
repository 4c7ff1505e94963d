-- A sequence's rule may enrol the leads who replied to one of its owner's campaigns (the event
-- users chain a follow-up on): a lead is enrolled once it has written back after the campaign's
-- send to it reached WhatsApp. NULL: the rule does not look at campaigns.
ALTER TABLE sequences ADD COLUMN enrol_campaign_id BIGINT REFERENCES campaigns (id) ON DELETE SET NULL;
