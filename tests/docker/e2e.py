"""End-to-end test of a 3-node Minotaur cluster on PostgreSQL, in Docker.

    e2e.py compose V1_IMAGE V2_IMAGE PG_IMAGE   # docker-compose.yml, upgraded by hand
    e2e.py swarm   V1_IMAGE V2_IMAGE PG_IMAGE   # deploy/stack.yml on a single-node swarm
                                                # (opt-in: see docs/OPERATIONS.md, "Docker Swarm")

The images are built by `run.sh` (`scripts/docker-image.sh`, v2 differs only in the
release label it reports; `scripts/postgres-image.sh`). The compose scenario starts
the repository's docker-compose.yml (PostgreSQL, then three v1 nodes), seats bots
(tic-tac-toe and arena) through the published ports on 127.0.0.1, and then, under
their load:

  upgrade   replaces the nodes one at a time with v2 the way Swarm's `start-first`
            does (start the new one, wait until it is ready, `docker stop` the old one
            with its grace period: SIGTERM, it hands its sessions over);
  pause     `docker pause`s the node owning the most sessions for PAUSE_S (longer than
            the lease: the others take its sessions over), then `docker unpause`s it;
  pg        restarts PostgreSQL (`docker stop`, wait until every node reports not
            ready, `docker start`): a pause for the players;
  kill      `docker kill`s the node owning the most sessions;
  finish    the tic-tac-toe games play to their end.

Asserted after every phase: the sessions (by id) are those from before, each served
by exactly one node, the one the directory in PostgreSQL names as its owner; every
bot is seated again (on a v2 node after the upgrade), arena players get acks again;
every acknowledged tic-tac-toe move is on its board with its mark. Per phase: the
faulted node's sessions come back on the others (pause, kill); no ack while
PostgreSQL is down, every node's `/readyz` says 503 meanwhile and no session changes
owner (pg); the paused node serves again after the unpause. Tic-tac-toe games are in four groups, one per phase,
whose second moves are allowed just before that phase's fault, so they race it.
Printed: sessions, acked inputs, redirects, resume retries by cause, errors by phase,
player-visible pause per arena session (p50/p99/max) per phase, takeover times.
Everything the script makes is removed, also on failure (images: by run.sh); the
containers' logs are kept in /tmp/<run>-logs on failure (always with
MINOTAUR_E2E_KEEP_LOGS=1).
"""

import asyncio
import json
import os
import secrets
import subprocess
import sys
import time
import urllib.error
import urllib.request

sys.path.insert(0, os.path.dirname(__file__))
import bots as botmod  # noqa: E402
from bots import Bot  # noqa: E402

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
RUN = f"mte2e{os.getpid()}"
TOKEN = f"e2e-admin-{secrets.token_hex(24)}"  # a node refuses tokens under 32 bytes
GROUPS = ("upgrade", "pause", "pg", "kill")  # one group of tic-tac-toe games per fault
TTT_PER_GROUP, N_ARENA = 2, 12  # tic-tac-toe games (2 bots each) per group, arena bots
PAUSE_S = 4.0  # how long the paused node stays frozen (the default lease is 1.5 s)


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


def status(port, path):
    """HTTP status of a GET (an error status too); None when nothing answers."""
    try:
        return http(port, path)[0]
    except urllib.error.HTTPError as e:
        return e.code
    except Exception:
        return None


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


async def await_until(what, cond, timeout=60.0, every=0.2):
    await asyncio.to_thread(wait_until, what, cond, timeout, every)


def pct(xs, p):
    if not xs:
        return 0.0
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(round(p / 100 * (len(xs) - 1))))]


def pauses(bots, *phases):
    """Per arena player, the longest gap between two acks, of the gaps that ended during
    one of `phases`."""
    per = [max(g for ph, g in b.gaps if ph in phases) for b in bots
           if b.game == "arena" and any(ph in phases for ph, _ in b.gaps)]
    return {"n": len(per), "p50": round(pct(per, 50), 3), "p99": round(pct(per, 99), 3),
            "max": round(max(per or [0]), 3)}


