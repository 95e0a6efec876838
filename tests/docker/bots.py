"""Player bots for the Docker end-to-end tests.

Each bot holds one seat over a real websocket (JSON frames, docs/PROTOCOL.md),
counts the inputs the node acknowledged, follows `moved` redirects and, when its
connection drops, resumes its seat with its token on any node it knows of. The
orchestrator (`rolling_upgrade.sh`) drives the phases through `control`.

Usage: bots.py STATE_DIR URL [URL...]   (reads commands on stdin, one per line)
  start N_TICTACTOE N_ARENA   create sessions and seat the bots, then play
  report                      print a JSON report (acks, pauses, sessions)
  stop                        leave and exit
"""

import asyncio
import json
import math
import random
import time

import websockets

DEADLINE_S = 20.0


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
        self.pending = {}
        self.view = None
        self.last_ack = None
        self.gaps = []  # seconds between consecutive acks (the player-visible pause)
        self.errors = {}
        self.moves = 0
        self.redirects = 0
        self.reconnects = 0
        self.versions = set()
        self.ended = False
        self.url_hint = None
        self.next_move_at = 0.0

    async def connect(self, url=None):
        order = ([url] if url else []) + random.sample(self.urls, len(self.urls))
        last = None
        for u in order:
            try:
                self.ws = await asyncio.wait_for(websockets.connect(u, max_size=2**22), 5)
                welcome = json.loads(await asyncio.wait_for(self.ws.recv(), 5))
                self.versions.add(welcome.get("version"))
                return
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

    def note(self, msg):
        t = msg.get("type")
        if t == "ack":
            now = time.monotonic()
            if self.last_ack is not None:
                self.gaps.append(now - self.last_ack)
            self.last_ack = now
            self.acked += 1
            self.pending.pop(msg.get("seq"), None)
        elif t == "view":
            self.view = msg.get("data")
        elif t == "ended":
            self.ended = True
        elif t == "moved":
            self.url_hint = msg.get("url")
        elif t == "error":
            code = msg.get("code")
            self.errors[code] = self.errors.get(code, 0) + 1
            self.pending.pop(msg.get("seq"), None)

    async def join(self, session=None):
        msg = {"type": "join", "name": self.name}
        if session:
            msg["session"] = session
        else:
            msg["game"] = self.game
        url = None
        for _ in range(5):  # follow `moved` redirects to the node that serves the session
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
        """Get the seat back after a drop or a `moved`, on any node."""
        self.reconnects += 1
        hint, self.url_hint = self.url_hint, None
        end = time.monotonic() + 60
        while time.monotonic() < end:
            try:
                await self.connect(hint)
                await self.send({"type": "resume", "token": self.token})
                m = await self.recv(lambda m: m.get("type") in ("joined", "moved", "error"), 10)
                if m["type"] == "joined":
                    return
                if m["type"] == "moved":
                    self.redirects += 1
                    hint = m.get("url")
                else:
                    hint = None
            except Exception:
                hint = None
            await asyncio.sleep(0.2)  # back-off between reconnect attempts, not a sync point
        raise RuntimeError(f"{self.name}: could not resume")

    def next_input(self):
        if self.game == "arena":
            a = random.random() * 6.283
            return {"dir": [round(math.cos(a), 3), round(math.sin(a), 3)]}
        # Turn-based games are paced so that they outlive a whole rolling upgrade.
        if time.monotonic() < self.next_move_at:
            return None
        v = self.view or {}
        if v.get("turn") != v.get("you") or v.get("outcome"):
            return None
        free = [i for i, c in enumerate(v.get("board", [])) if c is None]
        return {"cell": random.choice(free)} if free else None

    async def play(self, stop):
        while not stop.is_set() and not self.ended:
            try:
                data = self.next_input()
                if data is not None and not self.pending:
                    self.seq += 1
                    self.pending[self.seq] = time.monotonic()
                    await self.send({"type": "input", "seq": self.seq, "data": data})
                    if self.game == "tictactoe":
                        self.moves += 1
                        self.next_move_at = time.monotonic() + 4.0
                try:
                    await self.recv(lambda m: True, 0.1 if self.game == "arena" else 0.5)
                except (TimeoutError, asyncio.TimeoutError):
                    pass
                if self.url_hint:
                    await self.ws.close()
                    raise websockets.ConnectionClosed(None, None)
            except (websockets.ConnectionClosed, OSError):
                # Unacked inputs may or may not have been applied: forget them
                # (they are not counted as acknowledged).
                self.pending.clear()
                await self.resume()

    def report(self):
        return {
            "name": self.name, "game": self.game, "session": self.session,
            "player": self.player, "acked": self.acked, "gaps": self.gaps,
            "errors": self.errors, "redirects": self.redirects,
            "reconnects": self.reconnects, "versions": sorted(v for v in self.versions if v),
            "view": self.view, "ended": self.ended,
        }
