"""End-to-end rolling upgrade of a 3-node Minotaur cluster in Docker.

    e2e.py compose V1_IMAGE V2_IMAGE   # plain containers on a private bridge network
    e2e.py swarm   V1_IMAGE V2_IMAGE   # deploy/stack.yml on a single-node swarm
                                       # (opt-in: see docs/OPERATIONS.md, "Docker Swarm")

The images are built by `run.sh` (`scripts/docker-image.sh`; v2 differs only in the
release label it reports). Both scenarios start three v1 nodes, seat bots
(tictactoe and arena) through published ports on 127.0.0.1, replace the nodes one
at a time with v2 the way Swarm's `start-first` does (start the new one, wait until
it is ready, stop the old one with its grace period: SIGTERM, it hands its sessions
over), then `docker kill` one node and wait for its sessions to be taken over.

Asserted: the set of sessions after the upgrade equals the set before (by id);
every bot ends up connected to a v2 node; every acknowledged tic-tac-toe move is
on its board with its mark (after the upgrade and again after the kill); the
killed node's sessions come back on the others; the games then play to their end.
Printed: sessions, acked inputs, redirects, resume retries by cause, errors by
phase, player-visible pause per arena session (p50/p99/max) and takeover time.
Everything the script makes is removed, also on failure (images: by run.sh).
"""

import asyncio
import json
import os
import subprocess
import sys
import time
import urllib.request

sys.path.insert(0, os.path.dirname(__file__))
import bots as botmod  # noqa: E402
from bots import Bot  # noqa: E402

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
RUN = f"mte2e{os.getpid()}"
TOKEN = "e2e-admin-token"
N_TTT, N_ARENA = 6, 12  # tic-tac-toe games (2 bots each), arena bots


def log(*a):
    print(*a, flush=True)


def sh(*args, check=True, env=None):
    r = subprocess.run(args, capture_output=True, text=True, env=env)
    if check and r.returncode != 0:
        raise RuntimeError(f"{' '.join(args)} failed: {r.stderr.strip()}")
    return r.stdout.strip()


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
    """Poll `cond` until it holds; fail after `timeout` seconds."""
    end = time.monotonic() + timeout
    last = None
    while time.monotonic() < end:
        try:
            if cond():
                return
        except Exception as e:
            last = e
        time.sleep(every)  # polling interval of a condition with a deadline
    raise TimeoutError(f"timed out waiting for {what}" + (f" (last error: {last})" if last else ""))


async def await_until(what, cond, timeout=60.0):
    await asyncio.to_thread(wait_until, what, cond, timeout)


def pct(xs, p):
    if not xs:
        return 0.0
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(round(p / 100 * (len(xs) - 1))))]


def pauses(bots, phase):
    """Per arena session, the longest gap between two acks during `phase`."""
    per = [max(g for ph, g in b.gaps if ph == phase) for b in bots
           if b.game == "arena" and any(ph == phase for ph, _ in b.gaps)]
    return {"n": len(per), "p50": round(pct(per, 50), 3), "p99": round(pct(per, 99), 3),
            "max": round(max(per or [0]), 3)}


# ---- clusters ---------------------------------------------------------------------