def serving_members(view):
    """Live, serving members of the cluster in one node's `/admin/cluster` view."""
    return [m for m in view["members"] if m.get("live", True) and m.get("status", "serving") == "serving"]


def cluster_view(admin_port):
    """`GET /admin/cluster` on a node's operator listener."""
    return json.loads(http(admin_port, "/admin/cluster", TOKEN)[1])


def psql_directory(container):
    """The session directory in PostgreSQL: {session id: owner node id}, live sessions."""
    out = sh("docker", "exec", container, "psql", "-h", "/tmp", "-U", "minotaur", "-d", "minotaur", "-tA",
             "-F", " ", "-c", "SELECT id, owner FROM minotaur_sessions WHERE NOT ended")
    return dict(line.split(" ", 1) for line in out.splitlines() if line.strip())


class Node:
    def __init__(self, id, container, port, admin_port=None):
        self.id, self.container, self.port, self.admin_port = id, container, port, admin_port

    def __repr__(self):
        return self.id


# ---- clusters ---------------------------------------------------------------------


class Compose:
    """docker-compose.yml (project RUN): PostgreSQL and node1..3, each node publishing
    its player port and its operator listener (admin API) on free 127.0.0.1 ports.
    Upgrades start replacement containers on the project's network with the same
    settings and a new node id."""

    name = "compose"
    faults = True  # pause, PostgreSQL restart: every node is reachable from here

    def __init__(self, images):
        self.images = images
        self.password = secrets.token_hex(16)
        self.ports = {i: free_port() for i in (1, 2, 3)}
        self.admin_ports = {i: free_port() for i in (1, 2, 3)}
        self.env = dict(os.environ, MINOTAUR_IMAGE=images["v1"], MINOTAUR_POSTGRES_IMAGE=images["pg"],
                        POSTGRES_PASSWORD=self.password, MINOTAUR_ADMIN_TOKEN=TOKEN,
                        MINOTAUR_MAX_CONNS_PER_IP="0", MINOTAUR_SESSIONS_PER_IP_PER_MIN="0",
                        **{f"MINOTAUR_NODE{i}_PORT": str(p) for i, p in self.ports.items()},
                        **{f"MINOTAUR_NODE{i}_ADMIN_PORT": str(p) for i, p in self.admin_ports.items()})
        self.started = False
        self.extra = []  # containers started by hand (replacements)
        self.nodes = []
        self.pg = None
        self.net = f"{RUN}_minotaur"

    def compose(self, *args, check=True):
        return sh("docker-compose", "-p", RUN, "-f", f"{ROOT}/docker-compose.yml", *args,
                  env=self.env, check=check)

    def up(self):
        self.started = True
        # Waits for PostgreSQL to be healthy before it starts the nodes (depends_on).
        self.compose("up", "-d")
        self.pg = self.compose("ps", "-q", "postgres")
        self.nodes = [Node(f"node{i}", self.compose("ps", "-q", f"node{i}"), self.ports[i],
                           self.admin_ports[i])
                      for i in (1, 2, 3)]
        wait_until("3 ready v1 nodes", lambda: all(self.ready(n) for n in self.nodes), 90)
        wait_until("cluster of 3", lambda: all(
            len(serving_members(cluster_view(n.admin_port))) == 3 for n in self.nodes), 60)

    @staticmethod
    def ready(node):
        return status(node.port, "/readyz") == 200

    def urls(self):
        return [f"ws://127.0.0.1:{n.port}/ws" for n in self.nodes]

    def sessions(self, nodes=None):
        """Session ids each node serves (`GET /admin/sessions`)."""
        out = {}
        for n in nodes if nodes is not None else self.nodes:
            items = json.loads(http(n.admin_port, "/admin/sessions", TOKEN)[1])
            items = items["sessions"] if isinstance(items, dict) else items
            out[n.id] = {s["id"] for s in items}
        return out

    def directory(self):
        return psql_directory(self.pg)

    def start_node(self, i, version):
        name, port, admin_port = f"{RUN}-n{i}-{version}", free_port(), free_port()
        url = f"postgres://minotaur:{self.password}@postgres:5432/minotaur"
        # The settings of docker-compose.yml's nodes, hardening included.
        sh("docker", "run", "-d", "--name", name, "--network", self.net, "--hostname", name,
           "-p", f"127.0.0.1:{port}:7878", "-p", f"127.0.0.1:{admin_port}:7879",
           "--read-only", "--cap-drop", "ALL", "--security-opt", "no-new-privileges:true",
           "--mount", "type=tmpfs,destination=/data,tmpfs-size=1048576",
           "-e", "MINOTAUR_ADMIN_LISTEN=0.0.0.0:7879",
           "-e", f"MINOTAUR_DATABASE_URL={url}", "-e", f"MINOTAUR_NODE_ID={name}",
           "-e", f"MINOTAUR_ADVERTISE_ADDR=127.0.0.1:{port}",
           "-e", f"MINOTAUR_ADMIN_TOKEN={TOKEN}", "-e", "MINOTAUR_SHUTDOWN_GRACE_SECS=30",
           # The bots all come through the host's loopback (one address to the nodes).
           "-e", "MINOTAUR_MAX_CONNS_PER_IP=0", "-e", "MINOTAUR_SESSIONS_PER_IP_PER_MIN=0",
           "--stop-timeout", "40", self.images[version])
        self.extra.append(name)
        return Node(name, name, port, admin_port)

    async def upgrade(self, on_step):
        for i in range(3):
            old = self.nodes[i]
            new = self.start_node(i + 1, "v2")
            await await_until(f"{new} ready", lambda: self.ready(new), 90)
            await on_step(i)
            t0 = time.monotonic()
            await asyncio.to_thread(sh, "docker", "stop", "-t", "40", old.container)
            log(f"replaced {old} -> {new}: old stopped in {time.monotonic() - t0:.1f}s")
            self.nodes[i] = new
            yield

    def pause(self, node):
        sh("docker", "pause", node.container)

    def unpause(self, node):
        sh("docker", "unpause", node.container)

    def kill(self, node):
        sh("docker", "kill", node.container)
        self.nodes.remove(node)

    def pg_stop(self):
        sh("docker", "stop", "-t", "30", self.pg)

    def pg_start(self):
        sh("docker", "start", self.pg)

    def pg_healthy(self):
        return sh("docker", "inspect", "-f", "{{.State.Health.Status}}", self.pg) == "healthy"

    def down(self, keep_logs=False):
        containers = list(self.extra)
        if self.started:
            containers += self.compose("ps", "-q", check=False).split()
        if keep_logs:
            d = f"/tmp/{RUN}-logs"
            os.makedirs(d, exist_ok=True)
            for c in containers:
                label = sh("docker", "inspect", "-f", "{{.Name}}", c, check=False).lstrip("/") or c
                with open(f"{d}/{label}.log", "w") as f:
                    subprocess.run(["docker", "logs", "-t", c], stdout=f, stderr=subprocess.STDOUT)
            log(f"[compose] container logs kept in {d}")
        for c in self.extra:
            sh("docker", "rm", "-f", "-v", c, check=False)
        if self.started:
            self.compose("down", "-v", "--remove-orphans", "-t", "5", check=False)


