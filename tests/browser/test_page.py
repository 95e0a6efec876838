"""The node's browser page in real headless Chromium, against a real node.

Two separate Chromium instances (separate profiles, so separate localStorage and
reconnect tokens) play as two players. Every wait has a deadline; the node is
killed on exit. Run through tests/browser/run.sh, which installs the deps and
builds the node and the games.

Environment: MINOTAUR_NODE_CMD (command to run the node, `serve ...` args are
appended), GAMES_DIR, DATA_DIR, OUT_DIR (screenshots, node log, node pid file).
"""

import os
import queue
import re
import shlex
import subprocess
import sys
import tempfile
import threading
import time
import traceback

from selenium import webdriver
from selenium.common.exceptions import TimeoutException
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.action_chains import ActionChains
from selenium.webdriver.common.by import By
from selenium.webdriver.common.keys import Keys
from selenium.webdriver.support.ui import WebDriverWait

WAIT = 15  # seconds: the deadline of every ordinary wait
OUT = os.environ.get("OUT_DIR", "target/browser")
LISTEN_RE = re.compile(r"minotaur listening on (http://\S+)")


class Node:
    """A real `minotaur serve` process; restartable on the same port and data dir."""

    def __init__(self):
        self.cmd = shlex.split(os.environ.get("MINOTAUR_NODE_CMD", "target/debug/minotaur"))
        self.games = os.environ.get("GAMES_DIR", "games/dist")
        self.data = os.environ.get("DATA_DIR") or tempfile.mkdtemp(prefix="minotaur-browser-")
        self.log = open(os.path.join(OUT, "node.log"), "a", encoding="utf-8")
        self.proc = None
        self.url = None

    def start(self, listen="127.0.0.1:0", deadline=180):
        # The page needs only the player listener; the operator one gets any free port
        # (its default, 127.0.0.1:7879, may be taken by another node on this machine).
        args = self.cmd + ["serve", "--listen", listen, "--admin-listen", "127.0.0.1:0",
                           "--games-dir", self.games, "--data-dir", self.data]
        self.log.write(f"--- {' '.join(args)}\n")
        self.log.flush()
        self.proc = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                     text=True, bufsize=1)
        with open(os.path.join(OUT, "node.pid"), "w") as f:  # run.sh's trap kills it if we cannot
            f.write(str(self.proc.pid))
        lines = queue.Queue()

        def drain(proc=self.proc):
            # Keep reading so the node never blocks on a full pipe; copy to the log.
            for line in proc.stdout:
                self.log.write(line)
                self.log.flush()
                lines.put(line)
            lines.put(None)

        threading.Thread(target=drain, daemon=True).start()
        end = time.monotonic() + deadline
        while True:
            try:
                line = lines.get(timeout=max(0.01, end - time.monotonic()))
            except queue.Empty:
                raise RuntimeError(f"node did not print its listen line within {deadline}s")
            if line is None:
                raise RuntimeError(f"node exited with {self.proc.wait()} before listening (see {OUT}/node.log)")
            m = LISTEN_RE.search(line)
            if m:
                self.url = m.group(1).rstrip("/")
                return self.url

    def stop(self):
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=10)

    def restart(self):
        port = self.url.rsplit(":", 1)[1]
        self.stop()
        return self.start(f"127.0.0.1:{port}")


def browser():
    opts = webdriver.ChromeOptions()
    opts.binary_location = "/usr/bin/chromium"
    for a in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu",
              "--window-size=1000,860", f"--user-data-dir={tempfile.mkdtemp(prefix='minotaur-chrome-')}"):
        opts.add_argument(a)
    opts.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    # The Debian driver, explicitly: no Selenium Manager download.
    return webdriver.Chrome(service=Service(executable_path="/usr/bin/chromedriver"), options=opts)


# ---------- page helpers ----------

def until(driver, cond, what, timeout=WAIT):
    try:
        return WebDriverWait(driver, timeout, poll_frequency=0.05).until(lambda d: cond(d))
    except TimeoutException:
        status = driver.execute_script("const s = document.getElementById('status'); return s && s.textContent")
        raise AssertionError(f"timed out after {timeout}s waiting for {what} (status line: {status!r})") from None


def js(driver, script, *args):
    return driver.execute_script(script, *args)


def attr(driver, css, name):
    return js(driver, "const e = document.querySelector(arguments[0]); return e && e.getAttribute(arguments[1]);", css, name)


def text(driver, css):
    return js(driver, "const e = document.querySelector(arguments[0]); return e ? e.textContent : null;", css)


def visible(driver, css):
    return js(driver, "const e = document.querySelector(arguments[0]); return !!e && e.offsetParent !== null;", css)


