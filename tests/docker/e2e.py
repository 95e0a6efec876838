"""End-to-end rolling upgrade of a 3-node Minotaur cluster in Docker.

Builds images v1 and v2 (`scripts/docker-image.sh`), starts three v1 containers on
a private network, seats bots (tictactoe and arena) through the published ports,
then replaces each container with a v2 one the way Swarm's `start-first` does:
start the new container, wait until it is ready, stop the old one with its grace
period (SIGTERM: it hands its sessions over). Then `docker kill`s one node and
checks its sessions resume elsewhere. Asserts no session and no acknowledged input
lost, prints the player-visible pause per session. Removes everything it made,
also on failure.
"""

import asyncio
import json
import os
import statistics
import subprocess
import sys
import time
import urllib.request

sys.path.insert(0, os.path.dirname(__file__))
from bots import Bot  # noqa: E402

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
RUN = f"mte2e{os.getpid()}"
NET = f"{RUN}-net"
TOKEN = "e2e-admin-token"
IMG = {"v1": f"minotaur-e2e:{RUN}-v1", "v2": f"minotaur-e2e:{RUN}-v2"}
made = {"containers": set(), "network": False, "images": set()}


def sh(*args, check=True, capture=True):
    r = subprocess.run(args, capture_output=capture, text=True)
    if check and r.returncode != 0:
        raise RuntimeError(f"{' '.join(args)} failed: {r.stderr.strip()}")
    return r.stdout.strip() if capture else ""


def free_port():
    import socket
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def http(port, path, token=None, timeout=2):
    req = urllib.request.Request(f"http://127.0.0.1:{port}{path}")
    if token:
        req.add_header("Authorization", f"Bearer {token}")
    with urllib.request.urlopen(req, timeout=timeout) as r:
        return r.status, r.read()


def wait_until(what, cond, timeout=60.0, every=0.2):
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        try:
            if cond():
                return
        except Exception:
            pass
        time.sleep(every)  # polling interval of a condition with a deadline
    raise TimeoutError(f"timed out waiting for {what}")


class Node:
    def __init__(self, name, alias, version):
        self.name, self.alias, self.version = name, alias, version
        self.port = free_port()

    def start(self):
        seeds = ",".join(f"node{i}:7946" for i in (1, 2, 3))
        sh("docker", "run", "-d", "--name", self.name, "--network", NET,
           "--network-alias", self.alias, "--hostname", self.name,
           "-p", f"127.0.0.1:{self.port}:7878",
           "-e", f"MINOTAUR_NODE_ID={self.name}",
           "-e", f"MINOTAUR_SEEDS={seeds}",
           "-e", f"MINOTAUR_ADVERTISE_ADDR=127.0.0.1:{self.port}",
           "-e", f"MINOTAUR_ADMIN_TOKEN={TOKEN}",
           "-e", "MINOTAUR_SHUTDOWN_GRACE_SECS=30",
           "--stop-timeout", "40", IMG[self.version])
        made["containers"].add(self.name)

    def ready(self):
        try:
            return http(self.port, "/readyz")[0] == 200
        except Exception:
            return False

    def sessions(self):
        return json.loads(http(self.port, "/admin/sessions", TOKEN)[1])

    @property
    def url(self):
        return f"ws://127.0.0.1:{self.port}/ws"


def session_ids(listing):
    items = listing["sessions"] if isinstance(listing, dict) else listing
    return {s["id"] for s in items}


def pct(xs, p):
    if not xs:
        return 0.0
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(round(p / 100 * (len(xs) - 1))))]


