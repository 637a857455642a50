#!/usr/bin/env bash
# Gateway memory/fd soak (issue "Gateway speed", memory target): resident size stays
# under 64 MB and flat after warm-up over a 10-minute run with 100,000 distinct sessions
# cycling through (session cache, single-flight map, rotated-token map and logout records
# all bounded), and the gateway's file descriptors return to baseline after the run.
# Starts an nginx upstream, the real issuer and the gateway on loopback, logs in SESSIONS
# sessions through the gateway, then cycles GET / over all of them for DURATION seconds
# (renewals with ACCESS_TTL-second access tokens, a few logouts and fresh logins per
# minute), sampling the gateway's VmRSS, fds and /metrics every 10 s. Prints the samples
# and a verdict; exits 1 when the target is missed. The client and the details are in
# memory.mjs (plain Node >= 18, no npm packages).
#
#   scripts/bench/gateway/memory.sh                       # SESSIONS=100000 DURATION=600
#   SESSIONS=5000 DURATION=60 ...                         # a quick run
#   THREADS=1 ...                                         # gateway event loops (default 2)
#   ACCESS_TTL=60 CONCURRENCY=32 USERS=1000 ...           # token lifetime, client
#                                                         # concurrency, issuer users
#   BIN=/path/to/sallyport ...                            # that binary instead of building
#   BENCH_KEEP=1 ...                                      # keep the work dir (logs, databases)
# More knobs (warm-up, thresholds, logout rate) are listed at the top of memory.mjs.
set -euo pipefail

HERE=$(cd "$(dirname "$0")" && pwd)
ROOT=$(cd "$HERE/../../.." && pwd)
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-/var/cache/sallyport/target}

need() { command -v "$1" >/dev/null 2>&1; }
need node || { echo "node (>= 18) is needed" >&2; exit 2; }
if [ -z "${NGINX:-}" ]; then
  NGINX=$(command -v nginx || echo /usr/sbin/nginx)
  if [ ! -x "$NGINX" ]; then
    echo "installing nginx (Debian) ..."; apt-get install -y nginx-light >/dev/null 2>&1 || apt-get install -y nginx >/dev/null
    NGINX=$(command -v nginx || echo /usr/sbin/nginx)
  fi
fi
export NGINX

if [ -z "${BIN:-}" ]; then
  echo "building sallyport (release) ..."
  (cd "$ROOT" && cargo build --release -q -p sallyport)
  BIN="$CARGO_TARGET_DIR/release/sallyport"
fi
export BIN

exec node "$HERE/memory.mjs"
