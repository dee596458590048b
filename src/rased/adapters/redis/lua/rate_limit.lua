-- Two rate limits checked and counted together: the organization's and the session's.
--
-- GCRA (the generic cell rate algorithm, a token bucket kept as one timestamp): each key
-- holds the theoretical arrival time (TAT, ms) of the next batch; a limit of N per period
-- lets N batches through at once and then one every period/N. A batch is counted only if
-- both limits let it through, so a session's refusal costs its organization nothing.
--
-- KEYS: 1 the organization's TAT, 2 the session's (one hash tag, one cluster slot)
-- ARGV: 1 the organization's N, 2 its period ms, 3 the session's N, 4 its period ms
-- Returns {0, 0} when counted, else {limit refused (1 organization, 2 session), wait ms}.

-- Redis' clock, so that every ingestion process counts against the same time.
local clock = redis.call('TIME')
local now = tonumber(clock[1]) * 1000 + math.floor(tonumber(clock[2]) / 1000)

local refused, wait = 0, 0
local next_tat = {}
for i = 1, 2 do
  local limit = tonumber(ARGV[2 * i - 1])
  local period = tonumber(ARGV[2 * i])
  local tat = tonumber(redis.call('GET', KEYS[i]) or now)
  if tat < now then
    tat = now
  end
  next_tat[i] = tat + period / limit
  local allowed_at = next_tat[i] - period
  if allowed_at > now and allowed_at - now > wait then
    refused, wait = i, allowed_at - now
  end
end
if refused > 0 then
  return {refused, math.ceil(wait)}
end
for i = 1, 2 do
  -- The key lapses when its bucket is full again: an idle session leaves nothing behind.
  redis.call('SET', KEYS[i], string.format('%.3f', next_tat[i]), 'PX',
    math.max(math.ceil(next_tat[i] - now), 1))
end
return {0, 0}
