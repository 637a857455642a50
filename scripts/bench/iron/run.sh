#!/usr/bin/env bash
# Seal/unseal speed of sallyport-iron next to the real npm packages, in one run.
#
#   scripts/bench/iron/run.sh [seconds-per-measurement]   (default 5)
#
# Runs the criterion bench `cargo bench -p sallyport-iron --bench iron` and
# bench.mjs (iron-session 9.0.1 and @hapi/iron 7.0.1, from package-lock.json), each
# pinned to the same single CPU with one operation in flight (Node: sequential awaits,
# UV_THREADPOOL_SIZE=1), then prints ops/s and the ratios.
# Targets (issue 2): Rust >= 30x iron-session and >= 5x @hapi/iron, for seal and unseal.
set -euo pipefail

secs="${1:-5}"
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
root="$(cd "$here/../../.." && pwd)"
target="${CARGO_TARGET_DIR:-$root/target}"
cpu="${BENCH_CPU:-0}"
pin=()
if command -v taskset >/dev/null; then pin=(taskset -c "$cpu"); fi

cd "$here"
if [ ! -d node_modules/iron-session ]; then
  npm ci --no-audit --no-fund --loglevel=error
fi

echo "== Rust (criterion), CPU $cpu" >&2
(cd "$root" && "${pin[@]}" cargo bench -q -p sallyport-iron --bench iron -- \
  --warm-up-time 2 --measurement-time "$secs" --noplot >&2)

echo "== Node $(node --version) (iron-session, @hapi/iron), CPU $cpu" >&2
node_json="$(UV_THREADPOOL_SIZE=1 "${pin[@]}" node bench.mjs "$secs")"

CRITERION_DIR="$target/criterion/iron" NODE_RESULTS="$node_json" node --input-type=module -e '
import { readFileSync } from "node:fs";
const dir = process.env.CRITERION_DIR;
const node = JSON.parse(process.env.NODE_RESULTS);
const rust = (name) => {
  const est = JSON.parse(readFileSync(`${dir}/${name}/new/estimates.json`, "utf8"));
  return 1e9 / est.mean.point_estimate; // ns per op -> ops/s
};
const rows = [
  ["seal", rust("seal_value_610B"), node.iron_session_seal, node.hapi_iron_seal],
  ["unseal", rust("unseal_value_610B"), node.iron_session_unseal, node.hapi_iron_unseal],
];
const fmt = (n) => Math.round(n).toLocaleString("en-US").padStart(10);
console.log("op       sallyport-iron   iron-session      @hapi/iron   vs iron-session  vs @hapi/iron");
let ok = true;
for (const [op, r, iron, hapi] of rows) {
  const a = r / iron, b = r / hapi;
  ok &&= a >= 30 && b >= 5;
  console.log(`${op.padEnd(8)} ${fmt(r)}/s   ${fmt(iron)}/s   ${fmt(hapi)}/s   ${a.toFixed(1).padStart(13)}x  ${b.toFixed(1).padStart(12)}x`);
}
console.log(`(610-byte session JSON, typed value in Rust; Node ${node.node}; targets >= 30x and >= 5x: ${ok ? "met" : "NOT met"})`);
'
