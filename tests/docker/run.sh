#!/usr/bin/env bash
# Docker end-to-end: image v1 -> v2 rolling upgrade of a 3-node cluster under bot
# load, then a `docker kill`. Needs a running Docker engine; builds its own images
# (no registry) and removes its containers, network and images even on failure.
set -euo pipefail
cd "$(dirname "$0")/../.."
if ! python3 -c "import websockets" 2>/dev/null; then
  python3 -m pip install --quiet websockets
fi
exec python3 tests/docker/e2e.py