def click(driver, css, what=None):
    el = until(driver, lambda d: (lambda e: e if e and e[0].is_enabled() and e[0].is_displayed() else None)(
        d.find_elements(By.CSS_SELECTOR, css)), what or f"{css} clickable")
    el[0].click()


def open_page(driver, url, name):
    driver.get(url + "/")
    field = driver.find_element(By.ID, "name")
    field.clear()
    field.send_keys(name)
    until(driver, lambda d: attr(d, "#conn", "data-state") == "open", "websocket open")


def seated(driver, game):
    until(driver, lambda d: visible(d, "#play") and text(d, "#game-name") == game and text(d, "#session-id"),
          f"seated in {game}")
    return text(driver, "#session-id"), text(driver, "#player-id")


def cell_mark(driver, i):
    return text(driver, f'[data-cell="{i}"]') or ""


def play(mover, other, cell):
    """Wait for `mover`'s turn, click `cell`, wait until both boards show the mark."""
    until(mover, lambda d: attr(d, "#board", "data-my-turn") == "true", f"turn to play cell {cell}")
    click(mover, f'[data-cell="{cell}"]')
    for d in (mover, other):
        until(d, lambda d: cell_mark(d, cell) != "", f"cell {cell} marked on both pages")


def whose_turn(a, b):
    """(mover, waiter): the page whose board says it is its turn."""
    both = lambda _: attr(a, "#board", "data-my-turn") == "true" or attr(b, "#board", "data-my-turn") == "true"
    until(a, both, "one player's turn")
    return (a, b) if attr(a, "#board", "data-my-turn") == "true" else (b, a)


def shot(driver, name):
    os.makedirs(OUT, exist_ok=True)
    driver.save_screenshot(os.path.join(OUT, name))


def back_to_lobby(driver):
    click(driver, "#leave")
    until(driver, lambda d: visible(d, "#lobby"), "lobby after leaving")


# ---------- tests (run in order; they share the node and the two browsers) ----------

def test_lobby_lists_games(ctx):
    a = ctx["a"]
    open_page(a, ctx["url"], "alice")
    until(a, lambda d: d.find_elements(By.CSS_SELECTOR, '[data-testid="quick-tictactoe"]')
          and d.find_elements(By.CSS_SELECTOR, '[data-testid="quick-arena"]'), "tictactoe and arena in the lobby")
    shot(a, "lobby.png")


def test_tictactoe_full_game_with_refresh(ctx):
    a, b = ctx["a"], ctx["b"]
    open_page(b, ctx["url"], "bob")
    click(a, '[data-testid="quick-tictactoe"]')
    sa, pa = seated(a, "tictactoe")
    click(b, '[data-testid="quick-tictactoe"]')
    sb, pb = seated(b, "tictactoe")
    assert sa == sb, f"quick match put the players in different sessions: {sa} vs {sb}"
    assert pa != pb, f"both players got player id {pa}"
    first, second = whose_turn(a, b)
    play(first, second, 0)
    play(second, first, 3)
    # A refresh must give the seat back (token in localStorage → resume).
    sess, pid = text(second, "#session-id"), text(second, "#player-id")
    second.refresh()
    until(second, lambda d: visible(d, "#play") and text(d, "#session-id") == sess and text(d, "#player-id") == pid
          and cell_mark(d, 0) and cell_mark(d, 3), "seat and board back after a refresh")
    play(first, second, 1)
    play(second, first, 4)
    play(first, second, 2)
    for d, outcome, words in ((first, "won", "You won"), (second, "lost", "You lost")):
        until(d, lambda d: visible(d, "#result") and attr(d, "#result", "data-outcome") == outcome,
              f"result '{outcome}' shown")
        assert words in text(d, "#result"), text(d, "#result")
        assert attr(d, "#board", "data-my-turn") == "false", "board still playable after the end"
    shot(first, "tictactoe-winner.png")
    shot(second, "tictactoe-loser.png")


def test_error_frames_are_shown(ctx):
    a = ctx["a"]
    # The game is over: an input now is refused by the node, and the page must say so.
    js(a, "sendInput({cell: 5})")
    until(a, lambda d: attr(d, "#status", "data-kind") == "error" and ":" in (text(d, "#status") or ""),
          "an error code in the status line")


