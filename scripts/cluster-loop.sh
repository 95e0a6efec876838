#!/usr/bin/env bash
# The cluster suite N times in a row (issue #10 asks for 20 consecutive green runs):
#   RUNS=20 bash scripts/cluster-loop.sh
# Builds the suite once, then runs the same test binary RUNS times (each run starts its
# own PostgreSQL and node processes); prints one line per run with its time and the load
# average, keeps each run's output in $OUT (default target/cluster-loop/run-N.log), and
# exits non-zero if any run failed. Do not rebuild the host while it runs: the tests
# start target/debug/minotaur.
set -euo pipefail
cd "$(dirname "$0")/.."
runs=${RUNS:-20}
out=${OUT:-target/cluster-loop}
mkdir -p "$out"
bin=$(cargo test -p minotaur-host --test cluster --no-run --message-format=json 2>/dev/null |
  python3 -c 'import json,sys
for l in sys.stdin:
    m = json.loads(l)
    if m.get("reason") == "compiler-artifact" and m["target"]["name"] == "cluster" and m.get("executable"):
        print(m["executable"])' | tail -1)
[ -x "$bin" ] || { echo "cluster test binary not built" >&2; exit 1; }
echo "binary $bin, commit $(git rev-parse --short HEAD), $runs runs"
pass=0
for i in $(seq 1 "$runs"); do
  start=$SECONDS
  if "$bin" > "$out/run-$i.log" 2>&1; then pass=$((pass + 1)); r=ok; else r=FAIL; fi
  echo "run $i $r $((SECONDS - start))s load $(cut -d' ' -f1 /proc/loadavg)"
done
echo "passed $pass of $runs"
[ "$pass" -eq "$runs" ]