class Compose:
    """Three containers on a private bridge network, each publishing its player port
    on 127.0.0.1; a replacement keeps the network alias (node1..3, the seed list)."""

    name = "compose"

    def __init__(self, images):
        self.images = images
        self.net = f"{RUN}-net"
        self.containers = set()
        self.network = False
        self.nodes = []  # [(container, port)]

    def start_node(self, i, version):
        name, port = f"{RUN}-n{i}-{version}", free_port()
        seeds = ",".join(f"node{j}:7946" for j in (1, 2, 3))
        sh("docker", "run", "-d", "--name", name, "--network", self.net,
           "--network-alias", f"node{i}", "--hostname", name,
           "-p", f"127.0.0.1:{port}:7878",
           "-e", f"MINOTAUR_NODE_ID={name}", "-e", f"MINOTAUR_SEEDS={seeds}",
           "-e", f"MINOTAUR_ADVERTISE_ADDR=127.0.0.1:{port}",
           "-e", f"MINOTAUR_ADMIN_TOKEN={TOKEN}", "-e", "MINOTAUR_SHUTDOWN_GRACE_SECS=30",
           "--stop-timeout", "40", self.images[version])
        self.containers.add(name)
        return name, port

    @staticmethod
    def ready(port):
        try:
            return http(port, "/readyz")[0] == 200
        except Exception:
            return False

    def up(self):
        sh("docker", "network", "create", self.net)
        self.network = True
        self.nodes = [self.start_node(i, "v1") for i in (1, 2, 3)]
        wait_until("3 ready v1 nodes", lambda: all(self.ready(p) for _, p in self.nodes), 90)
        wait_until("cluster of 3", lambda: all(
            len(json.loads(http(p, "/api/cluster")[1])["members"]) == 3 for _, p in self.nodes), 60)

    def urls(self):
        return [f"ws://127.0.0.1:{p}/ws" for _, p in self.nodes]

    def sessions(self):
        """Session ids per container."""
        out = {}
        for name, port in self.nodes:
            items = json.loads(http(port, "/admin/sessions", TOKEN)[1])
            items = items["sessions"] if isinstance(items, dict) else items
            out[name] = {s["id"] for s in items}
        return out

    def replicas(self):
        """Session ids each container holds a replica of (`GET /api/cluster`)."""
        return {name: {r["session"] for r in json.loads(http(port, "/api/cluster")[1])["replicas"]}
                for name, port in self.nodes}

    async def upgrade(self, on_step):
        for i in range(3):
            old, _ = self.nodes[i]
            new, port = self.start_node(i + 1, "v2")
            await await_until(f"{new} ready", lambda: self.ready(port), 90)
            await on_step(i)
            t0 = time.monotonic()
            await asyncio.to_thread(sh, "docker", "stop", "-t", "40", old)
            log(f"replaced {old} -> {new}: old stopped in {time.monotonic() - t0:.1f}s")
            self.nodes[i] = (new, port)
            yield

    def kill_one(self):
        name, _ = self.nodes.pop(0)
        sh("docker", "kill", name)
        return name

    def members(self):
        """Each node's view of the membership: {node: {member: status}}."""
        return {name: {m["id"]: m["status"] for m in
                       json.loads(http(port, "/api/cluster")[1])["members"]}
                for name, port in self.nodes}

    def down(self, keep_logs=False):
        if keep_logs:
            d = f"/tmp/{RUN}-logs"
            os.makedirs(d, exist_ok=True)
            for c in self.containers:
                with open(f"{d}/{c}.log", "w") as f:
                    subprocess.run(["docker", "logs", c], stdout=f, stderr=subprocess.STDOUT)
            log(f"[compose] container logs kept in {d}")
        for c in self.containers:
            sh("docker", "rm", "-f", "-v", c, check=False)
        if self.network:
            sh("docker", "network", "rm", self.net, check=False)


