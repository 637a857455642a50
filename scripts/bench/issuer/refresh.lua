-- wrk script: refresh-token rotations. Each connection owns one session and always
-- presents the refresh token from its own previous response, so every request is a
-- real rotation (not a replay inside the reuse interval).
-- Tokens come from $TOKENS_FILE (one refresh token per line, one per connection).

local threads = {}
local counter = 0

function setup(thread)
  counter = counter + 1
  thread:set("id", counter)
  table.insert(threads, thread)
end

function init(args)
  -- Queue of this thread's tokens: request() takes one, response() returns the new one.
  queue = {}
  local i = 0
  local n = tonumber(os.getenv("THREADS") or "1")
  for line in io.lines(os.getenv("TOKENS_FILE")) do
    if (i % n) + 1 == id then table.insert(queue, line) end
    i = i + 1
  end
end

function request()
  local token = table.remove(queue, 1)
  if token == nil then
    io.stderr:write("refresh.lua: more connections than tokens\n")
    os.exit(2)
  end
  return wrk.format("POST", "/api/refresh-token", {["Content-Type"] = "application/json"},
    '{"refresh_token":"' .. token .. '"}')
end

function response(status, headers, body)
  local token = body:match('"refreshToken":"([^"]+)"')
  if status ~= 200 or not token then
    -- A rotation failed: the session is gone, so the run is invalid. Say so loudly.
    io.stderr:write("refresh.lua: HTTP " .. status .. ": " .. body .. "\n")
    os.exit(1)
  end
  table.insert(queue, token)
end

function done(summary, latency, requests)
  local bad = summary.errors.status + summary.errors.connect + summary.errors.read
    + summary.errors.write + summary.errors.timeout
  io.write(string.format("rotations/s: %.0f  requests: %d  non-2xx/socket errors: %d  p50: %.2f ms  p99: %.2f ms\n",
    summary.requests / (summary.duration / 1e6), summary.requests, bad,
    latency:percentile(50) / 1000, latency:percentile(99) / 1000))
end
