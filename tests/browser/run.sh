#!/usr/bin/env bash
# Browser test of the node's page: a real node, two real headless Chromium
# players (tictactoe to a win, arena views and steering, refresh and node
# restart resume). Screenshots and the node log go to target/browser/.
# Usage: bash tests/browser/run.sh   (MINOTAUR_SKIP_BUILD=1 to reuse the build)
set -euo pipefail
cd "$(dirname "$0")/../.."

# Deps, idempotent: Debian's chromium + chromedriver (apt only when missing),
# Python selenium from PyPI. Nothing else is downloaded (no driver manager).
if ! command -v chromium >/dev/null 2>&1 || [ ! -x /usr/bin/chromedriver ]; then
  SUDO=""
  if [ "$(id -u)" -ne 0 ]; then SUDO="sudo"; fi
  $SUDO apt-get update
  $SUDO apt-get install -y chromium chromium-driver
fi
if ! python3 -c 'import selenium' >/dev/null 2>&1; then
  python3 -m pip install --quiet selenium
fi

if [ "${MINOTAUR_SKIP_BUILD:-0}" != 1 ]; then
  bash scripts/setup.sh
  bash scripts/build-games.sh
  cargo build -p minotaur-host
fi

export OUT_DIR="target/browser"
mkdir -p "$OUT_DIR"
rm -f "$OUT_DIR"/*.png "$OUT_DIR/node.log" "$OUT_DIR/node.pid"
DATA_DIR="$(mktemp -d -t minotaur-browser-data.XXXXXX)"
export DATA_DIR
export GAMES_DIR="${GAMES_DIR:-games/dist}"
export MINOTAUR_NODE_CMD="${MINOTAUR_NODE_CMD:-target/debug/minotaur}"

# The test starts (and restarts) the node itself and records its pid; this
# trap makes sure no node outlives the run, even if the test is killed.
cleanup() {
  if [ -f "$OUT_DIR/node.pid" ]; then
    kill "$(cat "$OUT_DIR/node.pid")" 2>/dev/null || true
    rm -f "$OUT_DIR/node.pid"
  fi
  rm -rf "$DATA_DIR"
}
trap cleanup EXIT INT TERM

python3 -u tests/browser/test_page.py
