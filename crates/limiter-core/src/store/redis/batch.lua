-- Decides many (policy, key, costs) entries in one call: each cost exactly as decide.lua
-- decides it alone, entries in order and each entry's costs in arrival order, so that a
-- burst on one key costs one entry and admits what one-by-one calls would, in that order.
-- decide.lua's text is the body of `decide` below (KEYS and ARGV are its parameters),
-- reading the batch's time instead of its own: one TIME call, and one instant per batch.
--
-- ARGV[1] number of entries; then per entry: its key count, its argument count (what
--   decide.lua takes after the cost), its cost count, the costs, the arguments.
-- KEYS: every entry's keys, in entry order.
-- Reply: the batch's time (us), then decide.lua's reply for every cost, in order.
local batch_time = redis.call('TIME')
local batch_now = tonumber(batch_time[1]) * 1000000 + tonumber(batch_time[2])
--[[BATCH_CLOCK]]

local function decide(KEYS, ARGV)
--[[DECIDE]]
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
  for i = 1, arg_count do args[i + 1] = ARGV[costs_at + cost_count + i - 1] end
  for c = 0, cost_count - 1 do
    args[1] = ARGV[costs_at + c]
    local answer = decide(keys, args)
    for i = 1, #answer do reply[#reply + 1] = answer[i] end
  end
  key_at = key_at + key_count
  arg_at = costs_at + cost_count + arg_count
end
return reply
