#!/usr/bin/env bash
# Guest isolation bench (issue #12, docs/BENCHMARKS.md "Guest isolation"): what hostile
# guests spinning until their call timeout do to a bystander's input->ack latency.
#   scripts/bench-isolation.sh [node flags...]        e.g. --guest-threads 2
# Starts one release node on a temp data dir serving tictactoe and the chaos test game,
# then ROUNDS (3) times, back to back: an idle run (PLAYERS (8) tictactoe bots at RATE (10)
# inputs/s each, DURATION (20s)), then the same bots with SPINNERS (4) chaos sessions each
# keeping a guest call spinning until the node's call timeout (100 ms by default),
# `minotaur-loadtest --spinners`. Prints each run's ack p50/p99/max and, per round, the
# loaded p99 as a ratio of the same round's idle p99 (the target: <= 2x).
# Needs: cargo build --release -p minotaur-host -p minotaur-loadtest; games/dist (with test/).
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
TARGET=${TARGET:-$(cd "$ROOT" && cargo metadata --format-version 1 --no-deps 2>/dev/null |
  python3 -c 'import json,sys; print(json.load(sys.stdin)["target_directory"])' || echo "$ROOT/target")}
PLAYERS=${PLAYERS:-8} RATE=${RATE:-10} DURATION=${DURATION:-20s} SPINNERS=${SPINNERS:-4} ROUNDS=${ROUNDS:-3}
W=$(mktemp -d)
cleanup() {
  [ -f "$W/pid" ] && kill "$(cat "$W/pid")" 2>/dev/null
  wait 2>/dev/null
  rm -rf "$W"
}
trap cleanup EXIT
mkdir "$W/games"
cp "$ROOT/games/dist/tictactoe.wasm" "$ROOT/games/dist/test/chaos.wasm" "$W/games/"
# Every bot is 127.0.0.1: per-address limits off, as in bench-load.sh.
RUST_LOG=error "$TARGET/release/minotaur" serve --listen 127.0.0.1:0 --admin-listen 127.0.0.1:0 \
  --max-conns-per-ip 0 --sessions-per-ip-per-min 0 \
  --games-dir "$W/games" --data-dir "$W/data" "$@" > "$W/out" 2>&1 &
echo $! > "$W/pid"
pattern='listening on http://'
for _ in $(seq 600); do grep -q "$pattern" "$W/out" 2>/dev/null && break; sleep 0.1; done
ADDR=$(grep -o "minotaur $pattern[0-9.:]*" "$W/out" | head -1 | sed 's|.*//||')
for _ in $(seq 50); do grep -q "admin $pattern" "$W/out" && break; sleep 0.1; done
ADMIN_ADDR=$(grep -o "admin $pattern[0-9.:]*" "$W/out" | head -1 | sed 's|.*//||')
[ -n "$ADDR" ] || { echo "server did not start:"; cat "$W/out"; exit 1; }
for _ in $(seq 100); do
  [ "$(curl -s -o /dev/null -w '%{http_code}' "http://$ADDR/readyz")" = 200 ] && break; sleep 0.1
done
THREADS=$(curl -s "http://$ADMIN_ADDR/metrics" | awk '$1 == "minotaur_guest_pool_threads" {print $2}')
echo "== isolation bench against $ADDR: $PLAYERS tictactoe bots at $RATE/s, $DURATION per run," \
  "$SPINNERS spinners when loaded, $ROUNDS rounds; guest pool threads: ${THREADS:-?};" \
  "node flags: $*; cores: $(nproc); load avg $(cut -d' ' -f1-3 /proc/loadavg)"
load() { # $1 = output file, $2 = spinners
  "$TARGET/release/minotaur-loadtest" --url "ws://$ADDR/ws" --players "$PLAYERS" --game tictactoe \
    --rate "$RATE" --duration "$DURATION" --spinners "$2" --json > "$1" 2> "$1.err"
}
for r in $(seq "$ROUNDS"); do
  load "$W/idle-$r.json" 0
  load "$W/loaded-$r.json" "$SPINNERS"
  python3 - "$W/idle-$r.json" "$W/loaded-$r.json" "$r" "$(cat "$W/loaded-$r.json.err")" <<'PY'
import json, sys
idle, loaded = (json.load(open(p)) for p in sys.argv[1:3])
ms = lambda s, k: s["ack_latency_us"][k] / 1000
for name, s in (("idle", idle), ("loaded", loaded)):
    print(f"round {sys.argv[3]} {name:6}: acks {s['acks']:6}  ack p50 {ms(s,'p50'):6.2f} ms  "
          f"p99 {ms(s,'p99'):6.2f} ms  max {ms(s,'max'):7.2f} ms  errors {s['errors_total']}")
print(f"round {sys.argv[3]} ratio : p99 loaded / idle = {ms(loaded,'p99') / ms(idle,'p99'):.2f}x"
      f"  (p50 {ms(loaded,'p50') / ms(idle,'p50'):.2f}x)   {sys.argv[4].strip()}")
PY
done
curl -s "http://$ADMIN_ADDR/metrics" | grep -E '^minotaur_guest_traps_total|^minotaur_guest_pool' || true
echo "load avg at the end: $(cut -d' ' -f1-3 /proc/loadavg)"
