-- Deletes the finished jobs of one apalis-redis queue that finished at or before a cutoff: their
-- data, their metadata key and their entry in the finished set. apalis-redis' own vacuum reads the
-- whole data hash in one call and leaves the finished set growing; this walks the finished set a
-- batch per call instead, so Redis is never blocked for long.
--
-- KEYS[1]: the set of finished jobs (`{queue}:done` or `{queue}:dead`)
-- KEYS[2]: the job data hash (`{queue}:data`)
-- KEYS[3]: the metadata prefix (`{queue}:meta`)
-- ARGV[1]: the cutoff, Unix seconds
-- ARGV[2]: the SSCAN cursor ("0" to start)
-- ARGV[3]: how many set members to look at
-- Returns { next cursor ("0" when done), jobs deleted }
local scan = redis.call("SSCAN", KEYS[1], ARGV[2], "COUNT", ARGV[3])
local cutoff = tonumber(ARGV[1])
local deleted = 0
for _, id in ipairs(scan[2]) do
  local meta = KEYS[3] .. ":" .. id
  local done_at = tonumber(redis.call("HGET", meta, "done_at"))
  -- A job whose metadata is gone is an orphan entry: nothing to keep it for.
  if done_at == nil or done_at <= cutoff then
    redis.call("HDEL", KEYS[2], id)
    redis.call("HDEL", KEYS[3] .. ":result", id)
    redis.call("DEL", meta)
    redis.call("SREM", KEYS[1], id)
    deleted = deleted + 1
  end
end
return { scan[1], deleted }
