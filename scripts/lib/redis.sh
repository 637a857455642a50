# Throwaway Redis server on 127.0.0.1 for the test suites (the gateway's shared
# logout store). Source it, then call redis_start / redis_stop.
# Exports SALLYPORT_TEST_REDIS_URL.
REDIS_PORT=${REDIS_PORT:-56379}

redis_start() {
  command -v redis-server >/dev/null || { echo "redis.sh: redis-server not found" >&2; return 1; }
  # A port where something already answers (another suite's server, a leftover) would
  # make the ping below succeed against that server: the tests would share its data and
  # redis_stop would not stop it. Move on to a free port instead, as postgres.sh does.
  local try
  for try in 1 2 3 4 5; do
    redis-cli -h 127.0.0.1 -p "$REDIS_PORT" ping >/dev/null 2>&1 || break
    [ "$try" -eq 5 ] && { echo "redis.sh: ports up to $REDIS_PORT are taken" >&2; return 1; }
    echo "redis.sh: port $REDIS_PORT taken, trying $((REDIS_PORT + 1))" >&2
    REDIS_PORT=$((REDIS_PORT + 1))
  done
  REDIS_DIR=$(mktemp -d /tmp/sallyport-redis.XXXXXX)
  redis-server --bind 127.0.0.1 --port "$REDIS_PORT" --save '' --appendonly no \
    --dir "$REDIS_DIR" --pidfile "$REDIS_DIR/redis.pid" --logfile "$REDIS_DIR/log" \
    --daemonize yes
  local i
  for i in $(seq 1 50); do
    redis-cli -h 127.0.0.1 -p "$REDIS_PORT" ping >/dev/null 2>&1 && break
    sleep 0.1
  done
  redis-cli -h 127.0.0.1 -p "$REDIS_PORT" ping >/dev/null && [ -f "$REDIS_DIR/redis.pid" ] \
    || { echo "redis.sh: redis-server did not start; its log:" >&2; cat "$REDIS_DIR/log" >&2; return 1; }
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
