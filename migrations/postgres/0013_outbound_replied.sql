-- When a send's contact answered it: the send time of the first message the contact wrote in the
-- chat at or after the send, as the analytics roll-up found it (NULL: not answered yet). The
-- roll-up marks the sends that messages received since its last run answer, and counts a day's
-- replied sends from this column instead of searching the chat's messages once per send.
ALTER TABLE outbound_messages ADD COLUMN replied_at BIGINT;

UPDATE outbound_messages SET replied_at = (
    SELECT MIN(m.sent_at) FROM messages m
    WHERE m.device_id = outbound_messages.device_id AND m.chat_jid = outbound_messages.recipient
      AND m.from_me = FALSE AND m.sent_at >= outbound_messages.sent_at)
WHERE status IN ('sent', 'delivered', 'read') AND sent_at IS NOT NULL AND EXISTS (
    SELECT 1 FROM messages m
    WHERE m.device_id = outbound_messages.device_id AND m.chat_jid = outbound_messages.recipient
      AND m.from_me = FALSE AND m.sent_at >= outbound_messages.sent_at);

-- The roll-up joins a day's sends on this expression; without statistics of its own PostgreSQL
-- guesses a handful of sends per (device, day), sorts millions of rows it thought were thousands,
-- and spills them to disk.
CREATE STATISTICS outbound_messages_day_stats
    ON (COALESCE(sent_at, created_at) - COALESCE(sent_at, created_at) % 86400000) FROM outbound_messages;
ANALYZE outbound_messages;
