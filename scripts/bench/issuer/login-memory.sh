#!/usr/bin/env bash
# Issuer memory under a flood of failed logins (issue 8, item 5): CONCURRENCY (500)
# concurrent failed logins, ROUNDS (4) times, against a release build with the default
# argon2id parameters (19 MiB per hash) and the default hashing cap (one hash per core,
# 64 queued, the rest refused with 503). Login rate limits are off, so every request
# reaches the hashing stage. Prints the answers and the issuer's peak RSS (VmHWM) and
# its RSS afterwards.
#
#   scripts/bench/issuer/login-memory.sh
#   CONCURRENCY=500 ROUNDS=4 SALLYPORT_BIN=/path/to/sallyport scripts/bench/issuer/login-memory.sh
#
# Needs: python3, curl, a release build of `sallyport` (built here if missing).
set -euo pipefail
cd "$(dirname "$0")/../../.."
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-/var/cache/sallyport/target}
BIN=${SALLYPORT_BIN:-$CARGO_TARGET_DIR/release/sallyport}
[ -x "$BIN" ] || cargo build --release -p sallyport
CONCURRENCY=${CONCURRENCY:-500}
ROUNDS=${ROUNDS:-4}
PORT=${PORT:-18301}
work=$(mktemp -d)
pid=
trap '[ -n "$pid" ] && { kill "$pid" 2>/dev/null || true; wait "$pid" 2>/dev/null || true; }; rm -rf "$work"' EXIT

export SALLYPORT_ISSUER_DATABASE_URL=sqlite://$work/issuer.db
export SALLYPORT_ISSUER_LISTEN=127.0.0.1:$PORT
export SALLYPORT_ISSUER_RATE_LIMIT__ACCOUNT_BURST=0
export SALLYPORT_ISSUER_RATE_LIMIT__ACCOUNT_ADDRESS_BURST=0
export SALLYPORT_ISSUER_RATE_LIMIT__ADDRESS_BURST=0
RUST_LOG=warn "$BIN" issuer >"$work/issuer.log" 2>&1 &
pid=$!
for _ in $(seq 1 100); do curl -fs "http://127.0.0.1:$PORT/healthz" >/dev/null && break; sleep 0.1; done
kib() { awk -v k="$1:" '$1 == k { print $2 }' "/proc/$pid/status"; }
echo "RSS before: $(( $(kib VmRSS) / 1024 )) MiB"
python3 scripts/bench/issuer/login_flood.py "http://127.0.0.1:$PORT" "$CONCURRENCY" "$ROUNDS"
echo "peak RSS (VmHWM): $(( $(kib VmHWM) / 1024 )) MiB"
echo "RSS after: $(( $(kib VmRSS) / 1024 )) MiB"
echo "cores: $(nproc)"