class Swarm:
    """deploy/stack.yml on a single-node swarm made for this run (and left after it).
    Players reach the service through one published (ingress) port on 127.0.0.1; the
    admin API is published nowhere, so sessions and the cluster view are read inside the
    tasks with `minotaur sessions` / `minotaur cluster`. Upgrade and kill only: the
    tasks' own ports are not reachable from here."""

    name = "swarm"
    faults = False
    STACK = "mte2e"
    SERVICE = "mte2e_minotaur"
    PG_SERVICE = "mte2e_postgres"

    def __init__(self, images):
        # By image ID: a task's image given by tag is pulled first (and the pull fails
        # with no registry) even with `--resolve-image never`; an ID is never pulled.
        self.images = {v: sh("docker", "image", "inspect", "-f", "{{.Id}}", img)
                       for v, img in images.items()}
        self.port = free_port()
        self.joined = False
        self.deployed = False
        self.nodes = []

    def tasks(self, service=None):
        """Running containers of the service (container id -> task name)."""
        out = sh("docker", "ps", "--filter",
                 f"label=com.docker.swarm.service.name={service or self.SERVICE}",
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
                   MINOTAUR_POSTGRES_IMAGE=self.images["pg"],
                   POSTGRES_PASSWORD=secrets.token_hex(16), MINOTAUR_PORT=str(self.port))
        self.deployed = True
        sh("docker", "stack", "deploy", "--resolve-image", "never", "-c",
           f"{ROOT}/deploy/stack.yml", self.STACK, env=env)
        wait_until("3 healthy v1 tasks", lambda: len(self.tasks()) == 3 and all(
            self.healthy(t[0]) for t in self.tasks()), 120)
        wait_until("cluster of 3", lambda: len(serving_members(self.cluster_view())) == 3, 60)
        self.nodes = [Node(task, cid, None) for cid, task, _ in self.tasks()]

    def urls(self):
        return [f"ws://127.0.0.1:{self.port}/ws"]

    def cluster_view(self):
        """`minotaur cluster` inside one running task (its own admin listener)."""
        cid = self.tasks()[0][0]
        return json.loads(sh("docker", "exec", cid, "/minotaur", "cluster"))

    def sessions(self, nodes=None):
        out = {}
        for cid, task, _ in self.tasks():
            table = sh("docker", "exec", cid, "/minotaur", "sessions")
            out[task] = {line.split()[0] for line in table.splitlines()[1:] if line.strip()}
        return out

    def directory(self):
        return None  # node ids are not task names here: not compared

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
        self.nodes = [Node(task, cid, None) for cid, task, _ in self.tasks()]
        while seen < 3:
            seen += 1
            yield

    def kill(self, node):
        sh("docker", "kill", node.container)
        self.nodes.remove(node)

    def down(self, keep_logs=False):
        if self.deployed:
            sh("docker", "stack", "rm", self.STACK, check=False)
            wait_until("stack removed", lambda: not self.tasks() and not self.tasks(
                self.PG_SERVICE) and not sh("docker", "network", "ls", "-q", "--filter",
                                            f"name={self.STACK}_"), 60)
            sh("docker", "volume", "rm", f"{self.STACK}_postgres-data", check=False)
        if self.joined:
            sh("docker", "swarm", "leave", "--force", check=False)
        # A leave can leave task containers behind (seen on this engine): ours by label.
        for service in (self.SERVICE, self.PG_SERVICE):
            left = sh("docker", "ps", "-aq", "--filter",
                      f"label=com.docker.swarm.service.name={service}", check=False)
            for cid in left.split():
                sh("docker", "rm", "-f", "-v", cid, check=False)


