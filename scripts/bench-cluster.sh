#!/usr/bin/env bash
# Handoff figures on a 3-node cluster on one throwaway PostgreSQL, loopback (docs/BENCHMARKS.md):
#   scripts/bench-cluster.sh drain     1000 tictactoe sessions on node a, SIGTERM a: its drain
#                                      log (took_ms, pause p50/p99) and the time until b + c serve all
#   scripts/bench-cluster.sh takeover  the same (one player seated in each session), kill -9 a:
#                                      time until b + c serve every session, and the phases
# Needs <target dir>/release/minotaur (cargo build --release -p minotaur-host), games/dist, python3
# with `websockets` (takeover) and PostgreSQL 15 binaries (scripts/bench-pg.sh: initdb in a temp
# dir, durable defaults, port PG_PORT, default 25498: below the ephemeral port range).
# SESSIONS=n changes the count; LEASE_MS (1500) the lease; ARGS="..." adds flags to every node;
# BIN=path runs another binary; PORT=p the player ports p..p+2 (default 7151-7153);
# PERF=1 (takeover) records b and c with perf for 5 s after the kill.
# b and c start once the sessions are on a (the nodes rebalance 8 sessions per 5 s round
# towards the least loaded, so a may have given up to 8 when the signal goes: printed).
# Prints the load average before and after the measured step.
set -u
ROOT=$(cd "$(dirname "$0")/.." && pwd)
TARGET=${TARGET:-$(cd "$ROOT" && cargo metadata --format-version 1 --no-deps 2>/dev/null |
  python3 -c 'import json,sys; print(json.load(sys.stdin)["target_directory"])' || echo "$ROOT/target")}
