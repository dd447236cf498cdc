-- wrk script: HTTP keep-alive spends of 0.01 on the bench cards (6100000000000000 + i),
-- each with a unique Idempotency-Key. Cards come from:
--   cargo run --release -p bench --example tcp_load -- --setup --cards 1000
-- Run: wrk -t2 -c64 -d10s -s bench/wrk_spend.lua http://127.0.0.1:8080 -- 1000
local counter = 0
function setup(thread)
  thread:set("tid", counter)
  counter = counter + 1
end
function init(args)
  cards = tonumber(args[1]) or 1000
  n = 0
  run = tostring(os.time())
end
function request()
  n = n + 1
  local card = 6100000000000000 + ((n * 7919 + tid) % cards)
  local headers = {}
  headers["Idempotency-Key"] = "w" .. run .. "-" .. tid .. "-" .. n
  headers["Content-Type"] = "application/json"
  return wrk.format("POST", string.format("/v1/cards/%d/spends", card), headers, '{"amount":"0.01","method":"qr"}')
end
function done(summary, latency, requests)
  io.write(string.format("p50 %.3f ms, p99 %.3f ms\n", latency:percentile(50) / 1000, latency:percentile(99) / 1000))
end
