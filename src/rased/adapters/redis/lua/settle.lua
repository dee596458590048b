-- Remove or re-score an index member, only if its score is still the one we claimed it with
-- (a batch appended since re-scored it, and that newer deadline must stay).
--
-- KEYS: 1 index. ARGV: 1 member, 2 expected score, 3 new score ('' removes the member)
-- Returns 1 if changed, 0 if the score had moved on.
local score = redis.call('ZSCORE', KEYS[1], ARGV[1])
if not score or tonumber(score) ~= tonumber(ARGV[2]) then
  return 0
end
if ARGV[3] == '' then
  redis.call('ZREM', KEYS[1], ARGV[1])
else
  redis.call('ZADD', KEYS[1], ARGV[3], ARGV[1])
end
return 1