BIN=${BIN:-$TARGET/release/minotaur}
GAMES=$ROOT/games/dist
MODE=${1:-drain}
N=${SESSIONS:-1000}
P0=${PORT:-7151}
PA=$P0 PB=$((P0 + 1)) PC=$((P0 + 2))
W=$(mktemp -d)
. "$ROOT/scripts/bench-pg.sh"
cleanup() {
  for id in a b c; do [ -f "$W/$id.pid" ] && kill -KILL "$(cat "$W/$id.pid")" 2>/dev/null; done
  wait 2>/dev/null
  pg_down
  rm -rf "$W/pg" "$W"/[abc]/
  echo "logs in $W"
}
trap cleanup EXIT
pg_up "$W" "${PG_PORT:-25498}" || exit 1
start() { # id port
  local id=$1 p=$2
  RUST_LOG=info $BIN serve --database-url "$PG_URL" --node-id "$id" \
    --listen 127.0.0.1:$p --advertise-addr 127.0.0.1:$p --admin-listen 127.0.0.1:0 \
    --lease-ms "${LEASE_MS:-1500}" --max-conns-per-ip 0 --sessions-per-ip-per-min 0 \
    --games-dir "$GAMES" --data-dir "$W/$id" ${ARGS:-} > "$W/$id.out" 2> "$W/$id.err" &
  echo $! > "$W/$id.pid"; disown
}
count() { curl -s "127.0.0.1:$1/api/sessions" | python3 -c 'import json,sys
try: print(len(json.load(sys.stdin)))
except Exception: print(0)'; }
ready() { for p in "$@"; do
  for i in $(seq 300); do [ "$(curl -s -o /dev/null -w '%{http_code}' 127.0.0.1:$p/readyz)" = 200 ] && break; sleep 0.1; done
done; }
# a alone while its sessions are created (the nodes rebalance: a node above 1.25x the mean
# hands 8 sessions per 5 s round to the least loaded), b and c once they are all on a.
start a $PA; ready $PA
t0=$(date +%s.%N)
N=$N PORT=$PA python3 - <<'PY'
import http.client, os
c = http.client.HTTPConnection("127.0.0.1", int(os.environ["PORT"]))
for _ in range(int(os.environ["N"])):
    c.request("POST", "/api/sessions", body='{"game":"tictactoe"}', headers={"content-type": "application/json"})
    r = c.getresponse(); r.read()
    if r.status >= 300:
        raise SystemExit(f"create: HTTP {r.status}")
PY
echo "created $N sessions in $(echo "$(date +%s.%N) - $t0" | bc) s; on a: $(count $PA)"
if [ "$MODE" = takeover ]; then
# Seat one player in each, so every session has acknowledged something (a claimed session
# that was never written is ended, not started).
PORT=$PA python3 - <<'PY'
import asyncio, json, os, urllib.request
import websockets
port = os.environ["PORT"]
ids = [s["id"] for s in json.load(urllib.request.urlopen(f"http://127.0.0.1:{port}/api/sessions"))]
async def join(sid, sem):
    async with sem, websockets.connect(f"ws://127.0.0.1:{port}/ws") as ws:
        await ws.send(json.dumps({"type": "join", "session": sid, "name": "bench"}))
        while json.loads(await ws.recv())["type"] != "joined":
            pass
async def main():
    sem = asyncio.Semaphore(32)
    await asyncio.gather(*(join(i, sem) for i in ids))
asyncio.run(main())
print(f"seated a player in {len(ids)} sessions")
PY
fi
start b $PB; start c $PC; ready $PB $PC
echo "ready: $(for p in $PA $PB $PC; do curl -s 127.0.0.1:$p/readyz; echo -n ' '; done)"
echo "nodes: $(pg_sql "SELECT string_agg(id || ' ' || status, ', ' ORDER BY id) FROM minotaur_nodes")"
sleep 1
echo "on a: $(count $PA), b: $(count $PB), c: $(count $PC)"
echo "in the database: $(pg_sql "SELECT count(*) FILTER (WHERE NOT ended) || ' live, ' || count(*) FILTER (WHERE doc IS NOT NULL) || ' with a document, owners ' || (SELECT string_agg(owner || ' ' || n, ', ') FROM (SELECT owner, count(*) n FROM minotaur_sessions WHERE NOT ended GROUP BY owner) o) FROM minotaur_sessions")"
echo "load average before: $(cut -d' ' -f1-3 /proc/loadavg)"
# Poll b and c every 50 ms from one process until they serve all N (or 60 s).
poll() {
  N=$N T1=$1 PB=$PB PC=$PC python3 - <<'PY'
import json, os, time, urllib.request
n, t1 = int(os.environ["N"]), float(os.environ["T1"])
def count(port):
    try:
        return len(json.load(urllib.request.urlopen(f"http://127.0.0.1:{port}/api/sessions", timeout=2)))
    except Exception:
        return 0
while True:
    nb, nc = count(os.environ["PB"]), count(os.environ["PC"])
    now = time.time()
    if nb + nc >= n or now - t1 > 60:
        break
    time.sleep(0.05)
print(f"b {nb} + c {nc} sessions serving, {now - t1:.3f} s after the signal")
PY
}
if [ -n "${PERF:-}" ]; then
  perf record -F 999 -g -o "$W/perf.data" -p "$(cat "$W/b.pid"),$(cat "$W/c.pid")" -- sleep 5 > /dev/null 2>&1 &
fi
t1=$(date +%s.%N)
if [ "$MODE" = drain ]; then
  kill -TERM "$(cat "$W/a.pid")"
  poll "$t1"
  for i in $(seq 600); do kill -0 "$(cat "$W/a.pid")" 2>/dev/null || break; sleep 0.1; done
  echo "node a exited after $(echo "$(date +%s.%N) - $t1" | bc) s"
  grep -a "drain" "$W/a.err" | sed 's/\x1b\[[0-9;]*m//g' | grep -v "handed_over session" | tail -3
  # the pauses of this drain (not of an earlier rebalancing round)
  sed -n '/drain: handing sessions over/,$p' "$W/a.err" | grep -a -o "pause_ms=[0-9]*" | cut -d= -f2 | sort -n | python3 -c '
import sys
v=[int(x) for x in sys.stdin]
if v:
    q=lambda p: v[min(len(v)-1,int(p*len(v)))]
    print(f"handed over: {len(v)}; pause ms p50 {q(0.5)} p90 {q(0.9)} p99 {q(0.99)} max {v[-1]}")
'
  # pause_ms ends when a's players are told `moved`; the session serves again once the
  # target has loaded and started it: freeze -> `activated` on b or c, per session.
  python3 - "$W/a.err" "$W/b.err" "$W/c.err" <<'PY'
import re, sys
from datetime import datetime
def lines(path):
    for raw in open(path, errors="replace"):
        line = re.sub(r"\x1b\[[0-9;]*m", "", raw)
        m = re.match(r"(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d+)Z", line)
        if m:
            yield datetime.fromisoformat(m.group(1)[:26] + "+00:00").timestamp(), line
froze, drain = {}, False
for t, line in lines(sys.argv[1]):
    drain = drain or "drain: handing sessions over" in line
    m = re.search(r"handed_over session=(\S+) .*pause_ms=(\d+)", line)
    if drain and m:
        froze[m.group(1)] = t - int(m.group(2)) / 1000
serving = []
for path in sys.argv[2:]:
    for t, line in lines(path):
        m = re.search(r"activated session=(\S+) .*why=handoff", line)
        if m and m.group(1) in froze:
            serving.append(1000 * (t - froze[m.group(1)]))
v = sorted(serving)
if v:
    q = lambda p: v[min(len(v) - 1, int(p * len(v)))]
    print(f"freeze -> serving on the target ({len(v)} sessions): ms p50 {q(0.5):.0f} p90 {q(0.9):.0f} p99 {q(0.99):.0f} max {v[-1]:.0f}")
PY
else
  kill -KILL "$(cat "$W/a.pid")"
  poll "$t1"
fi
echo "load average after: $(cut -d' ' -f1-3 /proc/loadavg)"
# Phases from the survivors' logs, relative to the signal.
T1=$t1 python3 - "$W/b.err" "$W/c.err" <<'PY'
import os, re, sys
from datetime import datetime
t1 = float(os.environ["T1"])
def at(line):
    m = re.match(r"(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d+)Z", line)
    return datetime.fromisoformat(m.group(1)[:26] + "+00:00").timestamp() - t1 if m else None
for path in sys.argv[1:]:
    first, last, n = {}, {}, {}
    for raw in open(path, errors="replace"):
        line = re.sub(r"\x1b\[[0-9;]*m", "", raw)
        t = at(line)
        if t is None or t < 0:
            continue
        for key, pat in [("claims", "takeover: claimed sessions"), ("takeover activations", "why=takeover"),
                         ("handoff activations", "why=handoff")]:
            if pat in line:
                first.setdefault(key, t)
                last[key] = t
                n[key] = n.get(key, 0) + 1
    node = os.path.basename(path).split(".")[0]
    parts = [f"{k} {n[k]} at {first[k]:.2f}..{last[k]:.2f} s" for k in first]
    print(f"{node}: " + ("; ".join(parts) if parts else "nothing logged") + " after the signal")
PY
echo "in the database: $(pg_sql "SELECT string_agg(owner || ' ' || n, ', ') FROM (SELECT owner, count(*) n FROM minotaur_sessions WHERE NOT ended GROUP BY owner ORDER BY owner) o")"
