#!/usr/bin/env bash
# Load test of the issuer on loopback: refresh rotations/s with 32 concurrent clients
# (each its own session, every request a real rotation) and login throughput.
#
#   scripts/bench/issuer/run.sh                 # SQLite (temp file)
#   BENCH_POSTGRES_URL=postgres://user@127.0.0.1:55432/postgres scripts/bench/issuer/run.sh
#
# Needs: wrk (Debian: apt-get install wrk), curl, a release build of `sallyport`
# (built here if missing). Knobs: CONNECTIONS (32), LOGIN_CONNECTIONS (8), THREADS (2),
# DURATION (10s).
set -euo pipefail
cd "$(dirname "$0")/../../.."
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-/var/cache/sallyport/target}
BIN=${SALLYPORT_BIN:-$CARGO_TARGET_DIR/release/sallyport}
[ -x "$BIN" ] || cargo build --release -p sallyport
CONNECTIONS=${CONNECTIONS:-32}
THREADS=${THREADS:-2}
# Logins are CPU-bound (argon2id): more connections than cores only add queueing.
LOGIN_CONNECTIONS=${LOGIN_CONNECTIONS:-8}
DURATION=${DURATION:-10s}
PORT=${PORT:-18300}
work=$(mktemp -d); echo "work dir: $work"
trap 'kill "$pid" 2>/dev/null || true; wait "$pid" 2>/dev/null || true; [ -n "${KEEP:-}" ] || rm -rf "$work"' EXIT

run_backend() {
  local name=$1 url=$2
  export SALLYPORT_ISSUER_DATABASE_URL=$url
  export SALLYPORT_ISSUER_LISTEN=127.0.0.1:$PORT
  export SALLYPORT_ISSUER_RATE_LIMIT__ACCOUNT_BURST=0
  export SALLYPORT_ISSUER_RATE_LIMIT__ADDRESS_BURST=0
  echo "bench-password-123" | "$BIN" user add bench --password-stdin >/dev/null 2>&1 || true
  RUST_LOG=warn "$BIN" issuer >"$work/issuer-$name.log" 2>&1 &
  pid=$!
  for _ in $(seq 1 100); do curl -fs "http://127.0.0.1:$PORT/healthz" >/dev/null && break; sleep 0.1; done
  : >"$work/tokens"
  # One session per connection, plus one per thread: wrk calls request() once up front
  # to verify the script, which takes a token that is never answered.
  for _ in $(seq 1 $((CONNECTIONS + THREADS))); do
    body=$(curl -fs -H 'content-type: application/json' \
      -d '{"username":"bench","password":"bench-password-123"}' \
      "http://127.0.0.1:$PORT/api/login")
    sed -E 's/.*"refreshToken":"([^"]+)".*/\1/' <<<"$body" >>"$work/tokens"
  done
  echo "== $name: refresh rotations, $CONNECTIONS connections, $THREADS threads, $DURATION"
  TOKENS_FILE="$work/tokens" THREADS=$THREADS wrk -t"$THREADS" -c"$CONNECTIONS" -d"$DURATION" --latency \
    -s scripts/bench/issuer/refresh.lua "http://127.0.0.1:$PORT" | grep -E "rotations/s|Socket errors|Non-2xx"
  echo "== $name: logins (argon2id, OWASP parameters), $LOGIN_CONNECTIONS connections"
  wrk -t"$THREADS" -c"$LOGIN_CONNECTIONS" -d"$DURATION" --timeout 10s -s scripts/bench/issuer/login.lua \
    "http://127.0.0.1:$PORT" | grep -E "logins/s|Socket errors|Non-2xx"
  kill "$pid"; wait "$pid" 2>/dev/null || true
}

run_backend sqlite "sqlite://$work/bench.db"
if [ -n "${BENCH_POSTGRES_URL:-}" ]; then
  db="bench_$(date +%s)"
  psql "$BENCH_POSTGRES_URL" -qc "CREATE DATABASE $db"
  run_backend postgres "${BENCH_POSTGRES_URL%/*}/$db"
  psql "$BENCH_POSTGRES_URL" -qc "DROP DATABASE $db WITH (FORCE)" || true
fi
