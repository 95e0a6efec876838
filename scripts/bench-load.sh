#!/usr/bin/env bash
# One load run against a fresh release node on loopback (docs/BENCHMARKS.md):
#   scripts/bench-load.sh arena|tictactoe|echo [node flags...]
# Starts `minotaur serve` on a temp data dir (or the bare websocket echo for `echo`, which
# the bots drive as arena players), runs minotaur-loadtest against it with PLAYERS
# (1000), DURATION (60s), RAMP (5s), prints the summary table, the node's key metrics,
# and writes the JSON summary to $OUT (default target/bench-load-<game>.json).
# Needs: cargo build --release -p minotaur-host -p minotaur-loadtest; games/dist.
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
GAME=${1:?arena|tictactoe|echo}; shift
PLAYERS=${PLAYERS:-1000} DURATION=${DURATION:-60s} RAMP=${RAMP:-5s}
OUT=${OUT:-$ROOT/target/bench-load-$GAME.json}
W=$(mktemp -d)
cleanup() { [ -f "$W/pid" ] && kill "$(cat "$W/pid")" 2>/dev/null; wait 2>/dev/null; rm -rf "$W"; }
trap cleanup EXIT
if [ "$GAME" = echo ]; then
  "$ROOT/target/release/minotaur-loadtest" --serve-echo 127.0.0.1:0 > "$W/out" 2>&1 &
  pattern='echo listening on ws://'; BOTS=arena
else
  RUST_LOG=warn "$ROOT/target/release/minotaur" serve --listen 127.0.0.1:0 \
    --games-dir "$ROOT/games/dist" --data-dir "$W/data" "$@" > "$W/out" 2>&1 &
  pattern='listening on http://'; BOTS=$GAME
fi
echo $! > "$W/pid"
for _ in $(seq 600); do grep -q "$pattern" "$W/out" 2>/dev/null && break; sleep 0.1; done
ADDR=$(grep -o "$pattern[0-9.:]*" "$W/out" | head -1 | sed 's|.*//||')
[ -n "$ADDR" ] || { echo "server did not start:"; cat "$W/out"; exit 1; }
echo "== $GAME against $ADDR, $PLAYERS players, $DURATION (ramp $RAMP), node flags: $*; load avg $(cut -d' ' -f1-3 /proc/loadavg)"
"$ROOT/target/release/minotaur-loadtest" --url "ws://$ADDR/ws" --players "$PLAYERS" \
  --game "$BOTS" --duration "$DURATION" --ramp "$RAMP" --json > "$OUT"
python3 - "$OUT" <<'PY'
import json, sys
s = json.load(open(sys.argv[1]))
ms = lambda l: " / ".join(f"{l[k]/1000:.1f}" for k in ("p50", "p99", "p999"))
print(f"seated {s['seated']}  peak connected {s['peak_connected']}  inputs/s {s['inputs_per_s']:.0f}  "
      f"acks {s['acks']}  unacked at stop {s['inputs_unacked']}  games finished {s['games_finished']}")
print(f"input->ack  p50/p99/p99.9 ms: {ms(s['ack_latency_us'])}")
print(f"input->view p50/p99/p99.9 ms: {ms(s['view_latency_us'])}")
print(f"errors {s['errors_total']} {s['errors']}  disconnects {s['disconnects']}")
PY
if [ "$GAME" != echo ]; then
  curl -s "http://$ADDR/metrics" | grep -E '^minotaur_(events_total|guest_call_seconds_(sum|count)|store_write_seconds_(sum|count)|guest_traps_total)' || true
  echo "node RSS: $(grep VmRSS /proc/$(cat "$W/pid")/status | awk '{print $2, $3}')"
fi
echo "load avg after: $(cut -d' ' -f1-3 /proc/loadavg)"
