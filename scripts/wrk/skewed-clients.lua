-- wrk script: every request comes from a client address drawn like the skewed mix of
-- scripts/bench-leases.sh (80% from 1,000 hot clients, 20% from a tail of 100,000), sent
-- as X-Forwarded-For by a trusted proxy (the demo trusts 127.0.0.1). The addresses are
-- header text only, from 198.18.0.0/15, the range set aside for benchmarks (RFC 2544).
local function address(n)
  return string.format("198.%d.%d.%d", 18 + math.floor(n / 65536), math.floor(n / 256) % 256, n % 256)
end

request = function()
  local n
  if math.random() < 0.8 then
    n = math.random(0, 999)
  else
    n = 1000 + math.random(0, 99999)
  end
  return wrk.format(nil, nil, { ["X-Forwarded-For"] = address(n) })
end
