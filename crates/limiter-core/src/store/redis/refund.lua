-- Gives back what a lease or a reservation took and did not use (run inside batch.lua):
-- per window, `unused` of the `taken` units that an admitted decide.lua call consumed at
-- time `taken_at`, as far as each algorithm can tell those units apart from later usage.
-- A window that has moved on since keeps nothing to give back; a refund never gives back
-- more than was taken.
--
-- ARGV[1] taken_at (us), ARGV[2] number of windows, then REFUND_ARGS_PER_WINDOW per
--   window: algorithm code (ALGORITHM_* below, as decide.lua's), window in us (GCRA:
--   emission interval), the window's start at taken_at (fixed, calendar and sliding
--   counter), the units taken and the units unused in it (0: nothing to give back).
-- KEYS: as decide.lua's.
local t = redis.call('TIME')
local now = t[1] * 1000000 + t[2]
--[[CLOCK]]
-- Milliseconds added to every TTL: none in production (see `with_script_clock`).
local TTL_EXTRA = 0

-- The codes and stride the Rust side sends (src/store/redis/refund.rs; a test holds both
-- to the same values).
local ALGORITHM_GCRA = 1
local ALGORITHM_FIXED = 2
local ALGORITHM_CALENDAR = 3
local ALGORITHM_SLIDING_COUNTER = 4
local ALGORITHM_SLIDING_LOG = 5
local REFUND_ARGS_PER_WINDOW = 5

-- Numbers read by arithmetic, as in decide.lua.
local taken_at = ARGV[1] + 0

-- As decide.lua's: exact for integers below 2^53.
local function number_text(x) return string.format('%d', x) end

local key_at = 1
for window = 1, ARGV[2] + 0 do
  local at = 2 + (window - 1) * REFUND_ARGS_PER_WINDOW
  local algorithm, span, start = ARGV[at + 1] + 0, ARGV[at + 2] + 0, ARGV[at + 3] + 0
  local taken, unused = ARGV[at + 4] + 0, ARGV[at + 5] + 0
  local key = KEYS[key_at]
  if unused == 0 then
    -- Nothing to give back in this window.
    if algorithm == ALGORITHM_SLIDING_LOG then key_at = key_at + 1 end
  elseif algorithm == ALGORITHM_GCRA then
    -- The lease moved the arrival time on by `taken` emission intervals of the rate the
    -- value was written under ("tat:emission", or a legacy bare tat at the current
    -- rate); moving it back by the unused ones never goes below now (time already given
    -- back by itself).
    local stored = redis.call('GET', key)
    if stored then
      local tat, emission = string.match(stored, '^(%d+):(%d+)$')
      if tat then
        tat, emission = tonumber(tat), tonumber(emission)
      else
        tat, emission = tonumber(stored), span
      end
      local back = math.max(tat - unused * emission, now)
      if back > now then
        local ttl = math.ceil((back - now) / 1000) + TTL_EXTRA
        redis.call('SET', key, number_text(back) .. ':' .. number_text(emission), 'PX', ttl)
      else
        redis.call('DEL', key)
      end
    end
  elseif algorithm == ALGORITHM_FIXED or algorithm == ALGORITHM_CALENDAR then
    local state = redis.call('HMGET', key, 's', 'n')
    if tonumber(state[1]) == start and state[2] then
      redis.call('HSET', key, 'n', number_text(math.max(tonumber(state[2]) - unused, 0)))
    end
  elseif algorithm == ALGORITHM_SLIDING_COUNTER then
    -- The window the lease counted in is the current one (c) or, once the key has
    -- rolled over, the previous one (p).
    local state = redis.call('HMGET', key, 's', 'c', 'p')
    local stored = tonumber(state[1])
    if stored == start and state[2] then
      redis.call('HSET', key, 'c', number_text(math.max(tonumber(state[2]) - unused, 0)))
    elseif stored == start + span and state[3] then
      redis.call('HSET', key, 'p', number_text(math.max(tonumber(state[3]) - unused, 0)))
    end
  else -- ALGORITHM_SLIDING_LOG
    -- Sliding log: the lease is one entry "seq:taken" scored taken_at; it shrinks to
    -- "seq:(taken - unused)" (or goes) and the meta hash's sum follows.
    local meta = KEYS[key_at + 1]
    key_at = key_at + 1
    local suffix = ':' .. number_text(taken)
    local score = number_text(taken_at)
    local entries = redis.call('ZRANGEBYSCORE', key, score, score)
    for i = 1, #entries do
      local entry = entries[i]
      if string.sub(entry, -#suffix) == suffix then
        redis.call('ZREM', key, entry)
        if taken > unused then
          local seq = string.match(entry, '^(%d+):')
          redis.call('ZADD', key, score, seq .. ':' .. number_text(taken - unused))
        end
        redis.call('HINCRBY', meta, 'n', -unused)
        break
      end
    end
  end
  key_at = key_at + 1
end
return {1}
