#!/usr/bin/env bash
# Docker end-to-end of a 3-node cluster on PostgreSQL under bot load: image v1 -> v2
# rolling upgrade, `docker pause` of a node past its lease, a PostgreSQL restart, a
# `docker kill` (tests/docker/e2e.py says what is asserted). Scenarios:
#   compose  docker-compose.yml, upgraded node by node by hand (start-first)
#   swarm    deploy/stack.yml on a single-node swarm, upgraded by `docker service update`
#            (upgrade and kill only); only when asked for (argument, or
#            MINOTAUR_E2E_SWARM=1): on the engines here the routing mesh and the swarm
#            DNS do not work (docs/OPERATIONS.md)
# Needs a running Docker engine and docker-compose; pulls nothing: the node images are
# built here by scripts/docker-image.sh (once: v2 differs only in its release label),
# the PostgreSQL image by scripts/postgres-image.sh when it is missing (kept for the
# next run; MINOTAUR_POSTGRES_IMAGE names another). Removes its containers, networks,
# volumes, swarm and node images even on failure.
#   tests/docker/run.sh [compose|swarm]...   (default: compose)
set -euo pipefail
cd "$(dirname "$0")/../.."
if [ $# -eq 0 ]; then
  set -- compose
  if [ "${MINOTAUR_E2E_SWARM:-0}" = 1 ]; then set -- compose swarm; fi
fi
scenarios=("$@")
if ! command -v docker-compose >/dev/null 2>&1; then
  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq docker-compose >/dev/null
fi
if ! python3 -c "import websockets" 2>/dev/null; then
  python3 -m pip install --quiet websockets
fi

run=$$
v1="minotaur-e2e:$run-v1"
v2="minotaur-e2e:$run-v2"
cleanup() { docker rmi -f "$v1" "$v2" >/dev/null 2>&1 || true; }
trap cleanup EXIT

pg="${MINOTAUR_POSTGRES_IMAGE:-minotaur-postgres:15}"
bash scripts/postgres-image.sh "$pg"
bash scripts/docker-image.sh "$v1" e2e-v1
bash scripts/docker-image.sh "$v2" e2e-v2

failed=0
for s in "${scenarios[@]}"; do
  if [ "$s" = swarm ] && [ "$(docker info -f '{{.Swarm.LocalNodeState}}')" != inactive ]; then
    echo "swarm: skipped (this engine is already part of a swarm; not touching it)"
    continue
  fi
  start=$SECONDS
  if python3 tests/docker/e2e.py "$s" "$v1" "$v2" "$pg"; then
    echo "docker e2e $s: passed in $((SECONDS - start))s"
  else
    echo "docker e2e $s: FAILED after $((SECONDS - start))s"
    failed=1
  fi
done
exit "$failed"
