#!/usr/bin/env bash
# One load run against a fresh release node on loopback (docs/BENCHMARKS.md):
#   scripts/bench-load.sh arena|tictactoe|echo|arena-pg|tictactoe-pg [node flags...]
# Starts `minotaur serve` on a temp data dir (or the bare websocket echo for `echo`, which
# the bots drive as arena players), runs minotaur-loadtest against it with PLAYERS
# (1000), DURATION (60s), RAMP (5s), prints the summary table, the node's key metrics,
# and writes the JSON summary to $OUT (default <target dir>/bench-load-<mode>.json).
# `arena-pg` / `tictactoe-pg`: the same node in cluster mode on a throwaway PostgreSQL
# (scripts/bench-pg.sh: initdb in the temp dir, port PG_PORT (25499), durable defaults),
# `--database-url ... --node-id bench-load --lease-ms 1500`.
# Every game mode also prints the bytes the store wrote per acknowledged input
# (scripts/bench-store-bytes.py): the node's write_bytes and data dir growth (redb), and
# for -pg the WAL (pg_wal_lsn_diff), pg_stat_wal, table growth and, unless WALDUMP=0, the
# WAL decoded by relation and record kind.
# Needs: cargo build --release -p minotaur-host -p minotaur-loadtest; games/dist.
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
# The build's target dir (.cargo/config.toml may move it out of the tree).
TARGET=${TARGET:-$(cd "$ROOT" && cargo metadata --format-version 1 --no-deps 2>/dev/null |
  python3 -c 'import json,sys; print(json.load(sys.stdin)["target_directory"])' || echo "$ROOT/target")}
BIN=${BIN:-$TARGET/release/minotaur}
MODE=${1:?arena|tictactoe|echo|arena-pg|tictactoe-pg}; shift
GAME=${MODE%-pg}
PLAYERS=${PLAYERS:-1000} DURATION=${DURATION:-60s} RAMP=${RAMP:-5s}
OUT=${OUT:-$TARGET/bench-load-$MODE.json}
W=$(mktemp -d)
cleanup() {
  [ -f "$W/pid" ] && kill "$(cat "$W/pid")" 2>/dev/null
  wait 2>/dev/null
  [ "$MODE" != "$GAME" ] && pg_down
  # A diagnosis run (PG_EXTRA set) keeps PostgreSQL's log.
  [ -n "${PG_EXTRA:-}" ] && cp "$W/pg-run/pg.log" "$TARGET/bench-load-$MODE.pg.log" 2>/dev/null
  rm -rf "$W"
}
trap cleanup EXIT
NODE_ARGS=() PG_ARGS=()
if [ "$MODE" != "$GAME" ]; then
  . "$ROOT/scripts/bench-pg.sh"
  pg_up "$W" "${PG_PORT:-25499}"
  NODE_ARGS=(--database-url "$PG_URL" --node-id bench-load --lease-ms 1500)
  PG_ARGS=(--pg-dir "$PG_DIR")
fi
if [ "$GAME" = echo ]; then
  "$TARGET/release/minotaur-loadtest" --serve-echo 127.0.0.1:0 > "$W/out" 2>&1 &
  pattern='echo listening on ws://'; BOTS=arena
else
  # Every bot connects from 127.0.0.1: the per-address limits are off (--max-conns-per-ip 0
  # --sessions-per-ip-per-min 0), as behind a proxy; the rest stays at its defaults.
  RUST_LOG=warn "$BIN" serve --listen 127.0.0.1:0 --admin-listen 127.0.0.1:0 \
    --max-conns-per-ip 0 --sessions-per-ip-per-min 0 \
    --games-dir "$ROOT/games/dist" --data-dir "$W/data" "${NODE_ARGS[@]}" "$@" > "$W/out" 2>&1 &
  pattern='minotaur listening on http://'; BOTS=$GAME
fi
echo $! > "$W/pid"
for _ in $(seq 600); do grep -q "$pattern" "$W/out" 2>/dev/null && break; sleep 0.1; done
ADDR=$(grep -o "$pattern[0-9.:]*" "$W/out" | head -1 | sed 's|.*//||')
[ -n "$ADDR" ] || { echo "server did not start:"; cat "$W/out"; exit 1; }
# The operator listener (`/metrics`), printed right after the player line.
ADMIN_ADDR=
if [ "$GAME" != echo ]; then
  for _ in $(seq 50); do grep -q 'admin listening on http://' "$W/out" && break; sleep 0.1; done
  ADMIN_ADDR=$(grep -o 'admin listening on http://[0-9.:]*' "$W/out" | head -1 | sed 's|.*//||')
fi
if [ "$GAME" != echo ]; then
  for _ in $(seq 100); do
    [ "$(curl -s -o /dev/null -w '%{http_code}' "http://$ADDR/readyz")" = 200 ] && break; sleep 0.1
  done
fi
snap() {
  python3 "$ROOT/scripts/bench-store-bytes.py" snap --node-pid "$(cat "$W/pid")" \
    --data-dir "$W/data" ${PG_ARGS[@]:+--pg-port "$PG_PORT" "${PG_ARGS[@]}"}
}
echo "== $MODE against $ADDR, $PLAYERS players, $DURATION (ramp $RAMP), node flags: ${NODE_ARGS[*]} $*; load avg $(cut -d' ' -f1-3 /proc/loadavg)"
[ "$GAME" != echo ] && snap > "$W/before.json"
"$TARGET/release/minotaur-loadtest" --url "ws://$ADDR/ws" --players "$PLAYERS" \
  --game "$BOTS" --duration "$DURATION" --ramp "$RAMP" --json > "$OUT"
[ "$GAME" != echo ] && snap > "$W/after.json"
echo "load avg at the end of the run: $(cut -d' ' -f1-3 /proc/loadavg)"
python3 - "$OUT" <<'PY'
import json, sys
s = json.load(open(sys.argv[1]))
ms = lambda l: " / ".join(f"{l[k]/1000:.1f}" for k in ("p50", "p99", "p999"))
print(f"seated {s['seated']}  peak connected {s['peak_connected']}  inputs/s {s['inputs_per_s']:.0f}  "
      f"acks {s['acks']} ({s['acks_per_s']:.0f}/s)  unacked at stop {s['inputs_unacked']}  games finished {s['games_finished']}")
print(f"input->ack  p50/p99/p99.9 ms: {ms(s['ack_latency_us'])}")
print(f"input->view p50/p99/p99.9 ms: {ms(s['view_latency_us'])}")
print(f"errors {s['errors_total']} {s['errors']}  disconnects {s['disconnects']}")
PY
if [ "$GAME" != echo ]; then
  curl -s "http://$ADMIN_ADDR/metrics" | grep -E '^minotaur_(events_total|guest_call_seconds_(sum|count)|store_write_seconds_(sum|count)|guest_traps_total)' || true
  echo "node RSS: $(grep VmRSS /proc/$(cat "$W/pid")/status | awk '{print $2, $3}')"
  python3 "$ROOT/scripts/bench-store-bytes.py" report "$W/before.json" "$W/after.json" "$OUT" \
    --game "$GAME" "${PG_ARGS[@]}" \
    $([ ${#PG_ARGS[@]} -gt 0 ] && [ "${WALDUMP:-1}" != 0 ] && echo --waldump "$PGBIN")
fi
echo "load avg after: $(cut -d' ' -f1-3 /proc/loadavg)"
