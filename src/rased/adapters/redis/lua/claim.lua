-- Claim due members of an index (a sorted set): those scored at or below a time get a new
-- score (a lease), so no other process claims them until it passes.
--
-- KEYS: 1 index. ARGV: 1 due at or before, 2 lease score, 3 most members to claim
-- Returns the claimed members.
local due = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', ARGV[1], 'LIMIT', 0, ARGV[3])
for _, member in ipairs(due) do
  redis.call('ZADD', KEYS[1], ARGV[2], member)
end
return due
