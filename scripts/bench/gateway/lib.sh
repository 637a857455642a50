# Sourced by the gateway benchmarks (run.sh, callgrind.sh): one gateway on loopback, and
# a login through it. Not a script of its own.

# gateway_env LISTEN_PORT UPSTREAM_PORT ISSUER_PORT PUBLIC_PATHS THREADS [ADMIN_PORT]
# Sets GATEWAY_ENV, the gateway's environment as `env` arguments (an array, so that
# the JSON of PUBLIC_PATHS is passed as it is, never split or globbed).
gateway_env() {
  GATEWAY_ENV=(
    "SALLYPORT_GATEWAY_PUBLIC_PATHS=$4"
    "SESSION_SECRET=bench-secret-bench-secret-bench-secret-0"
    "SALLYPORT_GATEWAY_LISTEN=127.0.0.1:$1"
    "SALLYPORT_GATEWAY_UPSTREAM=http://127.0.0.1:$2"
    "SALLYPORT_GATEWAY_SESSION__SECURE=false"
    "SALLYPORT_GATEWAY_BACKEND__LOGIN_URL=http://127.0.0.1:$3/api/login"
    "SALLYPORT_GATEWAY_BACKEND__REFRESH_URL=http://127.0.0.1:$3/api/refresh-token"
    "SALLYPORT_GATEWAY_THREADS=$5"
    "SALLYPORT_GATEWAY_ADMIN__ENABLED=$([ -n "${6:-}" ] && echo true || echo false)"
    "SALLYPORT_GATEWAY_ADMIN__LISTEN=127.0.0.1:${6:-9}"
    "RUST_LOG=warn"
  )
}

# bench_login GATEWAY_PORT -> prints the session cookie (`name=value`) of a fresh login
# of the user `bench` (created by the scripts with `sallyport user add`).
bench_login() {
  curl -s -D - -o /dev/null -H 'content-type: application/json' \
    -d '{"username":"bench","password":"bench-password-0123456789"}' \
    "http://127.0.0.1:$1/auth/login" | tr -d '\r' \
    | awk -F': ' 'tolower($1)=="set-cookie"{split($2,a,";"); print a[1]; exit}'
}