class Swarm:
    """deploy/stack.yml on a single-node swarm made for this run (and left after it).
    Players reach the service through one published (ingress) port on 127.0.0.1;
    sessions are listed inside each task with `minotaur sessions`."""

    name = "swarm"
    STACK = "mte2e"
    SERVICE = "mte2e_minotaur"

    def __init__(self, images):
        # By image ID: a task's image given by tag is pulled first (and the pull fails
        # with no registry) even with `--resolve-image never`; an ID is never pulled.
        self.images = {v: sh("docker", "image", "inspect", "-f", "{{.Id}}", img)
                       for v, img in images.items()}
        self.port = free_port()
        self.joined = False
        self.deployed = False
        self.nodes = []

    def tasks(self):
        """Running containers of the service (container id -> task name)."""
        out = sh("docker", "ps", "--filter", f"label=com.docker.swarm.service.name={self.SERVICE}",
                 "--format", '{{.ID}} {{.Label "com.docker.swarm.task.name"}} {{.Image}}')
        return [line.split() for line in out.splitlines() if line.strip()]

    def healthy(self, cid):
        return sh("docker", "inspect", "-f", "{{.State.Health.Status}}", cid,
                  check=False) == "healthy"

    def up(self):
        state = sh("docker", "info", "-f", "{{.Swarm.LocalNodeState}}")
        if state != "inactive":
            raise RuntimeError(f"this engine is already in a swarm ({state}): not touching it")
        sh("docker", "swarm", "init", "--advertise-addr", "127.0.0.1")
        self.joined = True
        env = dict(os.environ, MINOTAUR_IMAGE=self.images["v1"], MINOTAUR_ADMIN_TOKEN=TOKEN,
                   MINOTAUR_PORT=str(self.port))
        self.deployed = True
        sh("docker", "stack", "deploy", "--resolve-image", "never", "-c",
           f"{ROOT}/deploy/stack.yml", self.STACK, env=env)
        wait_until("3 healthy v1 tasks", lambda: len(self.tasks()) == 3 and all(
            self.healthy(t[0]) for t in self.tasks()), 120)
        wait_until("cluster of 3 through the ingress", lambda: len(json.loads(
            http(self.port, "/api/cluster")[1])["members"]) == 3, 60)

    def urls(self):
        return [f"ws://127.0.0.1:{self.port}/ws"]

    def sessions(self):
        out = {}
        for cid, task, _ in self.tasks():
            table = sh("docker", "exec", cid, "/minotaur", "sessions")
            out[task] = {line.split()[0] for line in table.splitlines()[1:] if line.strip()}
        return out

    async def upgrade(self, on_step):
        # One `docker service update`; Swarm replaces the tasks one at a time,
        # start-first (update_config in deploy/stack.yml). Steps are observed.
        await on_step(0)
        t0 = time.monotonic()
        proc = await asyncio.create_subprocess_exec(
            "docker", "service", "update", "--detach=false", "--no-resolve-image",
            "--image", self.images["v2"], self.SERVICE,
            stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.PIPE)
        seen = 0
        while proc.returncode is None:
            try:
                await asyncio.wait_for(proc.wait(), 0.5)
            except asyncio.TimeoutError:
                pass
            v2 = sum(1 for _, _, img in await asyncio.to_thread(self.tasks)
                     if img == self.images["v2"])
            while seen < min(v2, 3):
                seen += 1
                log(f"swarm: {seen} v2 task(s) running after {time.monotonic() - t0:.1f}s")
                if seen < 3:
                    await on_step(seen)
                yield
        err = (await proc.stderr.read()).decode()
        if proc.returncode != 0:
            raise RuntimeError(f"docker service update failed: {err.strip()}")
        await await_until("3 healthy v2 tasks", lambda: len(self.tasks()) == 3 and all(
            img == self.images["v2"] and self.healthy(cid) for cid, _, img in self.tasks()), 120)
        log(f"swarm: service updated in {time.monotonic() - t0:.1f}s")
        while seen < 3:
            seen += 1
            yield

    def replicas(self):
        return None  # not visible from outside the tasks without the (unreachable) HTTP port

    def kill_one(self):
        cid, task, _ = self.tasks()[0]
        sh("docker", "kill", cid)
        return task

    def members(self):
        return None

    def down(self, keep_logs=False):
        if self.deployed:
            sh("docker", "stack", "rm", self.STACK, check=False)
            wait_until("stack removed", lambda: not self.tasks() and not sh(
                "docker", "network", "ls", "-q", "--filter", f"name={self.STACK}_"), 60)
        if self.joined:
            sh("docker", "swarm", "leave", "--force", check=False)
        # A leave can leave task containers behind (seen on this engine): ours by label.
        left = sh("docker", "ps", "-aq", "--filter",
                  f"label=com.docker.swarm.service.name={self.SERVICE}", check=False)
        for cid in left.split():
            sh("docker", "rm", "-f", "-v", cid, check=False)


# ---- the scenario -------------------------------------------------------------------


