"""Player bots for the Docker end-to-end tests (driven by `e2e.py`).

Each bot holds one seat over a real websocket (JSON frames, docs/PROTOCOL.md),
counts the inputs the node acknowledged, follows `moved` redirects and, when its
connection drops or the node answers `session_moved`, resumes its seat with its token
on any node it knows of.

Bots only ever connect to loopback addresses: a `moved` URL that is not on
127.0.0.1 (a container's address on a Docker network, as under Swarm) is not
followed; the bot resumes through one of its known (published) URLs instead and
lets that node redirect it again.

Tic-tac-toe bots move only while `move_budget` allows (the orchestrator raises it
phase by phase), so a game cannot end while a phase needs it alive: with at most
two marks per player nobody can have three in a row.
"""

import asyncio
import json
import math
import random
import time
from urllib.parse import urlparse

import websockets

DEADLINE_S = 20.0
# The phase the orchestrator is in; bots tag their errors and pauses with it.
PHASE = ["setup"]
# Seconds between two moves of one tic-tac-toe bot, two inputs of one arena bot (pacing,
# not synchronisation; an arena bot also waits for the ack of its previous input).
TTT_MOVE_INTERVAL_S = 0.5
ARENA_INPUT_INTERVAL_S = 0.1


def loopback(url):
    try:
        return urlparse(url).hostname in ("127.0.0.1", "localhost", "::1")
    except ValueError:
        return False


