-- Runs many entries in one call, in order: decisions, each cost exactly as decide.lua
-- decides it alone (an entry's costs in arrival order, so that a burst on one key costs
-- one entry and admits what one-by-one calls would, in that order), and lease refunds,
-- as refund.lua makes them. The two scripts' texts are the bodies of `decide` and
-- `refund` below (KEYS and ARGV are their parameters), reading the batch's time instead
-- of their own: one TIME call, and one instant per batch.
--
-- ARGV[1] number of entries; then per entry: its key count, its argument count, its cost
--   count, the costs, the arguments. A decision's arguments are what decide.lua takes
--   after the cost; an entry of no cost is a refund, its arguments refund.lua's ARGV.
-- KEYS: every entry's keys, in entry order.
-- Reply: the batch's time (us), then decide.lua's reply for every cost, in order.
local batch_time = redis.call('TIME')
local batch_now = tonumber(batch_time[1]) * 1000000 + tonumber(batch_time[2])
--[[BATCH_CLOCK]]

local function decide(KEYS, ARGV)
--[[DECIDE]]
end

local function refund(KEYS, ARGV)
--[[REFUND]]
end

local reply = {batch_now}
local key_at, arg_at = 1, 2
for _ = 1, tonumber(ARGV[1]) do
  local key_count = tonumber(ARGV[arg_at])
  local arg_count = tonumber(ARGV[arg_at + 1])
  local cost_count = tonumber(ARGV[arg_at + 2])
  local costs_at = arg_at + 3
  local keys, args = {}, {}
  for i = 1, key_count do keys[i] = KEYS[key_at + i - 1] end
  if cost_count == 0 then
    for i = 1, arg_count do args[i] = ARGV[costs_at + i - 1] end
    refund(keys, args)
  else
    for i = 1, arg_count do args[i + 1] = ARGV[costs_at + cost_count + i - 1] end
    for c = 0, cost_count - 1 do
      args[1] = ARGV[costs_at + c]
      local answer = decide(keys, args)
      for i = 1, #answer do reply[#reply + 1] = answer[i] end
    end
  end
  key_at = key_at + key_count
  arg_at = costs_at + cost_count + arg_count
end
return reply
