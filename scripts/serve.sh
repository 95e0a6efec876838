#!/usr/bin/env bash
# Build everything a node needs (wasm target, example games, the release binary)
# and run one node serving the example games on embedded defaults.
# Extra arguments go to `minotaur serve` (see `minotaur serve --help`).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
bash scripts/build-games.sh
cargo build --release -p minotaur-host
exec target/release/minotaur serve --games-dir games/dist "$@"
