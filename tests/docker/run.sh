#!/usr/bin/env bash
# Docker end-to-end: image v1 -> v2 rolling upgrade of a 3-node cluster under bot
# load, then a `docker kill`. Scenarios:
#   compose  plain containers on a private bridge network (what docker-compose.yml runs)
#   swarm    deploy/stack.yml on a single-node swarm, upgraded by `docker service update`;
#            only when asked for (argument, or MINOTAUR_E2E_SWARM=1): on the engines
#            here the routing mesh and the swarm DNS do not work (docs/OPERATIONS.md)
# Needs a running Docker engine; pulls nothing (the images are built here by
# scripts/docker-image.sh, once: v2 differs only in its release label). Removes its
# containers, networks, swarm and images even on failure.
#   tests/docker/run.sh [compose|swarm]...   (default: both)
set -euo pipefail
cd "$(dirname "$0")/../.."
if [ $# -eq 0 ]; then
  set -- compose
  if [ "${MINOTAUR_E2E_SWARM:-0}" = 1 ]; then set -- compose swarm; fi
fi
scenarios=("$@")
if ! python3 -c "import websockets" 2>/dev/null; then
  python3 -m pip install --quiet websockets
fi

run=$$
v1="minotaur-e2e:$run-v1"
v2="minotaur-e2e:$run-v2"
cleanup() { docker rmi -f "$v1" "$v2" >/dev/null 2>&1 || true; }
trap cleanup EXIT

bash scripts/docker-image.sh "$v1" e2e-v1
bash scripts/docker-image.sh "$v2" e2e-v2

failed=0
for s in "${scenarios[@]}"; do
  if [ "$s" = swarm ] && [ "$(docker info -f '{{.Swarm.LocalNodeState}}')" != inactive ]; then
    echo "swarm: skipped (this engine is already part of a swarm; not touching it)"
    continue
  fi
  start=$SECONDS
  if python3 tests/docker/e2e.py "$s" "$v1" "$v2"; then
    echo "docker e2e $s: passed in $((SECONDS - start))s"
  else
    echo "docker e2e $s: FAILED after $((SECONDS - start))s"
    failed=1
  fi
done
exit "$failed"
