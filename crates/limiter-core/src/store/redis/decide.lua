-- Decides every window of one policy for one key in one atomic step.
--
-- A translation of src/algorithm/*.rs and src/calendar.rs (the in-memory store runs the
-- Rust); the differential tests hold both to the same answers. Time is integer
-- microseconds from Redis TIME; every number stays below 2^53, so Lua's doubles are
-- exact, and every number written is formatted with '%d' (Redis's Lua 5.1 converts the
-- double to a 64-bit long first: exact for these integers, and cheaper than '%.0f').
--
-- Written flat on purpose: each EVALSHA runs this chunk afresh, and every function or
-- table it creates is an allocation per decision. A policy of one GCRA window is decided
-- after only the one helper both GCRA paths share is created; the helpers of the other
-- algorithms only after that path has returned, those of calendar windows and sliding
-- logs only in the branch of a window that needs them.
-- Numbers are read from ARGV and TIME by arithmetic (`ARGV[1] + 0`), which converts a
-- numeric string as tonumber does without its function call (about half the cost);
-- stored values, which may be unreadable, through tonumber.
-- Needs Redis 5 or later, which replicates a script's effects rather than the script
-- (TIME makes it non-deterministic).
--
-- ARGV[1] cost: one number for every window, "requests:units" when windows counting
--   requests and windows counting another unit are charged differently, or one number
--   per window, comma-separated ("1,1,5"): a joint decision, the windows of several
--   policies (each with its own keys) decided all or nothing.
-- ARGV[2] number of windows, negative to force (commit the cost in every window
--   whatever the verdicts: a settled reservation's excess, a debt that is never lost),
--   then ARGS_PER_WINDOW per window: algorithm code (ALGORITHM_* below, plus
--   UNIT_WINDOW for a window charged the units of a "requests:units" cost), max (GCRA:
--   capacity), window in us (GCRA: emission interval), calendar period code (PERIOD_*).
-- A policy of one GCRA window is sent shorter: ARGV[2] 'g', ARGV[3] capacity, ARGV[4]
--   emission interval (every argument is a string Redis parses and Lua interns).
-- KEYS: one per window in order; a sliding log takes two (entries, then its meta hash).
--   A GCRA key holds the string "tat:emission" (both integer us): the emission interval
--   the tat was written under, so that a reload changing the rate re-expresses the
--   backlog in units (src/algorithm/gcra.rs, Gcra::rebase) instead of misreading it.
--   A legacy value, the tat alone, reads under the current emission.
-- Reply: allowed (1/0), the decision's time (us), then each window's state as found
--   (one integer, two for a sliding counter, REPLY_PER_LOG figures for a sliding log:
--   see the general path below). The short form of one GCRA window replies one integer
--   (see its path below).
local t = redis.call('TIME')
local now = t[1] * 1000000 + t[2]
--[[CLOCK]]

-- The codes and strides the Rust side sends and reads (src/store/redis/mod.rs; a test
-- holds both to the same values).
local ALGORITHM_GCRA = 1
local ALGORITHM_FIXED = 2
local ALGORITHM_CALENDAR = 3
local ALGORITHM_SLIDING_COUNTER = 4
local ALGORITHM_SLIDING_LOG = 5
local UNIT_WINDOW = 8
local ARGS_PER_WINDOW = 4
local REPLY_PER_LOG = 4
local FITS = -1
local NEVER = -2
-- Milliseconds added to every TTL: none in production (see `with_script_clock`).
local TTL_EXTRA = 0

-- What the window being decided is charged: one figure on the fast path, each window's
-- own in the loop below.
local cost

-- src/algorithm/gcra.rs Gcra::rebase: where a GCRA window's backlog starts, from its
-- stored value ("tat:emission", or a legacy tat alone; unreadable counts as no state),
-- re-expressed under `emission` (whose ARGV text is `emission_text`) when it was written
-- under another: whole units exactly, the fraction of one scaled and rounded up, capped
-- at 2^52 us; the same operations as the Rust, so the same microsecond. Returns the start,
-- whether it was converted and, for a value written under this emission, the length of
-- its tat text (a new tat of that length can overwrite it in place).
local function gcra_start(stored, emission, emission_text)
  if not stored then return now, false end
  local separator = string.find(stored, ':', 1, true)
  if not separator then
    local tat = tonumber(stored)
    if not tat or tat <= now then return now, false end
    return tat, false
  end
  local tat = tonumber(string.sub(stored, 1, separator - 1))
  local from_text = string.sub(stored, separator + 1)
  if from_text == emission_text then
    -- Written under this emission (the common case): its text is the argument's.
    if not tat or tat <= now then return now, false, separator - 1 end
    return tat, false, separator - 1
  end
  if not tat or tat <= now then return now, false end
  local from = tonumber(from_text)
  if not from or from <= 0 or from == emission then return tat, false end
  local backlog = tat - now
  local part = math.fmod(backlog, from)
  backlog = (backlog - part) / from * emission
  if part > 0 then backlog = backlog + math.ceil(part * emission / from) end
  return now + math.min(backlog, 4503599627370496), true
end

-- One GCRA window, the common policy: gcra() below, inlined, replying one integer, the
-- backlog it found (us, before this cost): as is when admitted, as -1 - backlog when
-- denied. The client derives every figure from it as the in-memory store does
-- (src/algorithm/gcra.rs Gcra::replay): a table reply costs Redis more than the rest of
-- the decision's arithmetic.
if ARGV[2] == 'g' then
  -- Most decisions cost 1: compared, not parsed (interned strings compare by address).
  if ARGV[1] == '1' then cost = 1 else cost = ARGV[1] + 0 end
  local emission = ARGV[4] + 0
  local tau = emission * ARGV[3]
  local start, rebased, tat_length = gcra_start(redis.call('GET', KEYS[1]), emission, ARGV[4])
  if rebased then
    -- Written back converted whatever the verdict, as the in-memory store keeps it: the
    -- new rate drains it from now on, and its TTL is the new backlog's (a lowered rate
    -- lengthens it).
    redis.call('SET', KEYS[1], string.format('%d:%s', start, ARGV[4]), 'PX',
      math.ceil((start - now) / 1000) + TTL_EXTRA)
  end
  local new_tat = start + emission * cost
  if new_tat - tau > now then return now - start - 1 end
  if cost > 0 then
    -- The new tat overwrites the old in place, keeping the key's TTL, while that TTL
    -- outlasts the new backlog (new_tat > now here); otherwise the value is written
    -- whole with a TTL of the backlog and one window more (tau, at least the backlog of
    -- any admitted decision), so that the next decisions find it long enough. A key
    -- thus outlives its backlog by at most one window (and, under the test clock, keeps
    -- TTL_EXTRA beyond it). ARGV[4] is already the emission's decimal text.
    local tat_text = string.format('%d', new_tat)
    if tat_length == #tat_text
        and (redis.call('PTTL', KEYS[1]) - TTL_EXTRA) * 1000 >= new_tat - now then
      redis.call('SETRANGE', KEYS[1], '0', tat_text)
    else
      redis.call('SET', KEYS[1], tat_text .. ':' .. ARGV[4], 'PX',
        math.ceil((new_tat - now + tau) / 1000) + TTL_EXTRA)
    end
  end
  return start - now
end

-- A joint decision whose windows are all GCRA (the common shape: per user, per team,
-- global): the 'g' path's arithmetic per window, all or nothing, before the general path
-- creates its helpers and tables.
if string.find(ARGV[1], ',', 1, true) then
  local count = ARGV[2] + 0
  local gcra_only = count > 0
  for window = 1, count do
    local code = ARGV[2 + (window - 1) * ARGS_PER_WINDOW + 1] + 0
    if code ~= ALGORITHM_GCRA and code ~= ALGORITHM_GCRA + UNIT_WINDOW then
      gcra_only = false
      break
    end
  end
  if gcra_only then
    local costs, starts, lengths = {}, {}, {}
    for figure in string.gmatch(ARGV[1], '[^,]+') do costs[#costs + 1] = figure + 0 end
    local allowed = true
    for window = 1, count do
      local at = 2 + (window - 1) * ARGS_PER_WINDOW
      local capacity, emission = ARGV[at + 2] + 0, ARGV[at + 3] + 0
      local start, rebased, tat_length = gcra_start(redis.call('GET', KEYS[window]), emission, ARGV[at + 3])
      if rebased then
        redis.call('SET', KEYS[window], string.format('%d:%s', start, ARGV[at + 3]), 'PX',
          math.ceil((start - now) / 1000) + TTL_EXTRA)
      end
      starts[window], lengths[window] = start, tat_length
      if start + emission * costs[window] - emission * capacity > now then allowed = false end
    end
    -- The general path's reply (below): each window's tat as found.
    local reply = {0, now}
    if allowed then reply[1] = 1 end
    for window = 1, count do
      reply[2 + window] = starts[window]
      local at = 2 + (window - 1) * ARGS_PER_WINDOW
      local emission = ARGV[at + 3] + 0
      local increment = emission * costs[window]
      if allowed and increment > 0 then
        -- Written as the 'g' path writes.
        local new_tat = starts[window] + increment
        local tat_text = string.format('%d', new_tat)
        if lengths[window] == #tat_text
            and (redis.call('PTTL', KEYS[window]) - TTL_EXTRA) * 1000 >= new_tat - now then
          redis.call('SETRANGE', KEYS[window], '0', tat_text)
        else
          redis.call('SET', KEYS[window], tat_text .. ':' .. ARGV[at + 3], 'PX',
            math.ceil((new_tat - now + emission * (ARGV[at + 2] + 0)) / 1000) + TTL_EXTRA)
        end
      end
    end
    return reply
  end
end

local PERIOD_MINUTE = 1
local PERIOD_HOUR = 2
local PERIOD_DAY = 3
local PERIOD_WEEK = 4
local PERIOD_MONTH = 5
local MINUTE = 60000000
local HOUR = 3600000000
local DAY = 86400000000
-- What the loop below keeps of each window for its commit.
local COMMIT_PER_WINDOW = 5

local window_count = ARGV[2] + 0
local force = window_count < 0
if force then window_count = -window_count end
local request_cost, unit_cost
-- A joint decision's cost per window; nil otherwise.
local window_costs
local separator = string.find(ARGV[1], ':', 1, true)
if string.find(ARGV[1], ',', 1, true) then
  window_costs = {}
  request_cost = 0
  for figure in string.gmatch(ARGV[1], '[^,]+') do
    window_costs[#window_costs + 1] = figure + 0
    request_cost = math.max(request_cost, figure + 0)
  end
  unit_cost = request_cost
elseif separator then
  request_cost = tonumber(string.sub(ARGV[1], 1, separator - 1))
  unit_cost = tonumber(string.sub(ARGV[1], separator + 1))
else
  request_cost = ARGV[1] + 0
  unit_cost = request_cost
end

local function number_text(x) return string.format('%d', x) end
local function ttl_ms(us) return math.max(math.ceil(us / 1000), 1) + TTL_EXTRA end

-- src/algorithm/gcra.rs: whether the cost fits, the tat found (rebased: expressed under
-- `emission`), the new tat, and the stored tat's length (as gcra_start's). `emission_text`
-- is the emission's ARGV text.
local function gcra(key, capacity, emission, emission_text)
  local start, rebased, tat_length = gcra_start(redis.call('GET', key), emission, emission_text)
  if rebased then
    -- Written back at once whatever the verdict (a commit below overwrites it), as the
    -- in-memory store converts its slot in place.
    redis.call('SET', key, number_text(start) .. ':' .. emission_text, 'PX', ttl_ms(start - now))
  end
  local new_tat = start + emission * cost
  return new_tat - emission * capacity <= now, start, new_tat, tat_length
end

-- The reply, built as the windows are decided: allowed, the decision's time, then each
-- window's state as found, from which the client derives every figure as the in-memory
-- store does (src/store/redis/reply.rs): a GCRA window's tat (rebased), a fixed or
-- calendar window's count in the current window, a sliding counter's current and previous
-- counts. A sliding log, whose state is its entries, replies its figures instead: verdict
-- (FITS, NEVER, else retry after us), remaining, reset after us, next unit after us (until
-- one unit more than remaining is available), as it stands, or as taken when every window
-- fits (src/algorithm/sliding_log.rs).
-- Tables are sized by their constructors for two windows, the common multi-window policy
-- (more grow): a table grown slot by slot is reallocated at every power of two, which cost
-- Redis more than the decision's arithmetic. The reply's nils end it where its windows do.
local reply = {0, now, nil, nil, nil, nil}
local replied = 2
-- Each sliding log's place in the reply and its taken figures, when there is one.
local taken_logs
local commit = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0}
local allowed = true
local key_at = 1
for window = 1, window_count do
  local at = 2 + (window - 1) * ARGS_PER_WINDOW
  local algorithm = ARGV[at + 1] + 0
  cost = request_cost
  if algorithm > UNIT_WINDOW then
    algorithm = algorithm - UNIT_WINDOW
    cost = unit_cost
  end
  if window_costs then cost = window_costs[window] end
  local max, span = ARGV[at + 2] + 0, ARGV[at + 3] + 0
  local key = KEYS[key_at]
  local fits, start
  local write1, write2, write3, expire = 0, 0, 0, true

  if algorithm == ALGORITHM_GCRA then
    -- write1: the new tat; expire: the stored tat's length.
    fits, start, write1, expire = gcra(key, max, span, ARGV[at + 3])
    replied = replied + 1
    reply[replied] = start
  elseif algorithm == ALGORITHM_FIXED or algorithm == ALGORITHM_CALENDAR then
    -- src/algorithm/fixed_window.rs
    local finish
    if algorithm == ALGORITHM_FIXED then
      start = now - math.fmod(now, span)
      finish = start + span
    else
      -- Month bounds: H. Hinnant's days-from-civil (and civil-from-days below).
      local function days_from_civil(year, month, day)
        if month <= 2 then year = year - 1 end
        local era = math.floor(year / 400)
        local year_of_era = year - era * 400
        local month_from_march = (month + 9) % 12
        local day_of_year = math.floor((153 * month_from_march + 2) / 5) + day - 1
        local day_of_era = year_of_era * 365 + math.floor(year_of_era / 4)
          - math.floor(year_of_era / 100) + day_of_year
        return era * 146097 + day_of_era - 719468
      end

      -- src/calendar.rs Period::bounds: the start and end (us) of the period holding `at`.
      local function calendar_bounds(period, at)
        if period == PERIOD_MINUTE then
          local start = at - math.fmod(at, MINUTE); return start, start + MINUTE
        end
        if period == PERIOD_HOUR then
          local start = at - math.fmod(at, HOUR); return start, start + HOUR
        end
        if period == PERIOD_DAY then
          local start = at - math.fmod(at, DAY); return start, start + DAY
        end
        local days = (at - math.fmod(at, DAY)) / DAY
        if period == PERIOD_WEEK then
          local start = (days - (days + 3) % 7) * DAY
          return start, start + 7 * DAY
        end
        -- period == PERIOD_MONTH
        local z = days + 719468
        local era = math.floor(z / 146097)
        local day_of_era = z - era * 146097
        local year_of_era = math.floor((day_of_era - math.floor(day_of_era / 1460)
          + math.floor(day_of_era / 36524) - math.floor(day_of_era / 146096)) / 365)
        local day_of_year = day_of_era
          - (365 * year_of_era + math.floor(year_of_era / 4) - math.floor(year_of_era / 100))
        local month_from_march = math.floor((5 * day_of_year + 2) / 153)
        local month = month_from_march - 9
        if month_from_march < 10 then month = month_from_march + 3 end
        local year = year_of_era + era * 400
        if month <= 2 then year = year + 1 end
        local next_year, next_month = year, month + 1
        if month == 12 then next_year, next_month = year + 1, 1 end
        return days_from_civil(year, month, 1) * DAY, days_from_civil(next_year, next_month, 1) * DAY
      end
      start, finish = calendar_bounds(ARGV[at + 4] + 0, now)
    end
    local state = redis.call('HMGET', key, 's', 'n')
    local count = 0
    if tonumber(state[1]) == start then
      count = tonumber(state[2])
      -- The write that started this window set the TTL to its end.
      expire = false
    end
    fits = count + cost <= max
    replied = replied + 1
    reply[replied] = count
    write1, write2, write3 = start, count + cost, finish

  elseif algorithm == ALGORITHM_SLIDING_COUNTER then
    -- src/algorithm/sliding_counter.rs
    start = now - math.fmod(now, span)
    local state = redis.call('HMGET', key, 's', 'c', 'p')
    local stored = tonumber(state[1])
    local current, previous = 0, 0
    if stored == start then
      current, previous = tonumber(state[2]), tonumber(state[3])
      -- The write that started this window set the TTL to the next one's end.
      expire = false
    elseif stored == start - span then
      previous = tonumber(state[2])
    end
    local weighted = 0
    if previous > 0 then weighted = math.ceil(previous * (span - (now - start)) / span) end
    fits = weighted + current + cost <= max
    reply[replied + 1], reply[replied + 2] = current, previous
    replied = replied + 2
    write1, write2, write3 = start, current + cost, previous

  else -- ALGORITHM_SLIDING_LOG
    -- src/algorithm/sliding_log.rs: entries are members "seq:cost" scored by time; the
    -- meta hash holds the sum of costs (n) and the member sequence (q).
    -- src/algorithm/sliding_log.rs: how long until the oldest entries of the log at `key`
    -- will have left, freeing `need` units; nil when they hold fewer. Every entry costs at
    -- least 1, so `need` entries are always enough: they are read `need` at a time, at most
    -- 64.
    local function sliding_log_freed_after(key, span, now, need)
      local freed, from = 0, 0
      local step = math.min(need, 64)
      while true do
        local chunk = redis.call('ZRANGE', key, from, from + step - 1, 'WITHSCORES')
        if #chunk == 0 then return nil end
        for i = 1, #chunk, 2 do
          freed = freed + tonumber(string.match(chunk[i], ':(%d+)$'))
          if freed >= need then return math.max(tonumber(chunk[i + 1]) + span - now, 1) end
        end
        from = from + step
      end
    end
    local meta = KEYS[key_at + 1]
    key_at = key_at + 1
    local sum = tonumber(redis.call('HGET', meta, 'n') or 0)
    local gone = redis.call('ZRANGEBYSCORE', key, '-inf', number_text(now - span))
    if #gone > 0 then
      for i = 1, #gone do sum = sum - tonumber(string.match(gone[i], ':(%d+)$')) end
      redis.call('ZREMRANGEBYSCORE', key, '-inf', number_text(now - span))
      redis.call('HSET', meta, 'n', number_text(sum))
    end
    local verdict
    if cost > max then
      verdict = NEVER
    elseif sum + cost <= max then
      verdict = FITS
    else
      -- When enough of the oldest entries will have left for the cost to fit.
      verdict = sliding_log_freed_after(key, span, now, sum + cost - max) or span
    end
    fits = verdict == FITS
    local held_remaining, held_reset, held_next, taken_remaining, taken_reset, taken_next
    local newest = redis.call('ZRANGE', key, -1, -1, 'WITHSCORES')
    held_remaining = math.max(max - sum, 0)
    held_reset = 0
    if #newest > 0 then held_reset = math.max(tonumber(newest[2]) + span - now, 0) end
    taken_remaining, taken_reset = held_remaining, held_reset
    if cost > 0 then taken_remaining, taken_reset = math.max(max - sum - cost, 0), span end
    -- One unit more than remaining is free once the oldest entries holding it have left;
    -- when taken, the request being admitted is the newest entry, at now. The taken figure
    -- is only ever replied when every window fits, and then needs what the held one does
    -- (one unit, from the oldest entry): read from the log once.
    held_next, taken_next = 0, 0
    local held_need = sum + held_remaining + 1 - max
    if held_remaining < max then
      held_next = sliding_log_freed_after(key, span, now, held_need) or span
    end
    if cost == 0 then
      taken_next = held_next
    elseif taken_remaining < max and verdict == FITS then
      local taken_need = sum + cost + taken_remaining + 1 - max
      if taken_need == held_need and held_remaining < max then
        taken_next = held_next
      else
        taken_next = sliding_log_freed_after(key, span, now, taken_need) or span
      end
    end
    reply[replied + 1], reply[replied + 2], reply[replied + 3], reply[replied + 4] =
      verdict, held_remaining, held_reset, held_next
    taken_logs = taken_logs or {}
    taken_logs[#taken_logs + 1] = {replied, taken_remaining, taken_reset, taken_next}
    replied = replied + REPLY_PER_LOG
    write1 = sum
  end

  key_at = key_at + 1
  local out = COMMIT_PER_WINDOW * (window - 1)
  commit[out + 1], commit[out + 2], commit[out + 3], commit[out + 4] = write1, write2, write3, expire
  commit[out + 5] = cost
  if not fits then allowed = false end
end

if (allowed or force) and (request_cost > 0 or unit_cost > 0) then
  key_at = 1
  for window = 1, window_count do
    local at = 2 + (window - 1) * ARGS_PER_WINDOW
    local algorithm, max, span = ARGV[at + 1] + 0, ARGV[at + 2] + 0, ARGV[at + 3] + 0
    if algorithm > UNIT_WINDOW then algorithm = algorithm - UNIT_WINDOW end
    local key = KEYS[key_at]
    local out = COMMIT_PER_WINDOW * (window - 1)
    local write1, write2, write3, expire = commit[out + 1], commit[out + 2], commit[out + 3], commit[out + 4]
    cost = commit[out + 5]
    if cost == 0 then
      -- Nothing charged here (the other unit's windows are): nothing to write.
      if algorithm == ALGORITHM_SLIDING_LOG then key_at = key_at + 1 end
    elseif algorithm == ALGORITHM_GCRA then
      -- As the one-window path writes: in place while the TTL outlasts the backlog.
      local tat_text = number_text(write1)
      if expire == #tat_text and (redis.call('PTTL', key) - TTL_EXTRA) * 1000 >= write1 - now then
        redis.call('SETRANGE', key, '0', tat_text)
      else
        redis.call('SET', key, tat_text .. ':' .. ARGV[at + 3], 'PX',
          ttl_ms(write1 - now + max * span))
      end
    elseif algorithm == ALGORITHM_FIXED or algorithm == ALGORITHM_CALENDAR then
      -- write1: the window's start, write2: its count, write3: its end.
      if expire then
        redis.call('HSET', key, 's', number_text(write1), 'n', number_text(write2))
        redis.call('PEXPIRE', key, ttl_ms(write3 - now))
      else
        redis.call('HSET', key, 'n', number_text(write2))
      end
    elseif algorithm == ALGORITHM_SLIDING_COUNTER then
      -- write1: the window's start, write2: its count, write3: the previous one's.
      if expire then
        redis.call('HSET', key, 's', number_text(write1), 'c', number_text(write2), 'p',
          number_text(write3))
        redis.call('PEXPIRE', key, ttl_ms(write1 + 2 * span - now))
      else
        redis.call('HSET', key, 'c', number_text(write2))
      end
    else -- ALGORITHM_SLIDING_LOG
      -- write1: the sum of costs before this one.
      local meta = KEYS[key_at + 1]
      key_at = key_at + 1
      local sequence = redis.call('HINCRBY', meta, 'q', 1)
      redis.call('ZADD', key, number_text(now), number_text(sequence) .. ':' .. number_text(cost))
      redis.call('HSET', meta, 'n', number_text(write1 + cost))
      redis.call('PEXPIRE', key, ttl_ms(span))
      redis.call('PEXPIRE', meta, ttl_ms(span))
    end
    key_at = key_at + 1
  end
end

-- An admitted decision's sliding logs report what it took, a denied one's what it found.
if allowed then
  reply[1] = 1
  if taken_logs then
    for _, log in ipairs(taken_logs) do
      reply[log[1] + 2], reply[log[1] + 3], reply[log[1] + 4] = log[2], log[3], log[4]
    end
  end
end
return reply
