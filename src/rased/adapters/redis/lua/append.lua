-- Append one batch to its transaction's buffer, once per batch id; with a flush token, also
-- move the buffer to flushing in the same step (the batch carried the trigger flag).
--
-- ARGV: 1 batch id, 2 framed batch, 3 batch bytes, 4 events, 5 first event ms (or ''),
--       6 last event ms (or ''), 7 user id, 8 now ms, 9 dedup ttl ms, 10 flush token (or ''),
--       11 flush reason for the token
-- Returns {0 duplicate | 1 buffered, batches, bytes} or {2 flushed, meta, payload}.
local token = ARGV[10]
if redis.call('SADD', KEYS[3], ARGV[1]) == 0 then
  if token ~= '' then
    -- A retried request whose first attempt moved the buffer: hand back that segment.
    local moved = moved_under(token)
    if moved then
      return {2, moved[2], moved[3]}
    end
  end
  local s = redis.call('HMGET', KEYS[2], 'n', 'b')
  return {0, tonumber(s[1]) or 0, tonumber(s[2]) or 0}
end
redis.call('PEXPIRE', KEYS[3], ARGV[9])
redis.call('PEXPIRE', KEYS[4], ARGV[9])
redis.call('APPEND', KEYS[1], ARGV[2])
local s = redis.call('HMGET', KEYS[2], 'n', 'b', 'e', 'f', 'l')
local n = (tonumber(s[1]) or 0) + 1
local b = (tonumber(s[2]) or 0) + tonumber(ARGV[3])
local first, last = s[4], s[5]
if ARGV[5] ~= '' then
  if not first or first == '' or tonumber(ARGV[5]) < tonumber(first) then
    first = ARGV[5]
  end
  if not last or last == '' or tonumber(ARGV[6]) > tonumber(last) then
    last = ARGV[6]
  end
end
redis.call('HSET', KEYS[2], 'n', n, 'b', b, 'e', (tonumber(s[3]) or 0) + tonumber(ARGV[4]),
  'f', first or '', 'l', last or '', 'u', ARGV[7], 't', ARGV[8])
if token ~= '' then
  local moved = move(ARGV[11], ARGV[8], token, ARGV[9])
  return {2, moved[2], moved[3]}
end
return {1, n, b}