class Bot:
    def __init__(self, name, urls, game):
        self.name = name
        self.urls = urls
        self.game = game
        self.ws = None
        self.token = None
        self.session = None
        self.player = None
        self.seq = 0
        self.acked = 0
        self.pending = {}  # seq -> input data
        self.acked_cells = []  # tic-tac-toe: cells of acknowledged moves
        self.view = None
        self.last_ack = None
        self.gaps = []  # (phase, seconds between consecutive acks): the player-visible pause
        self.ack_times = []  # time.monotonic() of every ack
        self.errors = {}  # code -> count, all phases
        self.error_log = []  # (phase, where, code, message), for the report
        self.resume_retries = {}  # (phase, why a resume attempt was retried) -> count
        self.moves = 0
        self.move_budget = 0
        self.redirects = 0
        self.reconnects = 0
        self.versions = set()
        self.version = None  # version of the node this bot is connected to now
        self.ended = False
        self.resuming = False
        self.url_hint = None
        # The node said the session moved without saying where (`session_moved`): resume
        # through any node.
        self.must_resume = False
        self.next_move_at = 0.0

    async def connect(self, url=None):
        if url and not loopback(url):
            url = None  # not reachable from here (e.g. an overlay address): ask another node
        order = ([url] if url else []) + random.sample(self.urls, len(self.urls))
        last = None
        for u in order:
            try:
                self.ws = await asyncio.wait_for(websockets.connect(u, max_size=2**22), 5)
                welcome = json.loads(await asyncio.wait_for(self.ws.recv(), 5))
                self.version = welcome.get("version")
                self.versions.add(self.version)
                return u
            except Exception as e:  # try the next node
                last = e
        raise RuntimeError(f"{self.name}: no node reachable: {last}")

    async def send(self, msg):
        await self.ws.send(json.dumps(msg))

    async def recv(self, pred, timeout=DEADLINE_S):
        end = time.monotonic() + timeout
        while True:
            left = end - time.monotonic()
            if left <= 0:
                raise TimeoutError(f"{self.name}: timed out")
            msg = json.loads(await asyncio.wait_for(self.ws.recv(), left))
            self.note(msg)
            if pred(msg):
                return msg

    def note(self, msg, where="play"):
        t = msg.get("type")
        if t == "ack":
            now = time.monotonic()
            if self.last_ack is not None:
                self.gaps.append((PHASE[0], now - self.last_ack))
            self.last_ack = now
            self.ack_times.append(now)
            self.acked += 1
            data = self.pending.pop(msg.get("seq"), None)
            if self.game == "tictactoe" and data is not None:
                self.acked_cells.append(data["cell"])
        elif t == "view":
            self.view = msg.get("data")
        elif t == "ended":
            self.ended = True
        elif t == "moved":
            self.url_hint = msg.get("url")
        elif t == "error":
            code = msg.get("code")
            if code == "session_moved":
                self.must_resume = True
            self.errors[code] = self.errors.get(code, 0) + 1
            self.error_log.append((PHASE[0], code, msg.get("message")))
            self.pending.pop(msg.get("seq"), None)

    async def join(self, session=None, url=None):
        """Take a seat (in `session`, else quick-match), first asking `url` (else any node)."""
        msg = {"type": "join", "name": self.name}
        if session:
            msg["session"] = session
        else:
            msg["game"] = self.game
        for _ in range(8):  # follow `moved` redirects to the node that serves the session
            await self.connect(url)
            await self.send(msg)
            joined = await self.recv(lambda m: m.get("type") in ("joined", "moved", "error"))
            if joined["type"] != "moved":
                break
            await self.ws.close()
            url, self.url_hint = joined["url"], None
        if joined["type"] != "joined":
            raise RuntimeError(f"{self.name}: join failed: {joined}")
        self.token, self.session, self.player = joined["token"], joined["session"], joined["player"]

    async def resume(self):
        """Get the seat back after a drop or a `moved`, on any node.

        Retries are explicit and counted by phase and cause (`resume_retries`): `moved`
        (sent on to the owner; `moved_to_unreachable` also counts the redirects to an
        address that did not answer), `bad_token` (no node serves the session right now: the
        takeover window after a crash, docs/PROTOCOL.md), `unreachable` (no node
        answered) and any other error code."""
        self.reconnects += 1
        self.resuming = True
        hint, self.url_hint = self.url_hint, None
        self.must_resume = False
        end = time.monotonic() + 60
        while time.monotonic() < end:
            why = None
            try:
                used = await self.connect(hint)
                if hint and loopback(hint) and used != hint:
                    # Sent to a node that does not answer (a dead owner's address, until
                    # the takeover): back off before asking again (docs/PROTOCOL.md).
                    key = (PHASE[0], "moved_to_unreachable")
                    self.resume_retries[key] = self.resume_retries.get(key, 0) + 1
                    await asyncio.sleep(0.2)  # back-off, not a sync point
                await self.send({"type": "resume", "token": self.token})
                m = await self.recv(lambda m: m.get("type") in ("joined", "moved", "error"), 10)
                if m["type"] == "joined":
                    self.resuming = False
                    return
                if m["type"] == "moved":
                    self.redirects += 1
                    hint = m.get("url")
                    self.url_hint = None
                    why = "moved"
                else:
                    hint = None
                    why = m.get("code") or "error"
                await self.ws.close()
            except Exception:
                hint = None
                why = "unreachable"
            key = (PHASE[0], why)
            self.resume_retries[key] = self.resume_retries.get(key, 0) + 1
            if why != "moved":
                await asyncio.sleep(0.2)  # back-off between reconnect attempts, not a sync point
        raise RuntimeError(f"{self.name}: could not resume")

    def next_input(self):
        if time.monotonic() < self.next_move_at:
            return None
        if self.game == "arena":
            a = random.random() * 6.283
            return {"dir": [round(math.cos(a), 3), round(math.sin(a), 3)]}
        v = self.view or {}
        if v.get("turn") != v.get("you") or v.get("outcome"):
            return None
        # The budget counts this player's marks on the board (not inputs sent: an
        # input lost without an ack may still have been applied).
        mine = sum(1 for c in v.get("board", []) if c is not None and c == v.get("you"))
        if mine >= self.move_budget:
            return None
        free = [i for i, c in enumerate(v.get("board", [])) if c is None]
        return {"cell": random.choice(free)} if free else None

    async def play(self, stop):
        while not stop.is_set() and not self.ended:
            try:
                data = self.next_input() if not self.pending else None
                if data is not None:
                    self.seq += 1
                    self.pending[self.seq] = data
                    await self.send({"type": "input", "seq": self.seq, "data": data})
                    if self.game == "tictactoe":
                        self.moves += 1
                        self.next_move_at = time.monotonic() + TTT_MOVE_INTERVAL_S
                    else:
                        self.next_move_at = time.monotonic() + ARENA_INPUT_INTERVAL_S
                try:
                    await self.recv(lambda m: True, 0.1 if self.game == "arena" else 0.3)
                except (TimeoutError, asyncio.TimeoutError):
                    pass
                if self.url_hint or self.must_resume:
                    await self.ws.close()
                    raise websockets.ConnectionClosed(None, None)
            except (websockets.ConnectionClosed, OSError):
                # Unacked inputs may or may not have been applied: forget them (they
                # are not counted as acknowledged).
                self.pending.clear()
                await self.resume()

    def marks_ok(self):
        """Every acknowledged move of this bot is on its current board, with its mark."""
        board = (self.view or {}).get("board", [])
        you = (self.view or {}).get("you")
        return [c for c in self.acked_cells if c >= len(board) or board[c] != you]
