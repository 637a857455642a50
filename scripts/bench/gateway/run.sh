#!/usr/bin/env bash
# Gateway load benchmark on loopback, interleaved rounds:
#   direct   - the upstream (an nginx `return 200`) directly
#   nginx    - Debian's nginx as a plain reverse proxy in front of the same upstream
#   gateway  - sallyport gateway with a valid session
#   public   - sallyport gateway on a public path without a session: the proxy machinery
#              alone (axum/hyper/tokio, header rewriting), no unseal - the floor the
#              session work sits on
#   renew    - sallyport gateway with 32 sessions (one per connection and wrk thread) whose
#              1 s access tokens need renewal every second; wrk adopts each renewed cookie
# Reports req/s, p50/p99 at 32 connections, server CPU per request (utime+stime from
# /proc of the server processes only, also split into user and kernel time) and the
# gateway's peak RSS; medians over rounds. Like for like: nginx runs one worker process,
# the gateway one event loop (GATEWAY_THREADS=1, a current-thread tokio runtime).
#
#   scripts/bench/gateway/run.sh            # ROUNDS=5 DURATION=10 CONNECTIONS=32
#   PERF=1 ...                              # also a perf profile of the "gateway" target
#   SALLYPORT_BIN=/path/to/sallyport ...    # benchmark that binary instead of building
set -euo pipefail

ROUNDS=${ROUNDS:-5}
DURATION=${DURATION:-10}
CONNECTIONS=${CONNECTIONS:-32}
THREADS=${THREADS:-2}
HERE=$(cd "$(dirname "$0")" && pwd)
ROOT=$(cd "$HERE/../../.." && pwd)
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-/var/cache/sallyport/target}
WORK=$(mktemp -d /tmp/sallyport-gw-bench.XXXXXX)
P_UP=18181 P_NGX=18182 P_GW=18183 P_ISS=18184 P_GW2=18185 P_ISS2=18186 P_GW3=18187
RENEW_THREADS=${RENEW_THREADS:-$CONNECTIONS}
PIDS=()
cleanup() {
  for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
  [ -f "$WORK/up/nginx.pid" ] && kill "$(cat "$WORK/up/nginx.pid")" 2>/dev/null || true
  [ -f "$WORK/ngx/nginx.pid" ] && kill "$(cat "$WORK/ngx/nginx.pid")" 2>/dev/null || true
  wait 2>/dev/null || true
}
trap cleanup EXIT

need() { command -v "$1" >/dev/null 2>&1; }
if ! need nginx && [ ! -x /usr/sbin/nginx ]; then
  echo "installing nginx (Debian) ..."; apt-get install -y nginx-light >/dev/null 2>&1 || apt-get install -y nginx >/dev/null
fi
if ! need wrk; then apt-get install -y wrk >/dev/null; fi
NGINX=$(command -v nginx || echo /usr/sbin/nginx)

if [ -n "${SALLYPORT_BIN:-}" ]; then
  BIN=$SALLYPORT_BIN                     # e.g. a saved copy of an older build, for before/after
else
  echo "building sallyport (release) ..."
  (cd "$ROOT" && cargo build --release -q -p sallyport)
  BIN="$CARGO_TARGET_DIR/release/sallyport"
fi

nginx_conf() { # dir port body
  mkdir -p "$1"
  cat >"$1/nginx.conf" <<NGX
worker_processes 1;
pid $1/nginx.pid;
error_log $1/error.log warn;
daemon on;
events { worker_connections 4096; }
http {
  access_log off;
  client_body_temp_path $1; proxy_temp_path $1; fastcgi_temp_path $1; uwsgi_temp_path $1; scgi_temp_path $1;
  upstream app { server 127.0.0.1:$P_UP; keepalive 64; }
  server { listen 127.0.0.1:$2; $3 }
}
NGX
  "$NGINX" -c "$1/nginx.conf" -p "$1"
}
nginx_conf "$WORK/up" $P_UP 'location / { default_type application/json; return 200 "{\"ok\":true}"; }'
nginx_conf "$WORK/ngx" $P_NGX 'location / { proxy_pass http://app; proxy_http_version 1.1; proxy_set_header Connection ""; proxy_set_header Host $host; proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for; }'

