# Throwaway PostgreSQL cluster on 127.0.0.1 for the test suites.
# Source it, then call pg_start / pg_stop. Exports SALLYPORT_TEST_POSTGRES_URL.
PG_PORT=${PG_PORT:-55432}
pg_bindir() { ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n 1; }

pg_as() {
  # PostgreSQL refuses to run as root: use the postgres account then.
  if [ "$(id -u)" -eq 0 ]; then runuser -u postgres -- "$@"; else "$@"; fi
}

pg_start() {
  local bin; bin=$(pg_bindir)
  [ -n "$bin" ] || { echo "postgres.sh: PostgreSQL server binaries not found" >&2; return 1; }
  PG_DIR=$(mktemp -d /tmp/sallyport-pg.XXXXXX)
  chmod 755 "$PG_DIR"
  [ "$(id -u)" -eq 0 ] && chown postgres "$PG_DIR"
  pg_as "$bin/initdb" -D "$PG_DIR/data" -U sallyport --auth=trust -E UTF8 >/dev/null
  # A port already taken (another cluster, a leftover) is not a test failure: try the next.
  local try
  for try in 1 2 3 4 5; do
    if pg_as "$bin/pg_ctl" -D "$PG_DIR/data" -l "$PG_DIR/log" -w \
      -o "-c listen_addresses=127.0.0.1 -p $PG_PORT -k $PG_DIR -c max_connections=300 -c fsync=off" start >/dev/null; then
      break
    fi
    if [ "$try" -eq 5 ]; then
      echo "postgres.sh: PostgreSQL did not start; its log:" >&2
      cat "$PG_DIR/log" >&2
      return 1
    fi
    echo "postgres.sh: port $PG_PORT unavailable, trying $((PG_PORT + 1))" >&2
    PG_PORT=$((PG_PORT + 1))
  done
  export SALLYPORT_TEST_POSTGRES_URL="postgres://sallyport@127.0.0.1:$PG_PORT/postgres"
  export PG_DIR
}

pg_stop() {
  local bin; bin=$(pg_bindir)
  if [ -n "${PG_DIR:-}" ] && [ -d "$PG_DIR/data" ]; then
    pg_as "$bin/pg_ctl" -D "$PG_DIR/data" -m fast stop >/dev/null 2>&1 || true
    rm -rf "$PG_DIR"
  fi
}
