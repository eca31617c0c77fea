-- Commits one store transaction (see tx.commit, which builds the
-- arguments): it checks that every key the transaction read still holds
-- what it saw and every index range it scanned still holds the keys it
-- saw, and only then applies the writes. Returns 0 when a read is stale
-- and nothing was written; else the writes are applied and it returns a
-- list: 1, then for each conditional delete (c below) 1 if it deleted the
-- key, 0 if the key held something else.
--
-- Everything is in ARGV, read front to back (KEYS is empty: the store does
-- not support Redis Cluster, and slices of ARGV go to Redis with unpack,
-- which in Redis's Lua costs far less than building argument tables):
--   n, then the n keys the transaction read, those it found
--      holding a value first; p, then the values it saw in
--      the first p keys (the others it found missing)           MGET
--   k, then k times: an index key, a member, and "1" if the
--      transaction found the member there, "" if not             ZSCORE
--   r, then r times: an index key, ZRANGEBYLEX min and max,
--      n, and the n members the range held                      ZRANGEBYLEX
--   s, then s key/value pairs                                   MSET
--   d, then d keys                                              DEL
--   c, then c keys, then c values: each key
--      is deleted if it holds its value                         MGET, DEL
--   z, then z times: an index key,
--      n, n score/member pairs to add,                          ZADD
--      m, m members to remove                                   ZREM
local a = 1
local function count()
  a = a + 1
  return tonumber(ARGV[a - 1])
end

-- take runs cmd (after head, if any) over the next n values of ARGV and
-- moves past them. It sends them in chunks: unpack fails beyond a few
-- thousand values. The chunk size is even, so pairs stay together.
local function take(cmd, head, n)
  local last = a + n - 1
  for i = a, last, 1000 do
    local j = math.min(i + 999, last)
    if head then
      redis.call(cmd, head, unpack(ARGV, i, j))
    else
      redis.call(cmd, unpack(ARGV, i, j))
    end
  end
  a = last + 1
end

local n = count()
local keys = a
a = a + n
local p = count()
for i = keys, keys + n - 1, 1000 do
  local have = redis.call('MGET', unpack(ARGV, i, math.min(i + 999, keys + n - 1)))
  for x = 1, #have do
    local k = i + x - 1 - keys -- how many keys come before this one
    if k < p then
      -- a missing key's false is never equal to a string
      if have[x] ~= ARGV[a + k] then return 0 end
    elseif have[x] then
      return 0
    end
  end
end
a = a + p

for _ = 1, count() do
  local found = redis.call('ZSCORE', ARGV[a], ARGV[a + 1]) ~= false
  if found ~= (ARGV[a + 2] == '1') then return 0 end
  a = a + 3
end

for _ = 1, count() do
  local index, min, max = ARGV[a], ARGV[a + 1], ARGV[a + 2]
  a = a + 3
  local n = count()
  -- one more than was seen: a range that grew needs no longer reply
  local have = redis.call('ZRANGEBYLEX', index, min, max, 'LIMIT', 0, n + 1)
  if #have ~= n then return 0 end
  for i = 1, n do
    if have[i] ~= ARGV[a + i - 1] then return 0 end
  end
  a = a + n
end

take('MSET', nil, 2 * count())
take('DEL', nil, count())
local c = count()
local out = {1}
for i = a, a + c - 1, 1000 do
  local last = math.min(i + 999, a + c - 1)
  local have = redis.call('MGET', unpack(ARGV, i, last))
  local gone = {}
  for x = 1, #have do
    if have[x] == ARGV[i + x - 1 + c] then
      gone[#gone + 1] = ARGV[i + x - 1]
      out[#out + 1] = 1
    else
      out[#out + 1] = 0
    end
  end
  if #gone > 0 then redis.call('DEL', unpack(gone)) end
end
a = a + 2 * c
for _ = 1, count() do
  local index = ARGV[a]
  a = a + 1
  take('ZADD', index, 2 * count())
  take('ZREM', index, count())
end
return out
