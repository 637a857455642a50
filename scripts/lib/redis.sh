# Throwaway Redis server on 127.0.0.1 for the test suites (the gateway's shared
# logout store). Source it, then call redis_start / redis_stop.
# Exports SALLYPORT_TEST_REDIS_URL.
REDIS_PORT=${REDIS_PORT:-56379}

redis_start() {
  command -v redis-server >/dev/null || { echo "redis.sh: redis-server not found" >&2; return 1; }
  REDIS_DIR=$(mktemp -d /tmp/sallyport-redis.XXXXXX)
  redis-server --bind 127.0.0.1 --port "$REDIS_PORT" --save '' --appendonly no \
    --dir "$REDIS_DIR" --pidfile "$REDIS_DIR/redis.pid" --logfile "$REDIS_DIR/log" \
    --daemonize yes
  local i
  for i in $(seq 1 50); do
    redis-cli -h 127.0.0.1 -p "$REDIS_PORT" ping >/dev/null 2>&1 && break
    sleep 0.1
  done
  redis-cli -h 127.0.0.1 -p "$REDIS_PORT" ping >/dev/null || { echo "redis.sh: redis-server did not start" >&2; return 1; }
  export SALLYPORT_TEST_REDIS_URL="redis://127.0.0.1:$REDIS_PORT/0"
  export REDIS_DIR
}

redis_stop() {
  if [ -n "${REDIS_DIR:-}" ] && [ -f "$REDIS_DIR/redis.pid" ]; then
    kill "$(cat "$REDIS_DIR/redis.pid")" 2>/dev/null || true
    sleep 0.2
    rm -rf "$REDIS_DIR"
  fi
}
