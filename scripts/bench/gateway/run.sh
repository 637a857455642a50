#!/usr/bin/env bash
# Gateway load benchmark on loopback, interleaved rounds:
#   direct   - the upstream (an nginx `return 200`) directly
#   nginx    - Debian's nginx as a plain reverse proxy in front of the same upstream, the
#              request without a cookie: the baseline of `public`
#   nginx-s  - the same nginx given the very request the gateway gets: the ≈ 1.2 KB session
#              cookie (which a plain proxy parses and passes upstream): the like-for-like
#              baseline of `gateway` and `renew`, whose requests carry that cookie
#   gateway  - sallyport gateway with a valid session
#   public   - sallyport gateway on a public path without a session: the proxy machinery
#              alone (axum/hyper/tokio, header rewriting), no unseal - the floor the
#              session work sits on
#   renew    - sallyport gateway with 32 sessions (one per connection and wrk thread) whose
#              1 s access tokens need renewal every second; wrk adopts each renewed cookie
# Each of nginx/nginx-s/gateway/public/renew runs twice: on one core (nginx with one
# worker process, the gateway with one event loop, `--threads 1`: a current-thread tokio
# runtime) and on both (suffix "2": nginx with 2 workers, the gateway with `--threads 2`).
# Reports req/s, p50/p99 at 32 connections, server CPU per request (utime+stime from
# /proc of the server processes only, also split into user and kernel time) and the
# gateways' peak RSS; medians over rounds, plus per-round ratios against the nginx of the
# same width and round (the machine is shared and noisy: compare ratios, not absolutes):
# `gateway`/`renew` against `nginx-s` (same request bytes) and, for continuity with older
# runs, against the cookie-less `nginx`; `public` against `nginx`.
#
#   scripts/bench/gateway/run.sh            # ROUNDS=5 DURATION=10 CONNECTIONS=32
#   ROUNDS=3 DURATION=5 ...                 # a quick run
#   PERF=1 ...                              # also a perf profile of the "gateway" target
#                                           # (perf slows it: don't use that run's rows)
#   SKIP_RENEW=1 ...                        # without the renew targets (their logins are slow)
#   SALLYPORT_BIN=/path/to/sallyport ...    # benchmark that binary instead of building
#   SALLYPORT_BIN_B=/other/sallyport ...    # A/B: also "gateway-B"/"public-B" (1 and 2
#                                           # threads) from that binary, in the same rounds
#   BENCH_KEEP=1 ...                        # keep the work dir (logs, databases, perf.data)
#   PIN=1 ...                               # the one-core targets only, the load
#                                           # generator on a core of its own: wrk on
#                                           # CPU 0 (one thread; renew keeps one per
#                                           # session), every server on CPU 1
#   LUA_EVERY_RESPONSE=1 ...                # every target through cookie.lua (Lua on each
#                                           # request and response), as runs before
#                                           # 2026-12-05 22:00 UTC measured
#
# Why the load generator runs no Lua per response except for `renew`: wrk shares the two
# cores with the servers, so its own work per response is part of every latency it
# measures. With cookie.lua's response() hook on every target, the gateway's p99 came out
# ≈ 1 ms above nginx's; with plain wrk it is at or below nginx's, and nginx's own p99
# moves by ±1 ms between the two modes (docs/benchmarks.md, "The tail is the load
# generator's"). Both sides of every comparison get the same load generator. Even so,
# a server that takes more CPU per request is preempted by wrk's threads more often, and
# that shows in its tail: PIN=1 gives wrk a core of its own (one-core targets only).
set -euo pipefail