def test_arena_views_and_steering(ctx):
    a, b = ctx["a"], ctx["b"]
    back_to_lobby(a)
    back_to_lobby(b)
    click(a, '[data-testid="quick-arena"]')
    seated(a, "arena")
    click(b, '[data-testid="quick-arena"]')
    seated(b, "arena")
    tick = lambda d: int(float(attr(d, "#arena-canvas", "data-tick") or 0))
    until(a, lambda d: tick(d) > 0, "first arena view")
    until(a, lambda d: len(d.find_elements(By.CSS_SELECTOR, "#scoreboard tr")) >= 3, "both players on the scoreboard")
    # The node sends a view only when it changes, so steer: holding a direction
    # must move us and stream views (one per tick while moving). Try the other
    # way too in case we spawned against a wall.
    pos = lambda d: (attr(d, "#arena-canvas", "data-x"), attr(d, "#arena-canvas", "data-y"))
    moved = False
    for key in (Keys.ARROW_RIGHT, Keys.ARROW_LEFT):
        p0, t0 = pos(a), tick(a)
        ActionChains(a).key_down(key).perform()
        try:
            until(a, lambda d: pos(d) != p0 and tick(d) >= t0 + 10, "ten views and a position change while steering",
                  timeout=5)
            moved = True
        except AssertionError:
            pass
        ActionChains(a).key_up(key).perform()
        if moved:
            break
    assert moved, "holding arrow keys never moved the player"
    assert attr(a, "#status", "data-kind") != "error", text(a, "#status")
    shot(a, "arena.png")


def test_create_and_join_listed_session(ctx):
    a, b = ctx["a"], ctx["b"]
    back_to_lobby(a)
    back_to_lobby(b)
    click(a, '[data-testid="create-tictactoe"]')
    sess, _ = seated(a, "tictactoe")
    click(b, f'[data-testid="join-{sess}"]', f"session {sess} listed in the lobby")
    assert seated(b, "tictactoe")[0] == sess
    mover, other = whose_turn(a, b)
    play(mover, other, 4)
    ctx["game"] = (sess, mover, other)


def test_node_restart_is_a_short_pause(ctx):
    sess, mover, other = ctx["game"]
    welcomes = {id(d): int(attr(d, "#conn", "data-welcomes") or 0) for d in (mover, other)}
    ctx["node"].restart()
    for d in (mover, other):
        # The page sees the drop, backs off, reconnects to the same address...
        until(d, lambda d: int(attr(d, "#conn", "data-welcomes") or 0) > welcomes[id(d)]
              and attr(d, "#conn", "data-state") == "open", "the page reconnected after the restart", 30)


def test_seat_survives_node_restart(ctx):
    sess, mover, other = ctx["game"]

    def resumed(d):
        # ...and resumes its seat with the stored token (the node must have kept it).
        if "seat is gone" in (text(d, "#status") or ""):
            raise AssertionError(f"the node refused the seat after its restart: {text(d, '#status')!r}")
        return visible(d, "#play") and text(d, "#session-id") == sess and cell_mark(d, 4) \
            and "resumed" in (text(d, "#status") or "")

    for d in (mover, other):
        until(d, resumed, "seat resumed after the restart")
    play(other, mover, 0)


TESTS = [test_lobby_lists_games, test_tictactoe_full_game_with_refresh, test_error_frames_are_shown,
         test_arena_views_and_steering, test_create_and_join_listed_session, test_node_restart_is_a_short_pause,
         test_seat_survives_node_restart]


def main():
    os.makedirs(OUT, exist_ok=True)
    node = Node()
    passed = failed = 0
    drivers = []
    try:
        url = node.start()
        print(f"node at {url}")
        drivers = [browser(), browser()]
        ctx = {"node": node, "url": url, "a": drivers[0], "b": drivers[1]}
        for test in TESTS:
            started = time.monotonic()
            try:
                test(ctx)
                passed += 1
                print(f"ok    {test.__name__} ({time.monotonic() - started:.1f}s)")
            except Exception as e:  # noqa: BLE001 - report every failure and go on
                failed += 1
                print(f"FAIL  {test.__name__}: {e}")
                if not isinstance(e, AssertionError):
                    traceback.print_exc()
                for i, d in enumerate(drivers):
                    try:
                        shot(d, f"fail-{test.__name__}-{'ab'[i]}.png")
                        # Refused connections are expected while the node restarts.
                        logs = [e for e in d.get_log("browser") if "ERR_CONNECTION_REFUSED" not in e["message"]]
                        for entry in logs[-20:]:
                            print(f"      console[{'ab'[i]}]: {entry['level']} {entry['message']}")
                    except Exception:  # noqa: BLE001 - diagnostics only
                        pass
    except Exception as e:  # noqa: BLE001 - setup failed: nothing ran
        failed += 1
        print(f"FAIL  setup: {e}")
    finally:
        for d in drivers:
            try:
                d.quit()
            except Exception:  # noqa: BLE001
                pass
        node.stop()
    print(f"{passed} passed, {failed} failed")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
