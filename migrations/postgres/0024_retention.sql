-- How many days each user's chat messages are kept after they reached wafleet; NULL keeps them
-- all (the default). The scheduler's retention job deletes older ones in small batches. Sends,
-- their receipts and the analytics roll-ups are kept: analytics of every day stay as counted.
ALTER TABLE users ADD COLUMN keep_messages_days BIGINT;
