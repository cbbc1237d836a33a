-- Decides every window of one policy for one key in one atomic step.
--
-- A translation of src/algorithm/*.rs (the in-memory store runs the Rust); the
-- differential tests hold both to the same answers. Time is integer microseconds from
-- Redis TIME; every number stays below 2^53, so Lua's doubles are exact.
--
-- Written flat on purpose: each EVALSHA runs this chunk afresh, and every function or
-- table it creates is an allocation per decision. A policy of one GCRA window is decided
-- after only the one helper both GCRA paths share is created; the calendar helpers
-- only when a calendar window is present, the sliding algorithms' only when one is.
-- Needs Redis 5 or later, which replicates a script's effects rather than the script
-- (TIME makes it non-deterministic).
--
-- ARGV[1] cost, ARGV[2] number of windows, then 4 per window:
--   algorithm (1 GCRA, 2 fixed, 3 calendar, 4 sliding counter, 5 sliding log),
--   max (GCRA: capacity), window in us (GCRA: emission interval), calendar period code.
-- A policy of one GCRA window is sent shorter: ARGV[2] 'g', ARGV[3] capacity, ARGV[4]
--   emission interval (every argument is a string Redis parses and Lua interns).
-- KEYS: one per window in order; a sliding log takes two (entries, then its meta hash).
--   A GCRA key holds the string "tat:emission" (both integer us, as %.0f writes them):
--   the emission interval the tat was written under, so that a reload changing the rate
--   re-expresses the backlog in units (gcra.rs, Gcra::rebase) instead of misreading it.
--   A legacy value, the tat alone, reads under the current emission.
-- Reply: allowed (1/0), then per window: verdict (-1 fits, -2 never, else retry after us),
--   remaining, reset after us, next unit after us (until one unit more than remaining is
--   available; 0 when the window is full).
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
--[[CLOCK]]

local cost = tonumber(ARGV[1])
-- Milliseconds added to every TTL: none in production (see `with_script_clock`).
local TTL_EXTRA = 0

-- gcra.rs Gcra::rebase: where a GCRA window's backlog starts, from its stored value
-- ("tat:emission", or a legacy tat alone; unreadable counts as no state), re-expressed
-- under `emission` when it was written under another: whole units exactly, the fraction
-- of one scaled and rounded up, capped at 2^52 us; the same operations as the Rust, so
-- the same microsecond. Returns the start and whether it was converted.
local function gcra_start(stored, emission)
  if not stored then return now, false end
  local sep = string.find(stored, ':', 1, true)
  local tat = tonumber(sep and string.sub(stored, 1, sep - 1) or stored)
  if not tat or tat <= now then return now, false end
  local from = sep and tonumber(string.sub(stored, sep + 1))
  if not from or from <= 0 or from == emission then return tat, false end
  local backlog = tat - now
  local part = math.fmod(backlog, from)
  backlog = (backlog - part) / from * emission
  if part > 0 then backlog = backlog + math.ceil(part * emission / from) end
  return now + math.min(backlog, 4503599627370496), true
end

-- One GCRA window, the common policy: gcra() below, inlined, computing only the figures
-- the reply carries.
if ARGV[2] == 'g' then
  local capacity, emission = tonumber(ARGV[3]), tonumber(ARGV[4])
  local tau = emission * capacity
  local start, rebased = gcra_start(redis.call('GET', KEYS[1]), emission)
  local increment = emission * cost
  local new_tat = start + increment
  if new_tat - tau > now then
    local v = new_tat - tau - now
    if increment > tau then v = -2 end
    local room = tau - (start - now)
    local remaining = 0
    if room > 0 then remaining = math.floor(room / emission) end
    local next_unit = 0
    if remaining < capacity then
      next_unit = math.max(start - now - (capacity - remaining - 1) * emission, 0)
    end
    if rebased then
      -- Written back converted, as the in-memory store keeps it: the new rate drains it
      -- from now on, and its TTL is the new backlog's (a lowered rate lengthens it).
      redis.call('SET', KEYS[1], string.format('%.0f:%s', start, ARGV[4]), 'PX',
        math.ceil((start - now) / 1000) + TTL_EXTRA)
    end
    return {0, v, remaining, start - now, next_unit}
  end
  if cost > 0 then
    -- new_tat > now here, so the TTL is at least 1 ms. %.0f: exact for these integers
    -- below 2^53 (Lua's own tostring keeps only 14 digits); ARGV[4] is already the
    -- emission's decimal text.
    local ttl = math.ceil((new_tat - now) / 1000) + TTL_EXTRA
    redis.call('SET', KEYS[1], string.format('%.0f:%s', new_tat, ARGV[4]), 'PX', ttl)
  elseif rebased then
    redis.call('SET', KEYS[1], string.format('%.0f:%s', start, ARGV[4]), 'PX',
      math.ceil((start - now) / 1000) + TTL_EXTRA)
  end
  local room = tau - (new_tat - now)
  local remaining = 0
  if room > 0 then remaining = math.floor(room / emission) end
  local next_unit = 0
  if remaining < capacity then
    next_unit = math.max(new_tat - now - (capacity - remaining - 1) * emission, 0)
  end
  return {1, -1, remaining, new_tat - now, next_unit}
end

local n = tonumber(ARGV[2])
local FITS, NEVER = -1, -2
local DAY = 86400000000

local function num(x) return string.format('%.0f', x) end
local function ttl_ms(us) return math.max(math.ceil(us / 1000), 1) + TTL_EXTRA end

-- gcra.rs: the verdict, held remaining, reset and next unit, taken remaining, reset and
-- next unit, new TAT.
-- `text` is the emission's ARGV text.
local function gcra(key, capacity, emission, text)
  local tau = emission * capacity
  local start, rebased = gcra_start(redis.call('GET', key), emission)
  if rebased then
    -- Written back at once whatever the verdict (a commit below overwrites it), as the
    -- in-memory store converts its slot in place.
    redis.call('SET', key, num(start) .. ':' .. text, 'PX', ttl_ms(start - now))
  end
  local increment = emission * cost
  local new_tat = start + increment
  local allow_at = new_tat - tau
  local v
  if allow_at <= now then v = FITS elseif increment > tau then v = NEVER else v = allow_at - now end
  local hr, tr, hn, tn = 0, 0, 0, 0
  if tau - (start - now) > 0 then hr = math.floor((tau - (start - now)) / emission) end
  if tau - (new_tat - now) > 0 then tr = math.floor((tau - (new_tat - now)) / emission) end
  if hr < capacity then hn = math.max(start - now - (capacity - hr - 1) * emission, 0) end
  if tr < capacity then tn = math.max(new_tat - now - (capacity - tr - 1) * emission, 0) end
  return v, hr, math.max(start - now, 0), hn, tr, math.max(new_tat - now, 0), tn, new_tat
end

-- calendar.rs: Period::bounds (created on first use)
local calendar

-- Per window j, at 7*(j-1): verdict, held remaining, reset and next unit, taken
-- remaining, reset and next unit. Commit data at 3*(j-1): what to write if every window fits.
local out, commit = {}, {}
local allowed = true
local k = 1
for j = 1, n do
  local b = 2 + (j - 1) * 4
  local algo, max, w = tonumber(ARGV[b + 1]), tonumber(ARGV[b + 2]), tonumber(ARGV[b + 3])
  local key = KEYS[k]
  local v, hr, hs, hn, tr, ts, tn
  local c1, c2, c3 = 0, 0, 0

  if algo == 1 then
    v, hr, hs, hn, tr, ts, tn, c1 = gcra(key, max, w, ARGV[b + 3])
  elseif algo == 2 or algo == 3 then
    -- fixed_window.rs
    local s, e
    if algo == 2 then
      s = now - math.fmod(now, w)
      e = s + w
    else
      if calendar == nil then
        calendar = function(code, at)
          if code == 1 then local x = at - math.fmod(at, 60000000); return x, x + 60000000 end
          if code == 2 then local x = at - math.fmod(at, 3600000000); return x, x + 3600000000 end
          if code == 3 then local x = at - math.fmod(at, DAY); return x, x + DAY end
          local day = (at - math.fmod(at, DAY)) / DAY
          if code == 4 then
            local x = (day - (day + 3) % 7) * DAY
            return x, x + 7 * DAY
          end
          -- Month: H. Hinnant's civil-from-days and days-from-civil.
          local function days_from_civil(y, m, d)
            if m <= 2 then y = y - 1 end
            local era = math.floor(y / 400)
            local yoe = y - era * 400
            local mp = (m + 9) % 12
            local doy = math.floor((153 * mp + 2) / 5) + d - 1
            local doe = yoe * 365 + math.floor(yoe / 4) - math.floor(yoe / 100) + doy
            return era * 146097 + doe - 719468
          end
          local z = day + 719468
          local era = math.floor(z / 146097)
          local doe = z - era * 146097
          local yoe = math.floor((doe - math.floor(doe / 1460) + math.floor(doe / 36524) - math.floor(doe / 146096)) / 365)
          local doy = doe - (365 * yoe + math.floor(yoe / 4) - math.floor(yoe / 100))
          local mp = math.floor((5 * doy + 2) / 153)
          local m = mp - 9
          if mp < 10 then m = mp + 3 end
          local y = yoe + era * 400
          if m <= 2 then y = y + 1 end
          local ny, nm = y, m + 1
          if m == 12 then ny, nm = y + 1, 1 end
          return days_from_civil(y, m, 1) * DAY, days_from_civil(ny, nm, 1) * DAY
        end
      end
      s, e = calendar(tonumber(ARGV[b + 4]), now)
    end
    local st = redis.call('HMGET', key, 's', 'n')
    local count = 0
    if tonumber(st[1]) == s then count = tonumber(st[2]) end
    local until_end = math.max(e - now, 0)
    if cost > max then v = NEVER elseif count + cost <= max then v = FITS else v = until_end end
    hr = math.max(max - count, 0)
    hs = 0
    if count > 0 then hs = until_end end
    tr = math.max(max - count - cost, 0)
    ts = 0
    if count + cost > 0 then ts = until_end end
    -- What is used comes back all at once, at the end of the window.
    hn, tn = hs, ts
    c1, c2, c3 = s, count + cost, e

  elseif algo == 4 then
    -- sliding_counter.rs
    local start = now - math.fmod(now, w)
    local st = redis.call('HMGET', key, 's', 'c', 'p')
    local stored = tonumber(st[1])
    local cur, prev = 0, 0
    if stored == start then
      cur, prev = tonumber(st[2]), tonumber(st[3])
    elseif stored == start - w then
      prev = tonumber(st[2])
    end
    local elapsed = now - start
    -- retry_after: when `k` more units fit with `c` counted in the current window.
    local function wait(c, k)
      if c + k <= max then
        -- offset_where_fits(w, prev, max - c - k) - elapsed
        return math.max(w - math.floor((max - c - k) * w / prev) - elapsed, 1)
      end
      return math.max(w - elapsed + w - math.floor((max - k) * w / c), 1)
    end
    local weighted = 0
    if prev > 0 then weighted = math.ceil(prev * (w - elapsed) / w) end
    local used = weighted + cur
    if cost > max then
      v = NEVER
    elseif used + cost <= max then
      v = FITS
    else
      v = wait(cur, cost)
    end
    local function reset(c)
      if c > 0 then return math.max(start + 2 * w - now, 0) end
      if prev > 0 then return math.max(start + w - now, 0) end
      return 0
    end
    hr = math.max(max - used, 0)
    hs = reset(cur)
    tr = math.max(max - used - cost, 0)
    ts = reset(cur + cost)
    hn, tn = 0, 0
    if hr < max then hn = wait(cur, hr + 1) end
    if tr < max then tn = wait(cur + cost, tr + 1) end
    c1, c2, c3 = start, cur + cost, prev

  else
    -- sliding_log.rs: entries are members "seq:cost" scored by time; the meta hash
    -- holds the sum of costs (n) and the member sequence (q).
    local mkey = KEYS[k + 1]
    k = k + 1
    local sum = tonumber(redis.call('HGET', mkey, 'n') or 0)
    local gone = redis.call('ZRANGEBYSCORE', key, '-inf', num(now - w))
    if #gone > 0 then
      for i = 1, #gone do sum = sum - tonumber(string.match(gone[i], ':(%d+)$')) end
      redis.call('ZREMRANGEBYSCORE', key, '-inf', num(now - w))
      redis.call('HSET', mkey, 'n', num(sum))
    end
    -- freed_after: when the oldest entries will have freed `need` units (nil when they
    -- hold fewer). Every entry costs at least 1, so `need` entries are always enough.
    local function freed_after(need)
      local freed, i = 0, 0
      local step = math.min(need, 64)
      while true do
        local chunk = redis.call('ZRANGE', key, i, i + step - 1, 'WITHSCORES')
        if #chunk == 0 then return nil, freed end
        for x = 1, #chunk, 2 do
          freed = freed + tonumber(string.match(chunk[x], ':(%d+)$'))
          if freed >= need then return math.max(tonumber(chunk[x + 1]) + w - now, 1), freed end
        end
        i = i + step
      end
    end
    if cost > max then
      v = NEVER
    elseif sum + cost <= max then
      v = FITS
    else
      -- When enough of the oldest entries will have left for the cost to fit.
      v = freed_after(sum + cost - max) or w
    end
    local newest = redis.call('ZRANGE', key, -1, -1, 'WITHSCORES')
    hr = math.max(max - sum, 0)
    hs = 0
    if #newest > 0 then hs = math.max(tonumber(newest[2]) + w - now, 0) end
    tr, ts = hr, hs
    if cost > 0 then tr, ts = math.max(max - sum - cost, 0), w end
    -- One unit more than remaining is free once the oldest entries holding it have left;
    -- when taken, the request being admitted is the newest entry, at now.
    hn, tn = 0, 0
    if hr < max then hn = freed_after(sum + hr + 1 - max) or w end
    if cost == 0 then
      tn = hn
    elseif tr < max and v == FITS then
      tn = freed_after(sum + cost + tr + 1 - max) or w
    end
    c1 = sum
  end

  k = k + 1
  local o = 7 * (j - 1)
  out[o + 1], out[o + 2], out[o + 3], out[o + 4] = v, hr, hs, hn
  out[o + 5], out[o + 6], out[o + 7] = tr, ts, tn
  o = 3 * (j - 1)
  commit[o + 1], commit[o + 2], commit[o + 3] = c1, c2, c3
  if v ~= FITS then allowed = false end
end

if allowed and cost > 0 then
  k = 1
  for j = 1, n do
    local b = 2 + (j - 1) * 4
    local algo, w = tonumber(ARGV[b + 1]), tonumber(ARGV[b + 3])
    local key = KEYS[k]
    local o = 3 * (j - 1)
    local c1, c2, c3 = commit[o + 1], commit[o + 2], commit[o + 3]
    if algo == 1 then
      redis.call('SET', key, num(c1) .. ':' .. ARGV[b + 3], 'PX', ttl_ms(c1 - now))
    elseif algo == 2 or algo == 3 then
      redis.call('HSET', key, 's', num(c1), 'n', num(c2))
      redis.call('PEXPIRE', key, ttl_ms(c3 - now))
    elseif algo == 4 then
      redis.call('HSET', key, 's', num(c1), 'c', num(c2), 'p', num(c3))
      redis.call('PEXPIRE', key, ttl_ms(c1 + 2 * w - now))
    else
      local mkey = KEYS[k + 1]
      k = k + 1
      local seq = redis.call('HINCRBY', mkey, 'q', 1)
      redis.call('ZADD', key, num(now), num(seq) .. ':' .. num(cost))
      redis.call('HSET', mkey, 'n', num(c1 + cost))
      redis.call('PEXPIRE', key, ttl_ms(w))
      redis.call('PEXPIRE', mkey, ttl_ms(w))
    end
    k = k + 1
  end
end

local reply = {0}
local shift = 1
if allowed then
  reply[1] = 1
  shift = 4
end
for j = 1, n do
  local o = 7 * (j - 1)
  reply[4 * j - 2] = out[o + 1]
  reply[4 * j - 1] = out[o + shift + 1]
  reply[4 * j] = out[o + shift + 2]
  reply[4 * j + 1] = out[o + shift + 3]
end
return reply
