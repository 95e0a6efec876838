#!/usr/bin/env bash
# The whole test suite, from a fresh clone: set-up, games, lints, unit and
# integration tests (real node processes, real websockets), benches compile,
# and the browser page in real headless Chromium.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
bash scripts/build-games.sh
cargo fmt --all -- --check
cargo clippy --workspace --all-targets -- -D warnings
cargo build --workspace --all-targets
cargo test --workspace
# Benches compile (dev profile: CI checks they build; `cargo bench` measures).
cargo bench --workspace --no-run --profile dev
MINOTAUR_SKIP_BUILD=1 bash tests/browser/run.sh
