-- wrk script: successful logins (argon2id-bound by design).
wrk.method = "POST"
wrk.path = "/api/login"
wrk.headers["Content-Type"] = "application/json"
wrk.body = '{"username":"bench","password":"bench-password-123"}'

function response(status, headers, body)
  if status ~= 200 then
    io.stderr:write("login.lua: HTTP " .. status .. ": " .. body .. "\n")
    os.exit(1)
  end
end

function done(summary, latency, requests)
  io.write(string.format("logins/s: %.1f  requests: %d  p50: %.1f ms  p99: %.1f ms\n",
    summary.requests / (summary.duration / 1e6), summary.requests,
    latency:percentile(50) / 1000, latency:percentile(99) / 1000))
end