# ---- the scenario -------------------------------------------------------------------


async def scenario(cluster):
    botmod.PHASE[0] = "setup"
    cluster.up()
    log(f"[{cluster.name}] PostgreSQL and a cluster of 3 v1 nodes ready")

    urls = cluster.urls()
    bots, games = [], {g: [] for g in GROUPS}
    for g in GROUPS:
        for i in range(TTT_PER_GROUP):
            a = Bot(f"{g}{i}a", urls, "tictactoe")
            at = urls[len(bots) // 2 % len(urls)]
            await a.connect(at)
            await a.send({"type": "create", "game": "tictactoe"})
            created = await a.recv(lambda m: m.get("type") == "created")
            await a.ws.close()
            # `created` comes once the session is in the directory: both players join
            # through any node (`moved` to the owner).
            await a.join(created["session"])
            b = Bot(f"{g}{i}b", urls, "tictactoe")
            await b.join(created["session"])
            bots += [a, b]
            games[g].append((a, b))
    for i in range(N_ARENA):
        bot = Bot(f"a{i}", urls, "arena")
        await bot.join()
        bots.append(bot)
    ttt = [b for b in bots if b.game == "tictactoe"]
    arena = [b for b in bots if b.game == "arena"]
    group = {g: [b for pair in games[g] for b in pair] for g in GROUPS}
    stop = asyncio.Event()
    tasks = [asyncio.create_task(b.play(stop)) for b in bots]
    report = {"scenario": cluster.name}

    def check_tasks():
        for t in tasks:
            if t.done() and t.exception():
                raise t.exception()

    def bot_state(b):
        v = b.view or {}
        state = {"session": b.session, "resuming": b.resuming, "url_hint": b.url_hint,
                 "must_resume": b.must_resume,
                 "version": b.version, "reconnects": b.reconnects, "acked": b.acked,
                 "pending": dict(b.pending), "errors": b.error_log[-3:]}
        if b.game == "tictactoe":
            state.update(budget=b.move_budget, acked_cells=b.acked_cells, you=v.get("you"),
                         turn=v.get("turn"), board=v.get("board"), outcome=v.get("outcome"))
        return state

    async def wait_bots(what, cond, timeout=60, show=()):
        """Wait for `cond` over the bots; on a timeout, show the state of the `show` bots
        and of every bot not seated."""
        end = time.monotonic() + timeout
        while not cond():
            check_tasks()
            if time.monotonic() > end:
                shown = show() if callable(show) else show
                odd = {b.name: bot_state(b) for b in bots
                       if b in shown or b.resuming or b.url_hint or b.must_resume}
                raise TimeoutError(f"timed out waiting for {what}; bots: {odd}")
            await asyncio.sleep(0.1)  # polling interval of a condition with a deadline

    def budget(bs, n):
        for b in bs:
            b.move_budget = n

    def seated(bs):
        return all(not b.resuming and not b.url_hint and not b.must_resume for b in bs)

    def set_urls():
        for b in bots:
            b.urls[:] = cluster.urls()

    # Every tic-tac-toe player makes its first move before the faults begin.
    budget(ttt, 1)
    await wait_bots("first tic-tac-toe moves", lambda: all(len(b.acked_cells) >= 1 for b in ttt))
    await wait_bots("arena acks", lambda: all(b.acked >= 5 for b in arena))
    before_map = await asyncio.to_thread(cluster.sessions)
    before = set().union(*before_map.values())
    want = {b.session for b in bots}
    assert want <= before, f"bots' sessions missing from the nodes: {want - before}"
    log(f"[{cluster.name}] {len(bots)} bots in {len(before)} sessions "
        f"({', '.join(f'{k}: {len(v)}' for k, v in sorted(before_map.items()))})")

    async def settled(phase, timeout=30):
        """The invariants after a phase: the same sessions, each served by exactly one
        node, which the directory in PostgreSQL names as its owner; every acknowledged
        tic-tac-toe move on its board. Returns the sessions per node."""
        state = {}

        def check():
            m = cluster.sessions()
            state["map"] = m
            served = [s for ss in m.values() for s in ss]
            state["twice"] = sorted({s for s in served if served.count(s) > 1})
            state["set"] = set(served)
            if state["twice"] or state["set"] != before:
                return False
            d = cluster.directory()
            if d is None:
                return True
            owner_of = {s: n for n, ss in m.items() for s in ss}
            state["disagree"] = {s: (d.get(s), owner_of[s]) for s in before
                                 if d.get(s) != owner_of[s]}
            return not state["disagree"]
        try:
            await await_until(f"{phase}: sessions settled", check, timeout)
        except TimeoutError:
            got = state.get("set", set())
            raise AssertionError(
                f"after {phase}: lost {sorted(before - got)}, new {sorted(got - before)}, "
                f"served by two nodes {state.get('twice')}, directory owner != serving node "
                f"{state.get('disagree')}; per node: {state.get('map')}")
        lost = {b.name: b.marks_ok() for b in ttt if b.marks_ok()}
        assert not lost, f"acknowledged moves missing from the board after {phase}: {lost}"
        ended = [b.name for b in bots if b.ended]
        assert not ended, f"games ended before the finish ({phase}): {ended}"
        return state["map"]

    def busiest(sessions_map, bs):
        """The node serving the most of these bots' sessions (then the most sessions)."""
        mine = {b.session for b in bs}
        return max(cluster.nodes, key=lambda n: (len(sessions_map.get(n.id, set()) & mine),
                                                 len(sessions_map.get(n.id, set()))))

    # ---- upgrade: v1 -> v2, node by node. The "upgrade" group's second moves are
    # allowed once the first new node is ready, so they race the first drain.
    botmod.PHASE[0] = "upgrade"
    t_up = time.monotonic()

    async def on_step(i):
        check_tasks()
        if i == 0:
            budget(group["upgrade"], 2)

    async for _ in cluster.upgrade(on_step):
        check_tasks()
        set_urls()
    up_took = time.monotonic() - t_up
    botmod.PHASE[0] = "after-upgrade"
    await wait_bots("every bot on a v2 node, the upgrade group's second moves acked", lambda: all(
        b.version == "e2e-v2" for b in bots) and seated(bots) and all(
        len(b.acked_cells) >= 2 for b in group["upgrade"]), 60,
        lambda: [b for b in bots if b.version != "e2e-v2" or b in group["upgrade"]])
    after_map = await settled("the upgrade")
    report["upgrade"] = {
        "took_s": round(up_took, 1), "sessions": len(before),
        "redirects": sum(b.redirects for b in bots),
        "reconnects": sum(b.reconnects for b in bots),
        "pause_s": pauses(bots, "upgrade", "after-upgrade"),
    }
    log(f"[{cluster.name}] upgrade: " + json.dumps(report["upgrade"]))

    if cluster.faults:
        # ---- pause: freeze the busiest node past its lease, then thaw it.
        botmod.PHASE[0] = "pause"
        victim = busiest(after_map, group["pause"])
        victim_sessions = after_map[victim.id]
        others = [n for n in cluster.nodes if n is not victim]
        reconnects = {b.name: b.reconnects for b in bots}
        budget(group["pause"], 2)
        t0 = time.monotonic()
        await asyncio.to_thread(cluster.pause, victim)
        try:
            await await_until("the paused node's sessions served by the others", lambda:
                              victim_sessions <= set().union(*cluster.sessions(others).values()), 30)
        except TimeoutError:
            served = set().union(*cluster.sessions(others).values())
            raise AssertionError(f"{len(victim_sessions - served)} of {len(victim_sessions)} "
                                 f"sessions of the paused node {victim} not taken over while it "
                                 f"was paused: {sorted(victim_sessions - served)}")
        pause_takeover = time.monotonic() - t0
        # The fault lasts PAUSE_S in all (its duration, not a synchronisation point).
        await asyncio.sleep(max(0.0, PAUSE_S - (time.monotonic() - t0)))
        await asyncio.to_thread(cluster.unpause, victim)
        paused_for = time.monotonic() - t0
        acks = {b.name: b.acked for b in arena}
        botmod.PHASE[0] = "after-pause"
        await await_until(f"{victim} ready again after the unpause", lambda: cluster.ready(victim), 30)
        back = time.monotonic() - t0
        hit = [b for b in bots if b.session in victim_sessions]
        await wait_bots("every bot seated and every arena player acked after the unpause, "
                        "the pause group's second moves acked", lambda: seated(bots) and all(
                            b.acked > acks[b.name] for b in arena) and all(
                            len(b.acked_cells) >= 2 for b in group["pause"]), 60,
                        lambda: [b for b in arena if b.acked <= acks[b.name]] + group["pause"])
        pause_map = await settled("the pause")
        report["pause"] = {
            "node": victim.id, "node_sessions": len(victim_sessions),
            "paused_s": round(paused_for, 2), "takeover_s": round(pause_takeover, 2),
            "node_ready_again_s": round(back, 2),
            "players_hit": len(hit),
            "players_hit_reconnected": sum(1 for b in hit if b.reconnects > reconnects[b.name]),
            "sessions_on_paused_node_after": len(pause_map.get(victim.id, ())),
            "pause_s": pauses(bots, "pause", "after-pause"),
        }
        log(f"[{cluster.name}] pause: " + json.dumps(report["pause"]))

        # ---- pg: restart PostgreSQL under load: a pause, nothing acknowledged lost.
        botmod.PHASE[0] = "pg"
        owners = await asyncio.to_thread(cluster.directory)
        budget(group["pg"], 2)
        t0 = time.monotonic()
        await asyncio.to_thread(cluster.pg_stop)
        t_down = time.monotonic()
        botmod.PHASE[0] = "pg-down"
        unready = {}

        def all_unready():
            for n in cluster.nodes:
                if n.id not in unready and status(n.port, "/readyz") == 503:
                    unready[n.id] = round(time.monotonic() - t_down, 2)
            return len(unready) == len(cluster.nodes)
        try:
            await await_until("every node not ready while PostgreSQL is down", all_unready, 20, 0.05)
        except TimeoutError:
            raise AssertionError(f"with PostgreSQL stopped, only {sorted(unready)} answered "
                                 f"503 on /readyz within 20 s")
        t_start = time.monotonic()
        await asyncio.to_thread(cluster.pg_start)
        botmod.PHASE[0] = "pg"
        await await_until("PostgreSQL healthy", cluster.pg_healthy, 60)
        t_healthy = time.monotonic()
        await await_until("every node ready again", lambda: all(
            cluster.ready(n) for n in cluster.nodes), 60, 0.05)
        t_ready = time.monotonic()
        acks = {b.name: b.acked for b in arena}
        await wait_bots("every bot seated and every arena player acked after the restart, "
                        "the pg group's second moves acked", lambda: seated(bots) and all(
                            b.acked > acks[b.name] for b in arena) and all(
                            len(b.acked_cells) >= 2 for b in group["pg"]), 60,
                        lambda: [b for b in arena if b.acked <= acks[b.name]] + group["pg"])
        t_acks = time.monotonic()
        # An ack in flight when the server stopped may arrive just after `docker stop`
        # returned; anything later and before the start was acked without the database.
        acked_down = sum(1 for b in bots for t in b.ack_times if t_down + 0.3 < t < t_start)
        pg_map = await settled("the PostgreSQL restart")
        moved = sum(1 for n, ss in pg_map.items() for s in ss if owners.get(s) != n)
        report["pg_restart"] = {
            "stop_s": round(t_down - t0, 2), "down_s": round(t_start - t_down, 2),
            "nodes_unready_after_s": unready,
            "healthy_after_start_s": round(t_healthy - t_start, 2),
            "nodes_ready_after_start_s": round(t_ready - t_start, 2),
            "acks_while_down": acked_down, "sessions_changed_owner": moved,
            "pause_s": pauses(bots, "pg", "pg-down"),
            "all_acking_after_start_s": round(t_acks - t_start, 2),
        }
        log(f"[{cluster.name}] pg restart: " + json.dumps(report["pg_restart"]))
        assert acked_down == 0, f"{acked_down} inputs acknowledged while PostgreSQL was down"
        # Every node renews within moments of the database's return, and a claim waits
        # until the claimant's lease has been valid for a whole lease: nothing moves.
        assert moved == 0, (f"{moved} sessions changed owner in the PostgreSQL restart: "
                            f"before {owners}, after {pg_map}")
        kill_map = pg_map
    else:
        kill_map = after_map

    # ---- kill: crash the busiest node; its sessions must come back on the others.
    botmod.PHASE[0] = "kill"
    victim = busiest(kill_map, group["kill"]) if cluster.faults else cluster.nodes[0]
    victim_sessions = kill_map[victim.id]
    reconnects = {b.name: b.reconnects for b in bots}
    budget(group["kill"], 2)
    t0 = time.monotonic()
    await asyncio.to_thread(cluster.kill, victim)
    hit = [b for b in bots if b.session in victim_sessions]
    set_urls()

    def served():
        return set().union(*cluster.sessions().values())

    try:
        await await_until("takeover", lambda: victim_sessions <= served(), 60)
    except TimeoutError:
        missing = victim_sessions - served()
        raise AssertionError(f"{len(missing)} of {len(victim_sessions)} sessions of the "
                             f"killed node never came back: {sorted(missing)}")
    takeover = time.monotonic() - t0
    await wait_bots("the killed node's players seated again, the kill group's second moves "
                    "acked", lambda: all(b.reconnects > reconnects[b.name] for b in hit) and seated(
                        bots) and all(len(b.acked_cells) >= 2 for b in group["kill"]), 60,
                    lambda: [b for b in hit if b.reconnects <= reconnects[b.name]] + group["kill"])
    await settled("the takeover")
    report["kill"] = {"node": victim.id, "node_sessions": len(victim_sessions),
                      "players_hit": len(hit), "takeover_s": round(takeover, 2),
                      "pause_s": pauses(bots, "kill")}
    log(f"[{cluster.name}] kill: " + json.dumps(report["kill"]))

    # ---- finish: the games go on to their end on the remaining nodes.
    botmod.PHASE[0] = "finish"
    budget(ttt, 9)
    await wait_bots("tic-tac-toe games over", lambda: all(b.ended for b in ttt), 90,
                    lambda: [b for b in ttt if not b.ended])
    stop.set()
    await asyncio.gather(*tasks)

    errors = {}
    for b in bots:
        for phase, code, _ in b.error_log:
            errors.setdefault(phase, {}).setdefault(code, 0)
            errors[phase][code] += 1
    retries = {}  # phase -> why -> count
    for b in bots:
        for (phase, why), v in b.resume_retries.items():
            retries.setdefault(phase, {}).setdefault(why, 0)
            retries[phase][why] += v
    versions = set().union(*[set(b.versions) for b in bots])
    report.update({
        "sessions": len(before),
        "acked_inputs": sum(b.acked for b in bots),
        "acked_moves_checked": sum(len(b.acked_cells) for b in ttt),
        "redirects": sum(b.redirects for b in bots),
        "reconnects": sum(b.reconnects for b in bots),
        "resume_retries_by_phase": retries,
        "errors_by_phase": errors,
        "versions_seen": sorted(v for v in versions if v),
    })
    log(json.dumps(report, indent=1))
    details = [(b.name, e) for b in bots for e in b.error_log if e[1] != "session_ended"]
    if details:
        log(f"[{cluster.name}] error frames: {details}")


def main():
    kind, v1, v2, pg = sys.argv[1:5]
    cluster = {"compose": Compose, "swarm": Swarm}[kind]({"v1": v1, "v2": v2, "pg": pg})
    ok = False
    try:
        asyncio.run(scenario(cluster))
        ok = True
    finally:
        try:
            cluster.down(keep_logs=not ok or os.environ.get("MINOTAUR_E2E_KEEP_LOGS") == "1")
        except Exception as e:  # report, but do not hide the test's own failure
            log(f"[{kind}] cleanup: {e}")
        log(f"{kind}: {int(ok)} passed, {int(not ok)} failed")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