# Two issuers (own SQLite files): 15 min access tokens behind the "gateway" target,
# 1 s access tokens behind the "renew" target, so its sessions need renewal every second.
start_issuer() { # port ttl dir
  mkdir -p "$3"
  export SALLYPORT_ISSUER_DATABASE_URL="sqlite://$3/issuer.db"
  export SALLYPORT_ISSUER_LISTEN="127.0.0.1:$1"
  export SALLYPORT_ISSUER_ISSUER="http://127.0.0.1:$1"
  export SALLYPORT_ISSUER_ACCESS_TOKEN_TTL_SECS=$2
  export SALLYPORT_ISSUER_RATE_LIMIT__ACCOUNT_BURST=100000
  export SALLYPORT_ISSUER_RATE_LIMIT__ADDRESS_BURST=100000
  echo "bench-password-0123456789" | "$BIN" user add bench --password-stdin >/dev/null
  "$BIN" issuer >"$3/issuer.log" 2>&1 & PIDS+=($!)
}
start_issuer $P_ISS 900 "$WORK/iss1"
start_issuer $P_ISS2 1 "$WORK/iss2"

start_gateway() { # port issuer-port [public-paths]
  SALLYPORT_GATEWAY_PUBLIC_PATHS=${3:-[]} \
  SESSION_SECRET="bench-secret-bench-secret-bench-secret-0" \
  SALLYPORT_GATEWAY_LISTEN="127.0.0.1:$1" \
  SALLYPORT_GATEWAY_UPSTREAM="http://127.0.0.1:$P_UP" \
  SALLYPORT_GATEWAY_SESSION__SECURE=false \
  SALLYPORT_GATEWAY_BACKEND__LOGIN_URL="http://127.0.0.1:$2/api/login" \
  SALLYPORT_GATEWAY_BACKEND__REFRESH_URL="http://127.0.0.1:$2/api/refresh-token" \
  SALLYPORT_GATEWAY_THREADS=${GATEWAY_THREADS:-1} \
  SALLYPORT_GATEWAY_ADMIN__ENABLED=false \
  RUST_LOG=warn "$BIN" gateway >"$WORK/gateway-$1.log" 2>&1 &
  PIDS+=($!)
  LAST_PID=$!
}
start_gateway $P_GW $P_ISS; GW_PID=$LAST_PID
start_gateway $P_GW2 $P_ISS2; GW2_PID=$LAST_PID
start_gateway $P_GW3 $P_ISS '["/pub/**"]'; GW3_PID=$LAST_PID

for p in $P_ISS $P_ISS2 $P_GW $P_GW2 $P_GW3 $P_UP $P_NGX; do
  for _ in $(seq 100); do curl -s -o /dev/null "http://127.0.0.1:$p/" && break; sleep 0.1; done
done

login() { # port -> Cookie value
  curl -s -D - -o /dev/null -H 'content-type: application/json' \
    -d '{"username":"bench","password":"bench-password-0123456789"}' \
    "http://127.0.0.1:$1/auth/login" | tr -d '\r' | awk -F': ' 'tolower($1)=="set-cookie"{split($2,a,";"); print a[1]; exit}'
}
login $P_GW >"$WORK/cookies-valid"
# Fresh sessions for each "renew" run: a wrk run starts from the cookies in the file, and
# those of the previous run were rotated long ago (replaying them would be reuse).
renew_cookies() { : >"$WORK/cookies-renew"; for _ in $(seq "$RENEW_THREADS"); do login $P_GW2 >>"$WORK/cookies-renew"; done; }
[ -s "$WORK/cookies-valid" ] || { echo "login failed"; cat "$WORK"/gateway-*.log; exit 1; }

