#!/usr/bin/env bash
# One-time machine set-up, idempotent: the Rust targets Minotaur builds for.
set -euo pipefail
if ! rustup target list --installed | grep -qx wasm32-unknown-unknown; then
  rustup target add wasm32-unknown-unknown
fi
for component in rustfmt clippy; do
  if ! rustup component list --installed | grep -q "^$component"; then
    rustup component add "$component"
  fi
done
# PostgreSQL server binaries (initdb, pg_ctl, postgres, psql): the cluster tests start
# throwaway servers of their own, so no system cluster is created.
if ! ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 \
  && ! { command -v pg_config >/dev/null 2>&1 && [ -x "$(pg_config --bindir)/initdb" ]; }; then
  sudo=""
  if [ "$(id -u)" != 0 ]; then sudo="sudo"; fi
  $sudo mkdir -p /etc/postgresql-common/createcluster.d
  echo "create_main_cluster = false" | $sudo tee /etc/postgresql-common/createcluster.d/minotaur-tests.conf >/dev/null
  $sudo apt-get update
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y --no-install-recommends postgresql
fi
