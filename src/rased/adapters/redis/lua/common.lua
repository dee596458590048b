-- Shared by append.lua and move.lua (prepended to each when loaded).
--
-- KEYS of a transaction, all under one hash tag so a script touches one cluster slot:
--   1 buffer    string  the buffered batches, each framed as CompiledTransaction field 6
--   2 state     hash    counters of the buffer: n batches, b bytes, e events, f/l first and
--                       last event ms, u user id, t last append ms (exists iff buffer does)
--   3 ids       set     batch ids already stored (expires dedup_ttl after the last append)
--   4 txn       hash    next segment number, last flushed segment and reason (same expiry)
--   5 pending   hash    segment -> meta of a segment being published; "t:<token>" -> segment
--   6 flushing  hash    segment -> payload of a segment being published
--
-- A segment's meta is one string: segment,reason,triggered_ms,moved_ms,batches,bytes,
-- events,first_ms,last_ms,token,user_id (user_id last: it is the only free-form field).

-- A stored number, or 0 where none is stored (a buffer without events has no time range).
local function number_or_zero(value)
  if not value or value == '' then
    return 0
  end
  return value
end

-- Return the segment already moved under this flush token, as {1, meta, payload}, or nil.
local function moved_under(token)
  local segment = redis.call('HGET', KEYS[5], 't:' .. token)
  if not segment then
    return nil
  end
  return {1, redis.call('HGET', KEYS[5], segment), redis.call('HGET', KEYS[6], segment)}
end

-- Move the buffer to a new flushing segment; return {1, meta, payload}, or nil if empty.
local function move(reason, now_ms, token, ttl_ms)
  local payload = redis.call('GET', KEYS[1])
  if not payload then
    return nil
  end
  local s = redis.call('HMGET', KEYS[2], 'n', 'b', 'e', 'f', 'l', 'u')
  local segment = redis.call('HINCRBY', KEYS[4], 'next', 1) - 1
  -- The counter expires with the dedup ids; never reuse a number still being published.
  while redis.call('HEXISTS', KEYS[6], segment) == 1 do
    segment = redis.call('HINCRBY', KEYS[4], 'next', 1) - 1
  end
  redis.call('HSET', KEYS[4], 'last_segment', segment, 'last_reason', reason)
  redis.call('PEXPIRE', KEYS[4], ttl_ms)
  local meta = table.concat({
    segment, reason, now_ms, now_ms, s[1] or 0, s[2] or 0, s[3] or 0, number_or_zero(s[4]),
    number_or_zero(s[5]), token, s[6] or ''
  }, ',')
  redis.call('HSET', KEYS[5], segment, meta, 't:' .. token, segment)
  redis.call('HSET', KEYS[6], segment, payload)
  redis.call('DEL', KEYS[1], KEYS[2])
  return {1, meta, payload}
end

-- What the last flush of this transaction was: {0, last segment, last reason}.
local function last_flush()
  local last = redis.call('HMGET', KEYS[4], 'last_segment', 'last_reason')
  return {0, tonumber(last[1]) or 0, tonumber(last[2]) or 0}
end