cpu_ticks() { # pids... -> "utime stime" in clock ticks, summed over the processes
  local u=0 s=0 f; for p in "$@"; do
    f=$(cut -d' ' -f14,15 "/proc/$p/stat"); u=$((u + ${f% *})); s=$((s + ${f#* })); done
  echo "$u $s"
}
nginx_pids() { local m; m=$(cat "$1/nginx.pid"); echo "$m $(pgrep -P "$m" | tr '\n' ' ')"; }
HZ=$(getconf CLK_TCK)

run_one() { # name threads port cookies-file path pids...
  local name=$1 threads=$2 port=$3 cookies=$4 path=$5; shift 5
  local before after out
  if [ -n "${PERF:-}" ] && [ "$name" = gateway ]; then
    perf record -F 999 -g -p "$1" -o "$WORK/perf.data" -- sleep "$DURATION" >/dev/null 2>&1 &
  fi
  before=$(cpu_ticks "$@")
  out=$(COOKIES_FILE=$cookies BENCH_PATH=$path wrk -t"$threads" -c"$CONNECTIONS" -d"${DURATION}s" --latency \
        -s "$HERE/cookie.lua" "http://127.0.0.1:$port$path" | grep '^RESULT')
  after=$(cpu_ticks "$@")
  local reqs; reqs=$(sed -E 's/.*requests=([0-9]+).*/\1/' <<<"$out")
  local cpu; cpu=$(python3 -c "
b=[int(x) for x in '$before'.split()]; a=[int(x) for x in '$after'.split()]; n=max($reqs,1)
u=(a[0]-b[0])/$HZ*1e6/n; s=(a[1]-b[1])/$HZ*1e6/n
print(f'cpu_us_per_req={u+s:.2f} user_us={u:.2f} sys_us={s:.2f}')")
  echo "$name $out $cpu" | tee -a "$WORK/results"
}

echo "x" >"$WORK/cookies-none"
for r in $(seq "$ROUNDS"); do
  echo "--- round $r"
  run_one direct "$THREADS" $P_UP "$WORK/cookies-none" / $(nginx_pids "$WORK/up")
  run_one nginx "$THREADS" $P_NGX "$WORK/cookies-none" / $(nginx_pids "$WORK/ngx")
  run_one gateway "$THREADS" $P_GW "$WORK/cookies-valid" / "$GW_PID"
  run_one public "$THREADS" $P_GW3 "$WORK/cookies-none" /pub/x "$GW3_PID"
  renew_cookies
  run_one renew "$RENEW_THREADS" $P_GW2 "$WORK/cookies-renew" / "$GW2_PID"
done

if [ -n "${PERF:-}" ]; then sleep 1; perf report -i "$WORK/perf.data" --stdio --no-children --percent-limit 1.5 2>/dev/null | grep -E '^ +[0-9]' | head -40; fi
RSS_KB=$(awk '/VmHWM/{print $2}' "/proc/$GW_PID/status")
RENEWALS=$(curl -s "http://127.0.0.1:$P_GW2/metrics" | awk '/^sallyport_gateway_renewals_total\{outcome="ok"\}/{print $2}')
python3 - "$WORK/results" "$RSS_KB" "${RENEWALS:-0}" <<'PY'
import re, statistics, sys
rows = {}
for line in open(sys.argv[1]):
    name = line.split()[0]
    kv = dict(re.findall(r"(\w+)=([\d.]+)", line))
    rows.setdefault(name, []).append({k: float(v) for k, v in kv.items()})
med = {n: {k: statistics.median(r[k] for r in rs) for k in rs[0]} for n, rs in rows.items()}
base = med["nginx"]
print("\n| target | req/s | p50 µs | p99 µs | CPU µs/req (user+sys) | req/s vs nginx | CPU vs nginx | errors |")
print("| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |")
for n in ["direct", "nginx", "gateway", "public", "renew"]:
    m = med[n]
    print(f"| {n} | {m['rps']:.0f} | {m['p50_us']:.0f} | {m['p99_us']:.0f} "
          f"| {m['cpu_us_per_req']:.1f} ({m['user_us']:.1f}+{m['sys_us']:.1f}) "
          f"| {m['rps']/base['rps']:.2f}x | {m['cpu_us_per_req']/base['cpu_us_per_req']:.2f}x | {m['errors']:.0f} |")
# Per-round ratios: each round's targets ran back to back, so the ratio of a round is
# steadier than the ratio of medians when the machine's load drifts between rounds.
ratios = [g["cpu_us_per_req"] / x["cpu_us_per_req"] for g, x in zip(rows["gateway"], rows["nginx"])]
rps = [g["rps"] / x["rps"] for g, x in zip(rows["gateway"], rows["nginx"])]
print(f"\ngateway/nginx per round: CPU {', '.join(f'{r:.2f}' for r in ratios)} "
      f"(median {statistics.median(ratios):.2f}); req/s {', '.join(f'{r:.2f}' for r in rps)} "
      f"(median {statistics.median(rps):.2f})")
print(f"\ngateway peak RSS: {int(sys.argv[2])/1024:.1f} MB; renewals during the renew runs: {sys.argv[3]}")
PY