async def scenario(cluster):
    botmod.PHASE[0] = "setup"
    cluster.up()
    log(f"[{cluster.name}] cluster of 3 v1 nodes ready")

    urls = cluster.urls()
    bots, games = [], []
    for i in range(N_TTT):
        a = Bot(f"t{i}a", urls, "tictactoe")
        await a.connect(urls[i % len(urls)])
        await a.send({"type": "create", "game": "tictactoe"})
        created = await a.recv(lambda m: m.get("type") == "created")
        await a.ws.close()
        await a.join(created["session"])
        b = Bot(f"t{i}b", urls, "tictactoe")
        await b.join(created["session"])
        bots += [a, b]
        games.append((a, b))
    for i in range(N_ARENA):
        bot = Bot(f"a{i}", urls, "arena")
        await bot.join()
        bots.append(bot)
    ttt = [b for g in games for b in g]
    stop = asyncio.Event()
    tasks = [asyncio.create_task(b.play(stop)) for b in bots]

    def check_tasks():
        for t in tasks:
            if t.done() and t.exception():
                raise t.exception()

    async def wait_bots(what, cond, timeout=60):
        end = time.monotonic() + timeout
        while not cond():
            check_tasks()
            if time.monotonic() > end:
                raise TimeoutError(f"timed out waiting for {what}")
            await asyncio.sleep(0.1)  # polling interval of a condition with a deadline

    def budget(n):
        for b in ttt:
            b.move_budget = n

    def acked_moves_lost():
        return {b.name: b.marks_ok() for b in ttt if b.marks_ok()}

    # Every tic-tac-toe player makes its first move before the upgrade.
    budget(1)
    await wait_bots("first tic-tac-toe moves", lambda: all(len(b.acked_cells) >= 1 for b in ttt))
    await wait_bots("arena acks", lambda: all(b.acked >= 5 for b in bots if b.game == "arena"))
    before_map = await asyncio.to_thread(cluster.sessions)
    before = set().union(*before_map.values())
    want = {b.session for b in bots}
    assert want <= before, f"bots' sessions missing from the nodes: {want - before}"
    log(f"[{cluster.name}] {len(bots)} bots in {len(before)} sessions "
        f"({', '.join(f'{k}: {len(v)}' for k, v in sorted(before_map.items()))})")

    # Rolling upgrade. The second tic-tac-toe move is allowed once the first new node
    # is ready, so those moves race the first drain.
    botmod.PHASE[0] = "upgrade"
    t_up = time.monotonic()

    async def on_step(i):
        check_tasks()
        if i == 0:
            budget(2)

    async for _ in cluster.upgrade(on_step):
        check_tasks()
        for b in bots:
            b.urls[:] = cluster.urls()
    up_took = time.monotonic() - t_up
    botmod.PHASE[0] = "after-upgrade"
    await wait_bots("every bot on a v2 node, every second move acked", lambda: all(
        b.version == "e2e-v2" and not b.resuming and not b.url_hint for b in bots) and all(
        len(b.acked_cells) >= 2 for b in ttt), 60)
    after_map = await asyncio.to_thread(cluster.sessions)
    after = set().union(*after_map.values())
    ended = [b.name for b in bots if b.ended]
    assert not ended, f"games ended during the upgrade: {ended}"
    assert after == before, (f"sessions changed in the upgrade: lost {sorted(before - after)}, "
                             f"new {sorted(after - before)}")
    lost = acked_moves_lost()
    assert not lost, f"acknowledged moves missing from the board after the upgrade: {lost}"
    upgrade = {
        "phase": "rolling upgrade", "took_s": round(up_took, 1),
        "sessions_before": len(before), "sessions_after": len(after),
        "sessions_same_ids": after == before,
        "acked_inputs": sum(b.acked for b in bots),
        "acked_moves_checked": sum(len(b.acked_cells) for b in ttt),
        "redirects": sum(b.redirects for b in bots),
        "reconnects": sum(b.reconnects for b in bots),
        "pause_s": pauses(bots, "upgrade"),
    }
    log(f"[{cluster.name}] " + json.dumps(upgrade))

    # Before a crash can be survived, every session must have a replica on another
    # node (replication factor 1), also the idle ones whose replica was on a node
    # the upgrade replaced.
    def unreplicated():
        held = cluster.replicas()
        if held is None:
            return set()
        owners = cluster.sessions()
        return {s: owner for owner, ss in owners.items() for s in ss
                if not any(s in r for node, r in held.items() if node != owner)}
    try:
        await await_until("a replica of every session on another node",
                          lambda: not unreplicated(), 15)
    except TimeoutError:
        missing = await asyncio.to_thread(unreplicated)
        idle = {b.session for b in ttt}
        raise AssertionError(
            f"{len(missing)} sessions have no replica on any other node after the upgrade "
            f"(session -> owner): {missing}; idle tic-tac-toe sessions among them: "
            f"{sorted(set(missing) & idle)}; membership as each node sees it: "
            f"{await asyncio.to_thread(cluster.members)}")

    # Crash one node: its sessions must come back on the others.
    botmod.PHASE[0] = "kill"
    reconnects = {b.name: b.reconnects for b in bots}
    victim = await asyncio.to_thread(cluster.kill_one)
    victim_sessions = after_map[victim]
    hit = [b for b in bots if b.session in victim_sessions]
    t0 = time.monotonic()
    for b in bots:
        b.urls[:] = cluster.urls()

    def served():
        return set().union(*cluster.sessions().values())

    try:
        await await_until("takeover", lambda: victim_sessions <= served(), 60)
    except TimeoutError:
        missing = victim_sessions - served()
        raise AssertionError(f"{len(missing)} of {len(victim_sessions)} sessions of the "
                             f"killed node never came back: {sorted(missing)}")
    takeover = time.monotonic() - t0
    await wait_bots("the killed node's players seated again", lambda: all(
        b.reconnects > reconnects[b.name] and not b.resuming and not b.url_hint
        for b in hit), 60)
    after_kill = await asyncio.to_thread(served)
    assert after_kill == before, (f"sessions changed in the takeover: lost "
                                  f"{sorted(before - after_kill)}, new {sorted(after_kill - before)}")
    lost = acked_moves_lost()
    assert not lost, f"acknowledged moves missing from the board after the takeover: {lost}"

    # The games go on to their end on the upgraded cluster.
    botmod.PHASE[0] = "finish"
    budget(9)
    await wait_bots("tic-tac-toe games over", lambda: all(b.ended for b in ttt), 90)
    stop.set()
    await asyncio.gather(*tasks)

    errors = {}
    for b in bots:
        for phase, code, _ in b.error_log:
            errors.setdefault(phase, {}).setdefault(code, 0)
            errors[phase][code] += 1
    retries = {}
    for b in bots:
        for k, v in b.resume_retries.items():
            retries[k] = retries.get(k, 0) + v
    versions = set().union(*[set(b.versions) for b in bots])
    summary = {
        "scenario": cluster.name,
        "sessions_before": len(before), "sessions_after_upgrade": len(after),
        "sessions_after_kill": len(after_kill),
        "acked_inputs": sum(b.acked for b in bots),
        "acked_moves_checked": sum(len(b.acked_cells) for b in ttt),
        "redirects": sum(b.redirects for b in bots),
        "reconnects": sum(b.reconnects for b in bots),
        "resume_retries": retries,
        "errors_by_phase": errors,
        "versions_seen": sorted(v for v in versions if v),
        "upgrade_s": round(up_took, 1),
        "pause_upgrade_s": pauses(bots, "upgrade"),
        "pause_kill_s": pauses(bots, "kill"),
        "takeover_s": round(takeover, 2),
        "killed_node_sessions": len(victim_sessions),
    }
    log(json.dumps(summary, indent=1))
    details = [(b.name, e) for b in bots for e in b.error_log if e[1] != "session_ended"]
    if details:
        log(f"[{cluster.name}] error frames: {details}")


def main():
    kind, v1, v2 = sys.argv[1], sys.argv[2], sys.argv[3]
    cluster = {"compose": Compose, "swarm": Swarm}[kind]({"v1": v1, "v2": v2})
    ok = False
    try:
        asyncio.run(scenario(cluster))
        ok = True
    finally:
        try:
            cluster.down(keep_logs=not ok)
        except Exception as e:  # report, but do not hide the test's own failure
            log(f"[{kind}] cleanup: {e}")
        log(f"{kind}: {int(ok)} passed, {int(not ok)} failed")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
