-- Move the buffer to flushing if its trigger still holds (re-checked here, atomically).
--
-- ARGV: 1 mode ('threshold' or 'idle'), 2 now ms, 3 flush token, 4 dedup ttl ms,
--       5 max batches, 6 max bytes, 7 count reason, 8 size reason, 9 idle ms, 10 idle reason
-- Returns {1, meta, payload} when moved (or already moved under this token);
-- {0, last segment, last reason} when there is nothing to move (another process flushed it);
-- {2, last append ms} in idle mode when the transaction is not idle (a batch arrived since).
local already = moved_under(ARGV[3])
if already then
  return already
end
local s = redis.call('HMGET', KEYS[2], 'n', 'b', 't')
local n = tonumber(s[1])
if not n then
  return last_flush()
end
local reason
if ARGV[1] == 'threshold' then
  if n > tonumber(ARGV[5]) then
    reason = ARGV[7]
  elseif tonumber(s[2]) >= tonumber(ARGV[6]) then
    reason = ARGV[8]
  else
    return last_flush()
  end
else
  local last_append = tonumber(s[3])
  if last_append + tonumber(ARGV[9]) > tonumber(ARGV[2]) then
    return {2, last_append}
  end
  reason = ARGV[10]
end
return move(reason, ARGV[2], ARGV[3], ARGV[4])
