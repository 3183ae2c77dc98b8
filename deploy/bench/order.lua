-- wrk script: POST /api/orders, one demo order per request, a customer per connection-thread
-- counter so orders spread over customers (each order is a new stream; the store and SKU are hot).
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
local n = 0
request = function()
  n = n + 1
  local body = string.format(
    '{"customer_id":"wrk-%d","store_id":"store-%d","items":[{"item_id":"latte","quantity":1},{"item_id":"croissant","quantity":1}]}',
    n % 1000, (n % 3) + 1)
  return wrk.format(nil, "/api/orders", nil, body)
end
local statuses = {}
response = function(status, headers, body)
  statuses[status] = (statuses[status] or 0) + 1
end
done = function(summary, latency, requests)
  io.write(string.format("p50 %.2f ms, p90 %.2f ms, p99 %.2f ms; non-2xx/3xx: %d\n",
    latency:percentile(50) / 1000, latency:percentile(90) / 1000, latency:percentile(99) / 1000,
    summary.errors.status))
end
