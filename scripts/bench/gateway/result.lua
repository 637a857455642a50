-- wrk script for requests that never change (headers given with -H): no request() or
-- response() function, so wrk sends its one pre-built request and runs no Lua per
-- request or response. done() prints the summary line run.sh reads; cookie.lua loads it too.

function done(summary, latency, requests)
  local errs = summary.errors.status + summary.errors.connect + summary.errors.read
    + summary.errors.write + summary.errors.timeout
  io.write(string.format("RESULT requests=%d rps=%.1f p50_us=%d p99_us=%d errors=%d\n",
    summary.requests, summary.requests / (summary.duration / 1e6),
    latency:percentile(50), latency:percentile(99), errs))
end
