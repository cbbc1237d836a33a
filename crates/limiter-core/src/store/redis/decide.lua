-- Decides every window of one policy for one key in one atomic step.
--
-- A line-by-line translation of src/algorithm/*.rs (the in-memory store runs the Rust);
-- the differential tests hold both to the same answers. Time is integer microseconds
-- from Redis TIME; every number stays below 2^53, so Lua's doubles are exact.
--
-- ARGV[1] cost, ARGV[2] number of windows, then 4 per window:
--   algorithm (1 GCRA, 2 fixed, 3 calendar, 4 sliding counter, 5 sliding log),
--   max (GCRA: capacity), window in us (GCRA: emission interval), calendar period code.
-- KEYS: one per window in order; a sliding log takes two (entries, then its meta hash).
-- Reply: allowed (1/0), then per window: verdict (-1 fits, -2 never, else retry after us),
--   remaining, reset after us.
redis.replicate_commands()
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
--[[CLOCK]]

local cost = tonumber(ARGV[1])
local n = tonumber(ARGV[2])
local FITS, NEVER = -1, -2

local function num(x) return string.format('%.0f', x) end
local function ttl_ms(us) return math.max(math.ceil(us / 1000), 1) end
local function floor_to(x, len) return x - math.fmod(x, len) end

local function days_from_civil(y, m, d)
  if m <= 2 then y = y - 1 end
  local era = math.floor(y / 400)
  local yoe = y - era * 400
  local mp = (m + 9) % 12
  local doy = math.floor((153 * mp + 2) / 5) + d - 1
  local doe = yoe * 365 + math.floor(yoe / 4) - math.floor(yoe / 100) + doy
  return era * 146097 + doe - 719468
end

local function civil_from_days(z)
  z = z + 719468
  local era = math.floor(z / 146097)
  local doe = z - era * 146097
  local yoe = math.floor((doe - math.floor(doe / 1460) + math.floor(doe / 36524) - math.floor(doe / 146096)) / 365)
  local doy = doe - (365 * yoe + math.floor(yoe / 4) - math.floor(yoe / 100))
  local mp = math.floor((5 * doy + 2) / 153)
  local d = doy - math.floor((153 * mp + 2) / 5) + 1
  local m = mp - 9
  if mp < 10 then m = mp + 3 end
  local y = yoe + era * 400
  if m <= 2 then y = y + 1 end
  return y, m, d
end

-- calendar.rs: Period::bounds
local DAY = 86400000000
local function calendar(code, at)
  if code == 1 then local s = floor_to(at, 60000000); return s, s + 60000000 end
  if code == 2 then local s = floor_to(at, 3600000000); return s, s + 3600000000 end
  if code == 3 then local s = floor_to(at, DAY); return s, s + DAY end
  local day = (at - math.fmod(at, DAY)) / DAY
  if code == 4 then
    local s = (day - (day + 3) % 7) * DAY
    return s, s + 7 * DAY
  end
  local y, m = civil_from_days(day)
  local ny, nm = y, m + 1
  if m == 12 then ny, nm = y + 1, 1 end
  return days_from_civil(y, m, 1) * DAY, days_from_civil(ny, nm, 1) * DAY
end

local function verdict(fits, never, retry)
  if never then return NEVER end
  if fits then return FITS end
  return retry
end

-- Each evaluator returns held {verdict, remaining, reset}, taken {...}, and a commit.

-- gcra.rs
local function gcra(key, capacity, emission)
  local tau = emission * capacity
  local tat = tonumber(redis.call('GET', key) or now)
  local start = math.max(tat, now)
  local increment = emission * cost
  local new_tat = start + increment
  local allow_at = new_tat - tau
  local v = verdict(allow_at <= now, increment > tau, allow_at - now)
  local function state(backlog)
    local room = tau - backlog
    local remaining = 0
    if room > 0 then remaining = math.floor(room / emission) end
    return {v, remaining, math.max(backlog, 0)}
  end
  return state(start - now), state(new_tat - now), function()
    redis.call('SET', key, num(new_tat), 'PX', ttl_ms(new_tat - now))
  end
end

-- fixed_window.rs
local function fixed(key, max, s, e)
  local st = redis.call('HMGET', key, 's', 'n')
  local count = 0
  if tonumber(st[1]) == s then count = tonumber(st[2]) end
  local until_end = math.max(e - now, 0)
  local v = verdict(count + cost <= max, cost > max, until_end)
  local function state(used)
    local reset = 0
    if used > 0 then reset = until_end end
    return {v, math.max(max - used, 0), reset}
  end
  return state(count), state(count + cost), function()
    redis.call('HSET', key, 's', num(s), 'n', num(count + cost))
    redis.call('PEXPIRE', key, ttl_ms(e - now))
  end
end

-- sliding_counter.rs
local function offset_where_fits(w, count, room)
  return w - math.floor(room * w / count)
end

local function counter(key, max, w)
  local start = floor_to(now, w)
  local st = redis.call('HMGET', key, 's', 'c', 'p')
  local stored = tonumber(st[1])
  local cur, prev = 0, 0
  if stored == start then
    cur, prev = tonumber(st[2]), tonumber(st[3])
  elseif stored == start - w then
    prev = tonumber(st[2])
  end
  local elapsed = now - start
  local weighted = 0
  if prev > 0 then weighted = math.ceil(prev * (w - elapsed) / w) end
  local used = weighted + cur
  local retry = 0
  if cost <= max and used + cost > max then
    if cur + cost <= max then
      retry = math.max(offset_where_fits(w, prev, max - cur - cost) - elapsed, 1)
    else
      retry = math.max(w - elapsed + offset_where_fits(w, cur, max - cost), 1)
    end
  end
  local v = verdict(used + cost <= max, cost > max, retry)
  local function state(c, u)
    local reset = 0
    if c > 0 then reset = start + 2 * w - now elseif prev > 0 then reset = start + w - now end
    return {v, math.max(max - u, 0), math.max(reset, 0)}
  end
  return state(cur, used), state(cur + cost, used + cost), function()
    redis.call('HSET', key, 's', num(start), 'c', num(cur + cost), 'p', num(prev))
    redis.call('PEXPIRE', key, ttl_ms(start + 2 * w - now))
  end
end

-- sliding_log.rs: entries are members "seq:cost" scored by time; the meta hash holds
-- the sum of costs (n) and the member sequence (q).
local function member_cost(m) return tonumber(string.match(m, ':(%d+)$')) end

local function log(zkey, mkey, max, w)
  local sum = tonumber(redis.call('HGET', mkey, 'n') or 0)
  local gone = redis.call('ZRANGEBYSCORE', zkey, '-inf', num(now - w))
  if #gone > 0 then
    for _, m in ipairs(gone) do sum = sum - member_cost(m) end
    redis.call('ZREMRANGEBYSCORE', zkey, '-inf', num(now - w))
    redis.call('HSET', mkey, 'n', num(sum))
  end
  local retry = 0
  if cost <= max and sum + cost > max then
    local need, freed, i, found = sum + cost - max, 0, 0, false
    retry = w
    while not found do
      local chunk = redis.call('ZRANGE', zkey, i, i + 63, 'WITHSCORES')
      if #chunk == 0 then break end
      for x = 1, #chunk, 2 do
        freed = freed + member_cost(chunk[x])
        if freed >= need then
          retry = math.max(tonumber(chunk[x + 1]) + w - now, 1)
          found = true
          break
        end
      end
      i = i + 64
    end
  end
  local v = verdict(sum + cost <= max, cost > max, retry)
  local newest = redis.call('ZRANGE', zkey, -1, -1, 'WITHSCORES')
  local held_reset = 0
  if #newest > 0 then held_reset = math.max(tonumber(newest[2]) + w - now, 0) end
  local held = {v, math.max(max - sum, 0), held_reset}
  local taken = held
  if cost > 0 then taken = {v, math.max(max - sum - cost, 0), w} end
  return held, taken, function()
    local seq = redis.call('HINCRBY', mkey, 'q', 1)
    redis.call('ZADD', zkey, num(now), num(seq) .. ':' .. num(cost))
    redis.call('HSET', mkey, 'n', num(sum + cost))
    redis.call('PEXPIRE', zkey, ttl_ms(w))
    redis.call('PEXPIRE', mkey, ttl_ms(w))
  end
end

local held, taken, commits = {}, {}, {}
local allowed = true
local k = 1
for j = 1, n do
  local b = 2 + (j - 1) * 4
  local algo, max, w, code = tonumber(ARGV[b + 1]), tonumber(ARGV[b + 2]), tonumber(ARGV[b + 3]), tonumber(ARGV[b + 4])
  local h, tk, commit
  if algo == 1 then
    h, tk, commit = gcra(KEYS[k], max, w)
  elseif algo == 2 then
    local s = floor_to(now, w)
    h, tk, commit = fixed(KEYS[k], max, s, s + w)
  elseif algo == 3 then
    h, tk, commit = fixed(KEYS[k], max, calendar(code, now))
  elseif algo == 4 then
    h, tk, commit = counter(KEYS[k], max, w)
  else
    h, tk, commit = log(KEYS[k], KEYS[k + 1], max, w)
    k = k + 1
  end
  k = k + 1
  held[j], taken[j], commits[j] = h, tk, commit
  if h[1] ~= FITS then allowed = false end
end

local shown = held
if allowed then
  shown = taken
  if cost > 0 then
    for j = 1, n do commits[j]() end
  end
end
local reply = {0}
if allowed then reply[1] = 1 end
for j = 1, n do
  reply[#reply + 1] = shown[j][1]
  reply[#reply + 1] = shown[j][2]
  reply[#reply + 1] = shown[j][3]
end
return reply