ROUNDS=${ROUNDS:-5}
DURATION=${DURATION:-10}
CONNECTIONS=${CONNECTIONS:-32}
THREADS=${THREADS:-2}
HERE=$(cd "$(dirname "$0")" && pwd)
# shellcheck source=lib.sh
. "$HERE/lib.sh"
ROOT=$(cd "$HERE/../../.." && pwd)
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-/var/cache/sallyport/target}
WORK=$(mktemp -d /tmp/sallyport-gw-bench.XXXXXX)
P_UP=18181 P_NGX=18182 P_GW=18183 P_ISS=18184 P_GW2=18185 P_ISS2=18186 P_GW3=18187
P_NGX2=18188 P_GWT2=18189 P_RNT2=18190 P_PUBT2=18191 P_GWB=18192 P_PUBB=18193 P_GWB2=18194 P_PUBB2=18195 P_ADM=18196 P_ADM2=18197
RENEW_THREADS=${RENEW_THREADS:-$CONNECTIONS}
PIDS=()
cleanup() {
  for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
  [ -f "$WORK/up/nginx.pid" ] && kill "$(cat "$WORK/up/nginx.pid")" 2>/dev/null || true
  [ -f "$WORK/ngx/nginx.pid" ] && kill "$(cat "$WORK/ngx/nginx.pid")" 2>/dev/null || true
  [ -f "$WORK/ngx2/nginx.pid" ] && kill "$(cat "$WORK/ngx2/nginx.pid")" 2>/dev/null || true
  wait 2>/dev/null || true
  # Databases, logs, perf.data: kept only when asked for (BENCH_KEEP=1 prints where).
  if [ -n "${BENCH_KEEP:-}" ]; then echo "work dir kept: $WORK"; else rm -rf "$WORK"; fi
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

nginx_conf() { # dir port body [workers]
  mkdir -p "$1"
  cat >"$1/nginx.conf" <<NGX
worker_processes ${4:-1};
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
PROXY='location / { proxy_pass http://app; proxy_http_version 1.1; proxy_set_header Connection ""; proxy_set_header Host $host; proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for; }'
nginx_conf "$WORK/ngx" $P_NGX "$PROXY" 1
nginx_conf "$WORK/ngx2" $P_NGX2 "$PROXY" 2

# Two issuers (own SQLite files): 24 h access tokens behind the "gateway" target (its
# one cookie, sent unchanged by wrk, must stay valid however long the run takes), 1 s
# access tokens behind the "renew" target, so its sessions need renewal every second.
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
start_issuer $P_ISS 86400 "$WORK/iss1"
start_issuer $P_ISS2 1 "$WORK/iss2"

start_gateway() { # port issuer-port [public-paths] [threads] [binary] [admin-port]
  gateway_env "$1" "$P_UP" "$2" "${3:-[]}" "${4:-1}" "${6:-}"
  env "${GATEWAY_ENV[@]}" "${5:-$BIN}" gateway >"$WORK/gateway-$1.log" 2>&1 &
  PIDS+=($!)
  LAST_PID=$!
}
start_gateway $P_GW $P_ISS; GW_PID=$LAST_PID
start_gateway $P_GW2 $P_ISS2 '[]' 1 "$BIN" $P_ADM; GW2_PID=$LAST_PID
start_gateway $P_GW3 $P_ISS '["/pub/**"]'; GW3_PID=$LAST_PID
start_gateway $P_GWT2 $P_ISS '[]' 2; GWT2_PID=$LAST_PID
start_gateway $P_RNT2 $P_ISS2 '[]' 2 "$BIN" $P_ADM2; RNT2_PID=$LAST_PID
start_gateway $P_PUBT2 $P_ISS '["/pub/**"]' 2; PUBT2_PID=$LAST_PID
PORTS="$P_ISS $P_ISS2 $P_GW $P_GW2 $P_GW3 $P_GWT2 $P_RNT2 $P_PUBT2 $P_UP $P_NGX $P_NGX2"
if [ -n "${SALLYPORT_BIN_B:-}" ]; then
  start_gateway $P_GWB $P_ISS '[]' 1 "$SALLYPORT_BIN_B"; GWB_PID=$LAST_PID
  start_gateway $P_PUBB $P_ISS '["/pub/**"]' 1 "$SALLYPORT_BIN_B"; PUBB_PID=$LAST_PID
  start_gateway $P_GWB2 $P_ISS '[]' 2 "$SALLYPORT_BIN_B"; GWB2_PID=$LAST_PID
  start_gateway $P_PUBB2 $P_ISS '["/pub/**"]' 2 "$SALLYPORT_BIN_B"; PUBB2_PID=$LAST_PID
  PORTS="$PORTS $P_GWB $P_PUBB $P_GWB2 $P_PUBB2"
fi

for p in $PORTS; do
  for _ in $(seq 100); do curl -s -o /dev/null "http://127.0.0.1:$p/" && break; sleep 0.1; done
done

bench_login $P_GW >"$WORK/cookies-valid"
# Fresh sessions for each "renew" run: a wrk run starts from the cookies in the file, and
# those of the previous run were rotated long ago (replaying them would be reuse).
renew_cookies() { # gateway-port
  : >"$WORK/cookies-renew"; for _ in $(seq "$RENEW_THREADS"); do bench_login "$1" >>"$WORK/cookies-renew"; done; }
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
    perf record -F 999 -p "$1" -o "$WORK/perf.data" -- sleep "$DURATION" >/dev/null 2>&1 &
    PERF_PID=$!
  fi
  before=$(cpu_ticks "$@")
  # A session that changes (renew) needs wrk to adopt each new cookie: Lua on every
  # response (cookie.lua). Every other target sends one request that never changes, so
  # wrk runs no Lua per request (result.lua only prints the summary); see the header.
  local script=(-s "$HERE/result.lua" -H "Cookie: $(head -n1 "$cookies")" -H "Accept: application/json")
  if [ "$cookies" = "$WORK/cookies-renew" ] || [ -n "${LUA_EVERY_RESPONSE:-}" ]; then
    script=(-s "$HERE/cookie.lua")
  fi
  out=$(COOKIES_FILE=$cookies BENCH_PATH=$path "${WRK[@]}" -t"$threads" -c"$CONNECTIONS" -d"${DURATION}s" --latency \
        "${script[@]}" "http://127.0.0.1:$port$path" | grep '^RESULT')
  after=$(cpu_ticks "$@")
  if [ -n "${PERF_PID:-}" ]; then wait "$PERF_PID" || true; PERF_PID=; fi
  local reqs; reqs=$(sed -E 's/.*requests=([0-9]+).*/\1/' <<<"$out")
  local cpu; cpu=$(python3 -c "
b=[int(x) for x in '$before'.split()]; a=[int(x) for x in '$after'.split()]; n=max($reqs,1)
u=(a[0]-b[0])/$HZ*1e6/n; s=(a[1]-b[1])/$HZ*1e6/n
print(f'cpu_us_per_req={u+s:.2f} user_us={u:.2f} sys_us={s:.2f}')")
  echo "$name $out $cpu" | tee -a "$WORK/results"
}

WRK=(wrk)
if [ -n "${PIN:-}" ]; then
  # Every server process (nginx masters and workers, issuers, gateways) on CPU 1, wrk on
  # CPU 0: no load-generator thread competes with a server for its core. One wrk thread,
  # except for `renew`, whose cookie.lua keeps one session per thread.
  for p in "${PIDS[@]}" $(nginx_pids "$WORK/up") $(nginx_pids "$WORK/ngx") $(nginx_pids "$WORK/ngx2"); do
    taskset -apc 1 "$p" >/dev/null
  done
  WRK=(taskset -c 0 wrk); THREADS=1
fi

# `gateway<w>` and `public<w>` of one build in one round: w is the width and build suffix
# ("", "2", "-B", "2-B"), then the ports and pids of the two gateways.
run_gateways() { # w gateway-port gateway-pid public-port public-pid
  run_one "gateway$1" "$THREADS" "$2" "$WORK/cookies-valid" / "$3"
  run_one "public$1" "$THREADS" "$4" "$WORK/cookies-none" /pub/x "$5"
}
# Every target of one width (w: "" one core, "2" both) in one round: its nginx (work dir,
# port) without and with the session cookie, the gateways, and renew (port, pid).
run_width() { # w nginx-dir nginx-port gateway-port gateway-pid public-port public-pid renew-port renew-pid
  run_one "nginx$1" "$THREADS" "$3" "$WORK/cookies-none" / $(nginx_pids "$2")
  run_one "nginx$1-s" "$THREADS" "$3" "$WORK/cookies-valid" / $(nginx_pids "$2")
  run_gateways "$1" "$4" "$5" "$6" "$7"
  if [ -z "${SKIP_RENEW:-}" ]; then
    renew_cookies "$8"
    run_one "renew$1" "$RENEW_THREADS" "$8" "$WORK/cookies-renew" / "$9"
  fi
}

echo "x" >"$WORK/cookies-none"
for r in $(seq "$ROUNDS"); do
  echo "--- round $r"
  run_one direct "$THREADS" $P_UP "$WORK/cookies-none" / $(nginx_pids "$WORK/up")
  run_width "" "$WORK/ngx" $P_NGX $P_GW "$GW_PID" $P_GW3 "$GW3_PID" $P_GW2 "$GW2_PID"
  # The two-loop targets need both cores: not with PIN=1.
  if [ -z "${PIN:-}" ]; then
    run_width 2 "$WORK/ngx2" $P_NGX2 $P_GWT2 "$GWT2_PID" $P_PUBT2 "$PUBT2_PID" $P_RNT2 "$RNT2_PID"
  fi
  if [ -n "${SALLYPORT_BIN_B:-}" ]; then
    run_gateways -B $P_GWB "$GWB_PID" $P_PUBB "$PUBB_PID"
    if [ -z "${PIN:-}" ]; then run_gateways 2-B $P_GWB2 "$GWB2_PID" $P_PUBB2 "$PUBB2_PID"; fi
  fi
done

if [ -n "${PERF:-}" ]; then
  echo "perf profile of the last \"gateway\" run (self time, symbols >= 1.5 %):"
  perf report -i "$WORK/perf.data" --stdio --no-children --sort dso,sym --percent-limit 1.5 2>/dev/null | grep -E '^ +[0-9]' | head -40
fi
rss() { awk '/VmHWM/{printf "%.1f", $2/1024}' "/proc/$1/status"; }
RSS="gateway $(rss "$GW_PID") MB, gateway2 $(rss "$GWT2_PID") MB, renew $(rss "$GW2_PID") MB, renew2 $(rss "$RNT2_PID") MB"
RENEWALS=$(( $(curl -s "http://127.0.0.1:$P_ADM/metrics" "http://127.0.0.1:$P_ADM2/metrics" \
  | awk '/^sallyport_gateway_renewals_total\{outcome="ok"\}/{s+=$2} END{printf "%d", s}') ))
echo "# $(date -u '+%Y-%m-%d %H:%M UTC'); $(nproc) CPUs ($(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs)); load average $(cut -d' ' -f1-3 /proc/loadavg); ROUNDS=$ROUNDS DURATION=$DURATION CONNECTIONS=$CONNECTIONS"
python3 - "$WORK/results" "$RSS" "$RENEWALS" <<'PY'
import re, statistics, sys
rows = {}
for line in open(sys.argv[1]):
    name = line.split()[0]
    kv = dict(re.findall(r"(\w+)=([\d.]+)", line))
    rows.setdefault(name, []).append({k: float(v) for k, v in kv.items()})
med = {n: {k: statistics.median(r[k] for r in rs) for k in rs[0]} for n, rs in rows.items()}
# Each target is compared with the nginx proxy of the same width (1 worker / 2 workers)
# given the same request: with the session cookie (`nginx-s`) for the session targets,
# without a cookie for the public path. `bare_of` is the cookie-less nginx, the baseline
# earlier runs used for every target (kept for comparison with them).
def width(n):
    return "2" if n.split("-")[0].endswith("2") else ""
def bare_of(n):
    return "nginx" + width(n)
def base_of(n):
    session = n.split("-")[0].rstrip("2") in ("gateway", "renew")
    return bare_of(n) + ("-s" if session else "")
order = ["direct", "nginx", "nginx-s", "public", "gateway", "renew", "public-B", "gateway-B",
         "nginx2", "nginx2-s", "public2", "gateway2", "renew2", "public2-B", "gateway2-B"]
print("\n| target | req/s | p50 µs | p99 µs | CPU µs/req (user+sys) | baseline | req/s vs baseline | CPU vs baseline | p99 − baseline µs | errors |")
print("| --- | ---: | ---: | ---: | ---: | --- | ---: | ---: | ---: | ---: |")
for n in [n for n in order if n in med]:
    m, bn = med[n], base_of(n)
    b = med[bn]
    print(f"| {n} | {m['rps']:.0f} | {m['p50_us']:.0f} | {m['p99_us']:.0f} "
          f"| {m['cpu_us_per_req']:.1f} ({m['user_us']:.1f}+{m['sys_us']:.1f}) | {bn} "
          f"| {m['rps']/b['rps']:.2f}x | {m['cpu_us_per_req']/b['cpu_us_per_req']:.2f}x "
          f"| {m['p99_us']-b['p99_us']:+.0f} | {m['errors']:.0f} |")
# Per-round ratios: each round's targets ran back to back, so the ratio of a round is
# steadier than the ratio of medians when the machine's load drifts between rounds.
def per_round(n, bn, f):
    return [f(g, x) for g, x in zip(rows[n], rows[bn])]
def ratios(n, bn, key):
    return per_round(n, bn, lambda g, x: g[key] / x[key])
def cell(rs):
    return f"{statistics.median(rs):.2f}x ({', '.join(f'{r:.2f}' for r in rs)})"
def p99_cell(n, bn):
    ds = per_round(n, bn, lambda g, x: g["p99_us"] - x["p99_us"])
    return f"{statistics.median(ds):+.0f} ({', '.join(f'{d:+.0f}' for d in ds)})"
print("\nPer-round ratios against the nginx of the same width given the same request (median of rounds):")
print("\n| target | baseline | CPU vs baseline | req/s vs baseline | p99 − baseline µs | CPU vs cookie-less nginx |")
print("| --- | --- | ---: | ---: | ---: | ---: |")
for n in [n for n in order if n in rows and not n.startswith(("direct", "nginx"))]:
    bn = base_of(n)
    bare = cell(ratios(n, bare_of(n), "cpu_us_per_req")) if bn != bare_of(n) else "(same)"
    print(f"| {n} | {bn} | {cell(ratios(n, bn, 'cpu_us_per_req'))} "
          f"| {cell(ratios(n, bn, 'rps'))} | {p99_cell(n, bn)} | {bare} |")
sc = lambda a, b: statistics.median(x["rps"] / y["rps"] for x, y in zip(rows[a], rows[b]))
if "nginx2" in rows:  # not with PIN=1
    print(f"\nScaling 1 -> 2 (req/s, median of rounds): nginx {sc('nginx2', 'nginx'):.2f}x, "
          f"gateway {sc('gateway2', 'gateway'):.2f}x, public {sc('public2', 'public'):.2f}x"
          + (f", renew {sc('renew2', 'renew'):.2f}x" if "renew2" in rows else ""))
if "renew" in rows:
    print("\nRenewing against valid-session CPU per request (per round): "
          f"1 loop {cell(ratios('renew', 'gateway', 'cpu_us_per_req'))}"
          + (f", 2 loops {cell(ratios('renew2', 'gateway2', 'cpu_us_per_req'))}"
             if "renew2" in rows else ""))
print(f"\nPeak RSS: {sys.argv[2]}; renewals during the renew runs: {sys.argv[3]}")
PY
