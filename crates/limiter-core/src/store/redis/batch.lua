-- Runs many entries in one call, in order: decisions, each cost exactly as decide.lua
-- decides it alone (an entry's costs in arrival order, so that a burst on one key costs
-- one entry and admits what one-by-one calls would, in that order), and settlements of
-- leases and reservations: a refund as refund.lua makes it, then any excess charged by
-- decide.lua in its forced form, both at most once per settlement marker. The two scripts' texts are the bodies of `decide` and
-- `refund` below, reading the batch's time instead of their own (one TIME call, and one
-- instant per batch) and this call's KEYS and ARGV from an offset (`KEYS[i]` reads
-- `KEYS[key_base + i]`): no table is built per entry.
--
-- ARGV[1] number of entries; then per entry: its key count, its argument count, its cost
--   count, the costs, the arguments. A decision's arguments are what decide.lua takes
--   after the cost. An entry of no cost is a settlement: whether its last key is a
--   marker ('1' or '0'), the marker's TTL (ms), the number of refund arguments, the
--   refund (refund.lua's ARGV), the excess to charge ('0': none) and, unless none,
--   decide.lua's arguments after the cost in the forced form.
-- KEYS: every entry's keys, in entry order (a settlement's marker after its windows').
-- Reply: the batch's time (us), then decide.lua's reply for every cost, in order (one
--   integer for a policy of one GCRA window, its table's integers for any other).
local batch_time = redis.call('TIME')
local batch_now = batch_time[1] * 1000000 + batch_time[2]
--[[BATCH_CLOCK]]

local function decide(key_base, arg_base)
--[[DECIDE]]
end

local function refund(key_base, arg_base)
--[[REFUND]]
end

-- An entry's counts, read by arithmetic as in decide.lua; the most common, '1', compared
-- instead (an interned string compares by address, where parsing a number calls strtod).
local function count(text)
  if text == '1' then return 1 end
  return text + 0
end

local reply = {batch_now}
local replied = 1
-- Appends decide's reply for one cost: an integer (one GCRA window) or a table.
local function append(decided)
  if type(decided) == 'number' then
    replied = replied + 1
    reply[replied] = decided
  else
    for i = 1, #decided do reply[replied + i] = decided[i] end
    replied = replied + #decided
  end
end
local key_at, arg_at = 1, 2
for _ = 1, ARGV[1] + 0 do
  local key_count = count(ARGV[arg_at])
  local arg_count = ARGV[arg_at + 1] + 0
  local cost_count = count(ARGV[arg_at + 2])
  local costs_at = arg_at + 3
  if cost_count == 0 then
    -- A settlement runs once per marker: a retried one finds its marker set.
    local fresh = ARGV[costs_at] == '0'
      or redis.call('SET', KEYS[key_at + key_count - 1], '1', 'NX', 'PX', ARGV[costs_at + 1])
    if fresh then
      local refund_args = ARGV[costs_at + 2] + 0
      refund(key_at - 1, costs_at + 2)
      local excess_at = costs_at + 3 + refund_args
      if ARGV[excess_at] ~= '0' then decide(key_at - 1, excess_at - 1) end
    end
  elseif cost_count == 1 then
    append(decide(key_at - 1, costs_at - 1))
  else
    -- decide.lua reads its cost just before its arguments: each cost in turn goes into
    -- the last cost's slot.
    local costs = {}
    for cost = 1, cost_count do costs[cost] = ARGV[costs_at + cost - 1] end
    local slot = costs_at + cost_count - 1
    for cost = 1, cost_count do
      ARGV[slot] = costs[cost]
      append(decide(key_at - 1, slot - 1))
    end
  end
  key_at = key_at + key_count
  arg_at = costs_at + cost_count + arg_count
end
return reply
