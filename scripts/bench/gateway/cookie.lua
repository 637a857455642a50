-- wrk script: GET the path with a session cookie; each wrk thread owns one session
-- (from $COOKIES_FILE, one "Cookie" header value per line) and adopts every renewed
-- cookie the gateway sets, as a browser would.

local counter = 0
function setup(thread)
  counter = counter + 1
  thread:set("id", counter)
end

function init(args)
  local lines = {}
  for line in io.lines(os.getenv("COOKIES_FILE")) do table.insert(lines, line) end
  cookie = lines[((id - 1) % #lines) + 1]
  path = os.getenv("BENCH_PATH") or "/"
  bad = 0
end

function request()
  return wrk.format("GET", path, {["Cookie"] = cookie, ["Accept"] = "application/json"})
end

function response(status, headers, body)
  if status ~= 200 then bad = bad + 1 end
  local set = headers["Set-Cookie"] or headers["set-cookie"]
  if set then
    local pair = set:match("^([^;]+)")
    if pair and not set:find("Max%-Age=0") then cookie = pair end
  end
end

-- done(): the summary line run.sh reads, shared with result.lua (next to this file).
dofile((debug.getinfo(1, "S").source:match("^@(.*/)") or "") .. "result.lua")