async def run():
    for v in ("v1", "v2"):
        print(sh("bash", f"{ROOT}/scripts/docker-image.sh", IMG[v], f"e2e-{v}"), flush=True)
        made["images"].add(IMG[v])
    sh("docker", "network", "create", NET)
    made["network"] = True
    nodes = [Node(f"{RUN}-n{i}-v1", f"node{i}", "v1") for i in (1, 2, 3)]
    for n in nodes:
        n.start()
    wait_until("3 ready v1 nodes", lambda: all(n.ready() for n in nodes), 90)
    wait_until("cluster of 3", lambda: all(
        len(json.loads(http(n.port, "/api/cluster")[1])["members"]) == 3 for n in nodes), 60)
    print("cluster of 3 v1 nodes ready", flush=True)

    urls = [n.url for n in nodes]
    bots = []
    for i in range(6):
        a = Bot(f"t{i}a", urls, "tictactoe")
        await a.connect(urls[i % 3])
        await a.send({"type": "create", "game": "tictactoe"})
        created = await a.recv(lambda m: m.get("type") == "created")
        await a.ws.close()
        await a.join(created["session"])
        b = Bot(f"t{i}b", urls, "tictactoe")
        await b.join(created["session"])
        bots += [a, b]
    for i in range(12):
        bot = Bot(f"a{i}", urls, "arena")
        await bot.join()
        bots.append(bot)
    stop = asyncio.Event()
    tasks = [asyncio.create_task(b.play(stop)) for b in bots]
    before = set()
    for n in nodes:
        before |= session_ids(n.sessions())
    print(f"{len(bots)} bots in {len(before)} sessions", flush=True)
    await asyncio.sleep(2)  # let play run before the upgrade starts (load, not sync)

    # Rolling upgrade, start-first, one node at a time.
    for i, old in enumerate(list(nodes)):
        new = Node(f"{RUN}-n{i + 1}-v2", old.alias, "v2")
        new.start()
        await asyncio.to_thread(wait_until, f"{new.name} ready", new.ready, 90)
        t0 = time.monotonic()
        await asyncio.to_thread(sh, "docker", "stop", "-t", "40", old.name)
        print(f"replaced {old.name} -> {new.name}: old stopped in {time.monotonic() - t0:.1f}s",
              flush=True)
        nodes[i] = new
        for b in bots:
            b.urls[:] = [n.url for n in nodes]
    await asyncio.sleep(3)  # keep playing on the upgraded cluster

    after = set()
    for n in nodes:
        after |= session_ids(n.sessions())
    lost = {b.session for b in bots if not b.ended} - after
    assert not lost, f"sessions lost in the upgrade: {lost}"

    upgrade_gaps = [max(b.gaps) for b in bots if b.gaps and b.game == "arena"]
    print(json.dumps({
        "phase": "rolling upgrade", "sessions_before": len(before),
        "sessions_after": len(after), "acked_inputs": sum(b.acked for b in bots),
        "redirects": sum(b.redirects for b in bots),
        "reconnects": sum(b.reconnects for b in bots),
        "pause_s": {"p50": round(pct(upgrade_gaps, 50), 3),
                    "p99": round(pct(upgrade_gaps, 99), 3),
                    "max": round(max(upgrade_gaps or [0]), 3)},
    }), flush=True)

    # Crash one node: its sessions must come back on the others.
    victim = nodes[0]
    victim_sessions = session_ids(victim.sessions())
    sh("docker", "kill", victim.name)
    t0 = time.monotonic()
    rest = nodes[1:]
    def served_elsewhere():
        return set().union(*[session_ids(n.sessions()) for n in rest])
    try:
        await asyncio.to_thread(wait_until, "takeover",
                                lambda: victim_sessions <= served_elsewhere(), 60)
    except TimeoutError:
        missing = victim_sessions - served_elsewhere()
        raise AssertionError(f"{len(missing)} of {len(victim_sessions)} sessions of the "
                             f"killed node never came back: {sorted(missing)}")
    takeover = time.monotonic() - t0
    for b in bots:
        b.urls[:] = [n.url for n in rest]
    await asyncio.sleep(3)
    stop.set()
    await asyncio.gather(*tasks)

    # No acknowledged input lost: every acked tictactoe move is on the board.
    failures = []
    for a, b in zip(bots[0:12:2], bots[1:12:2]):
        board = (b.view or a.view or {}).get("board", [])
        marks = sum(1 for c in board if c is not None)
        if marks < a.acked + b.acked:
            failures.append(f"{a.session}: {marks} marks < {a.acked + b.acked} acks")
    versions = set().union(*[set(b.versions) for b in bots])
    gaps = [max(b.gaps) for b in bots if b.gaps and b.game == "arena"]
    print(json.dumps({
        "sessions_before": len(before), "sessions_after_upgrade": len(after),
        "acked_inputs": sum(b.acked for b in bots),
        "redirects": sum(b.redirects for b in bots),
        "reconnects": sum(b.reconnects for b in bots),
        "versions_seen": sorted(versions),
        "pause_s": {"p50": round(pct(gaps, 50), 3), "p99": round(pct(gaps, 99), 3),
                    "max": round(max(gaps or [0]), 3)},
        "takeover_s": round(takeover, 2),
        "errors": {k: v for b in bots for k, v in b.errors.items()},
    }, indent=1), flush=True)
    assert "e2e-v2" in versions, "no bot ever reached a v2 node"
    assert not failures, failures


def cleanup():
    for c in made["containers"]:
        sh("docker", "rm", "-f", "-v", c, check=False)
    if made["network"]:
        sh("docker", "network", "rm", NET, check=False)
    for i in made["images"]:
        sh("docker", "rmi", "-f", i, check=False)


if __name__ == "__main__":
    ok = False
    try:
        asyncio.run(run())
        ok = True
    finally:
        cleanup()
        print(f"{int(ok)} passed, {int(not ok)} failed", flush=True)
    sys.exit(0 if ok else 1)
