#!/usr/bin/env bash
# Handoff figures on a 3-process cluster on loopback (docs/BENCHMARKS.md):
#   scripts/bench-cluster.sh drain     1000 tictactoe sessions on node a, SIGTERM a, read its drain log
#   scripts/bench-cluster.sh takeover  the same, kill -9 a, time until b + c serve every session
# Needs target/release/minotaur (cargo build --release -p minotaur-host) and games/dist.
# SESSIONS=n changes the count; ARGS="--lease-ms 2000" adds flags to every node; BIN=path runs another binary (e.g. a copy of the build before a
# change, to compare in one sitting). Ports 7151-7153 (players), 7251-7253 (gossip), 7351-7353 (peer).
# Prints the load average before and after the measured step, and for takeover the phases
# (claims started, majorities, last activation) from the survivors' logs, relative to the kill.
set -u
ROOT=$(cd "$(dirname "$0")/.." && pwd)
BIN=${BIN:-$ROOT/target/release/minotaur}
GAMES=$ROOT/games/dist
MODE=${1:-drain}
N=${SESSIONS:-1000}
W=$(mktemp -d)
start() { # id port
  local id=$1 p=$2
  RUST_LOG=info,minotaur::activation=info $BIN serve --node-id $id --listen 127.0.0.1:$p \
    --games-dir $GAMES --data-dir $W/$id \
    --gossip-listen 127.0.0.1:$((p+100)) --peer-listen 127.0.0.1:$((p+200)) \
    --seeds 127.0.0.1:7251,127.0.0.1:7252,127.0.0.1:7253 ${ARGS:-} > $W/$id.out 2> $W/$id.err &
  echo $! > $W/$id.pid
}
start a 7151; start b 7152; start c 7153
for id in a b c; do
  for i in $(seq 100); do grep -q "listening" $W/$id.out 2>/dev/null && break; sleep 0.1; done
done
for p in 7151 7152 7153; do
  for i in $(seq 100); do [ "$(curl -s -o /dev/null -w '%{http_code}' 127.0.0.1:$p/readyz)" = 200 ] && break; sleep 0.1; done
done
echo "ready: $(for p in 7151 7152 7153; do curl -s 127.0.0.1:$p/readyz; echo -n ' '; done)"
t0=$(date +%s.%N)
for i in $(seq $N); do
  curl -s -o /dev/null -X POST -H 'content-type: application/json' -d '{"game":"tictactoe"}' 127.0.0.1:7151/api/sessions
done
echo "created $N sessions in $(echo "$(date +%s.%N) - $t0" | bc) s; on a: $(curl -s 127.0.0.1:7151/api/sessions | python3 -c 'import json,sys; print(len(json.load(sys.stdin)))')"
sleep 3
echo "load average before: $(cut -d' ' -f1-3 /proc/loadavg)"
t1=$(date +%s.%N)
if [ "$MODE" = drain ]; then
kill -TERM $(cat $W/a.pid)
for i in $(seq 600); do kill -0 $(cat $W/a.pid) 2>/dev/null || break; sleep 0.1; done
echo "node a exited after $(echo "$(date +%s.%N) - $t1" | bc) s"
grep -a "drain" $W/a.err | sed 's/\x1b\[[0-9;]*m//g' | tail -3
grep -a -o "pause_ms=[0-9]*" $W/a.err | cut -d= -f2 | sort -n | python3 -c '
import sys
v=[int(x) for x in sys.stdin]
if v:
    q=lambda p: v[min(len(v)-1,int(p*len(v)))]
    print(f"handed over: {len(v)}; pause ms p50 {q(0.5)} p99 {q(0.99)} max {v[-1]}")
'
echo "on b: $(curl -s 127.0.0.1:7152/api/sessions | python3 -c 'import json,sys; print(len(json.load(sys.stdin)))'), on c: $(curl -s 127.0.0.1:7153/api/sessions | python3 -c 'import json,sys; print(len(json.load(sys.stdin)))')"
else
# A session is written (and so replicated) after its first event: seat one player in each.
python3 - <<'PY'
import asyncio, json, urllib.request
import websockets
ids = [s["id"] for s in json.load(urllib.request.urlopen("http://127.0.0.1:7151/api/sessions"))]
async def join(sid, sem):
    async with sem, websockets.connect("ws://127.0.0.1:7151/ws") as ws:
        await ws.send(json.dumps({"type": "join", "session": sid, "name": "bench"}))
        while json.loads(await ws.recv())["type"] != "joined":
            pass
async def main():
    sem = asyncio.Semaphore(32)
    await asyncio.gather(*(join(i, sem) for i in ids))
asyncio.run(main())
print(f"seated a player in {len(ids)} sessions")
PY
sleep 3
echo "load average before: $(cut -d' ' -f1-3 /proc/loadavg)"
if [ -n "${PERF:-}" ]; then # PERF=1: profile b and c for 5 s after the kill
  perf record -F 999 -g -o $W/perf.data -p $(cat $W/b.pid),$(cat $W/c.pid) -- sleep 5 > /dev/null 2>&1 &
fi
t1=$(date +%s.%N)
kill -KILL $(cat $W/a.pid)
# Poll both survivors every 50 ms from one process (a curl + python pair per poll costs
# more than the resolution we want).
N=$N T1=$t1 python3 - <<'PY'
import json, os, time, urllib.request
n, t1 = int(os.environ["N"]), float(os.environ["T1"])
def count(port):
    try:
        return len(json.load(urllib.request.urlopen(f"http://127.0.0.1:{port}/api/sessions", timeout=2)))
    except Exception:
        return 0
while True:
    nb, nc = count(7152), count(7153)
    now = time.time()
    if nb + nc >= n or now - t1 > 60:
        break
    time.sleep(0.05)
print(f"after kill -9: b {nb} + c {nc} sessions serving, {now - t1:.3f} s")
PY
T1=$t1 python3 - $W/b.err $W/c.err <<'PY'
import os, re, sys
from datetime import datetime
t1 = float(os.environ["T1"])
def at(line):
    m = re.match(r"(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d+)Z", line)
    return datetime.fromisoformat(m.group(1) + "+00:00").timestamp() - t1 if m else None
for path in sys.argv[1:]:
    first = {}
    last = {}
    for raw in open(path, errors="replace"):
        line = re.sub(r"\x1b\[[0-9;]*m", "", raw)
        t = at(line)
        if t is None or t < 0:
            continue
        for key, pat in [("claim", "takeover: owner gone"), ("majority", "takeover: majority reached"), ("activated", "why=takeover")]:
            if pat in line:
                first.setdefault(key, t)
                last[key] = t
    node = os.path.basename(path).split(".")[0]
    fmt = lambda k: f"{first[k]:.2f}..{last[k]:.2f}" if k in first else "-"
    print(f"{node}: claims {fmt('claim')} s, majorities {fmt('majority')} s, activations {fmt('activated')} s after the kill")
PY
fi
echo "load average after: $(cut -d' ' -f1-3 /proc/loadavg)"
# Wait until every node is gone (a draining node holds its ports for up to its grace period),
# so that the next run does not gossip with this one.
for id in a b c; do
  kill $(cat $W/$id.pid) 2>/dev/null
  for i in $(seq 150); do kill -0 $(cat $W/$id.pid) 2>/dev/null || break; sleep 0.1; done
done
echo "logs in $W"
