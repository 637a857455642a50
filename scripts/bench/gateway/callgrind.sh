#!/usr/bin/env bash
# Instructions per proxied request, by function: the gateway under valgrind's callgrind
# on loopback (an nginx `return 200` upstream, the real issuer, one valid session), wrk
# with 4 connections for DURATION seconds, instrumentation on only while wrk runs.
#
# Why next to run.sh: wall-clock CPU on a shared 2-core machine moves by ±5 % between
# runs, instruction counts by well under 1 %, so a change worth 1 % shows here and not
# there. What it does not show: kernel time (syscalls, TCP), cache misses, and the real
# cost of SHA-256 (valgrind hides the CPU's SHA extensions, so it runs in software:
# its lines are reported apart).
#
#   scripts/bench/gateway/callgrind.sh                 # builds the `bench` profile
#   SALLYPORT_BIN=/path/to/sallyport scripts/bench/gateway/callgrind.sh
#   BENCH_PATH=/pub/x SESSION=none ...                 # the public path, no session cookie
#   TOP=40 DURATION=10 BENCH_KEEP=1 ...
#
# A binary with line tables (`cargo build --profile bench -p sallyport`) attributes
# inlined code to its source line; a plain release binary works too.
set -euo pipefail

DURATION=${DURATION:-10}
TOP=${TOP:-30}
BENCH_PATH=${BENCH_PATH:-/}
HERE=$(cd "$(dirname "$0")" && pwd)
# shellcheck source=lib.sh
. "$HERE/lib.sh"
ROOT=$(cd "$HERE/../../.." && pwd)
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-/var/cache/sallyport/target}
WORK=$(mktemp -d /tmp/sallyport-gw-callgrind.XXXXXX)
P_UP=18281 P_GW=18283 P_ISS=18284
PIDS=()
cleanup() {
  for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
  [ -f "$WORK/up/nginx.pid" ] && kill "$(cat "$WORK/up/nginx.pid")" 2>/dev/null || true
  wait 2>/dev/null || true
  if [ -n "${BENCH_KEEP:-}" ]; then echo "work dir kept: $WORK"; else rm -rf "$WORK"; fi
}
trap cleanup EXIT

need() { command -v "$1" >/dev/null 2>&1; }
if ! need nginx && [ ! -x /usr/sbin/nginx ]; then apt-get install -y nginx-light >/dev/null 2>&1 || apt-get install -y nginx >/dev/null; fi
need wrk || apt-get install -y wrk >/dev/null
need valgrind || apt-get install -y valgrind >/dev/null
NGINX=$(command -v nginx || echo /usr/sbin/nginx)

if [ -n "${SALLYPORT_BIN:-}" ]; then
  BIN=$SALLYPORT_BIN
else
  echo "building sallyport (bench profile: release with line tables) ..."
  (cd "$ROOT" && cargo build --profile bench -q -p sallyport)
  BIN="$CARGO_TARGET_DIR/release/sallyport"
fi

mkdir -p "$WORK/up"
cat >"$WORK/up/nginx.conf" <<NGX
worker_processes 1; pid $WORK/up/nginx.pid; error_log $WORK/up/error.log warn; daemon on;
events { worker_connections 1024; }
http {
  access_log off;
  client_body_temp_path $WORK/up; proxy_temp_path $WORK/up; fastcgi_temp_path $WORK/up; uwsgi_temp_path $WORK/up; scgi_temp_path $WORK/up;
  server { listen 127.0.0.1:$P_UP; location / { default_type application/json; return 200 "{\"ok\":true}"; } }
}
NGX
"$NGINX" -c "$WORK/up/nginx.conf" -p "$WORK/up"

export SALLYPORT_ISSUER_DATABASE_URL="sqlite://$WORK/issuer.db"
export SALLYPORT_ISSUER_LISTEN="127.0.0.1:$P_ISS"
export SALLYPORT_ISSUER_ISSUER="http://127.0.0.1:$P_ISS"
export SALLYPORT_ISSUER_ACCESS_TOKEN_TTL_SECS=900
echo "bench-password-0123456789" | "$BIN" user add bench --password-stdin >/dev/null
"$BIN" issuer >"$WORK/issuer.log" 2>&1 & PIDS+=($!)

gateway_env $P_GW $P_UP $P_ISS '["/pub/**"]' 1
env "${GATEWAY_ENV[@]}" valgrind --tool=callgrind --instr-atstart=no --callgrind-out-file="$WORK/cg.out" \
  "$BIN" gateway >"$WORK/gateway.log" 2>&1 &
GW=$!; PIDS+=($GW)
for p in $P_ISS $P_GW; do
  for _ in $(seq 200); do curl -s -o /dev/null "http://127.0.0.1:$p/pub/x" && break; sleep 0.2; done
done
bench_login $P_GW >"$WORK/cookies"
[ -s "$WORK/cookies" ] || { echo "login failed"; cat "$WORK/gateway.log"; exit 1; }
# A cookie that is no session, as run.sh's "public" target sends.
[ "${SESSION:-}" = none ] && echo "x" >"$WORK/cookies"

callgrind_control -i on "$GW" >/dev/null
OUT=$(COOKIES_FILE="$WORK/cookies" BENCH_PATH=$BENCH_PATH wrk -t1 -c4 -d"${DURATION}s" \
  -s "$HERE/cookie.lua" "http://127.0.0.1:$P_GW$BENCH_PATH" | grep '^RESULT')
callgrind_control -i off "$GW" >/dev/null
callgrind_control -d "$GW" >/dev/null
sleep 2
REQS=$(sed -E 's/.*requests=([0-9]+).*/\1/' <<<"$OUT")
echo "# $(date -u '+%Y-%m-%d %H:%M UTC'); $BENCH_PATH; $OUT"
DUMP=$(ls -t "$WORK"/cg.out.* | head -1)
callgrind_annotate --threshold=100 --auto=no "$DUMP" 2>/dev/null | python3 -c '
import collections, re, sys
n, top = int(sys.argv[1]), int(sys.argv[2])
total, by_fn = None, collections.Counter()
for line in sys.stdin:
    m = re.match(r"\s*([\d,]+)\s+\(\s*[\d.]+%\)\s+(.*)", line)
    if not m:
        continue
    v, name = int(m.group(1).replace(",", "")), m.group(2)
    if "PROGRAM TOTALS" in name:
        total = v
        continue
    name = re.sub(r" \[.*\]$", "", name)
    name = name.split(":", 1)[1] if ":" in name and not name.startswith("<") else name
    by_fn[name] += v
sha = sum(v for k, v in by_fn.items() if "sha2::" in k)
print(f"instructions per request: {(total - sha) / n:.0f} (SHA-256, software under valgrind, apart: {sha / n:.0f})")
print("self instructions per request, by function:")
for k, v in [kv for kv in by_fn.most_common() if "sha2::" not in kv[0]][:top]:
    print(f"{v / n:8.0f}  {k[:140]}")
' "$REQS" "$TOP"
