-- wrk script: every request comes from a client address drawn like the skewed mix of
-- scripts/bench-leases.sh (80% from 1,000 hot clients, 20% from a tail of 100,000), sent
-- as X-Forwarded-For by a trusted proxy (the demo trusts 127.0.0.1). The addresses are
-- header text only, from 198.18.0.0/15, the range set aside for benchmarks (RFC 2544).
-- HOT and TAIL (environment) shrink both sets by the same factor, so that a server slowed
-- down (under valgrind) sees each client at the rate it would see at full speed: leases
-- and caches live in wall-clock time, so a client's requests per second decide whether
-- they pay.
local hot = tonumber(os.getenv("HOT") or "1000")
local tail = tonumber(os.getenv("TAIL") or "100000")

local function address(n)
  return string.format("198.%d.%d.%d", 18 + math.floor(n / 65536), math.floor(n / 256) % 256, n % 256)
end

request = function()
  local n
  if math.random() < 0.8 then
    n = math.random(0, hot - 1)
  else
    n = hot + math.random(0, tail - 1)
  end
  return wrk.format(nil, nil, { ["X-Forwarded-For"] = address(n) })
end
