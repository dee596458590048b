-- List the segments of one transaction moved to flushing at or before a time.
--
-- KEYS: 1 pending, 2 flushing (the transaction's keys 5 and 6). ARGV: 1 moved at or before ms
-- Returns {meta, payload or false, ...}; a payload is false when only its meta is left
-- (a finish interrupted between its two deletions: already published).
local entries = redis.call('HGETALL', KEYS[1])
local out = {}
local limit = tonumber(ARGV[1])
for i = 1, #entries, 2 do
  local field = entries[i]
  if string.sub(field, 1, 2) ~= 't:' then
    local meta = entries[i + 1]
    local moved_ms = tonumber(string.match(meta, '^[^,]*,[^,]*,[^,]*,([^,]*),'))
    if moved_ms <= limit then
      out[#out + 1] = meta
      out[#out + 1] = redis.call('HGET', KEYS[2], field) or false
    end
  end
end
return out
