#!/usr/bin/env bash
# Build the example games and the chaos test guest to wasm32-unknown-unknown
# (profile `wasm`: size-optimised, LTO, panic=abort) and copy the modules to
# games/dist/ as <name>.wasm. Idempotent; runs from any directory.
set -euo pipefail
cd "$(dirname "$0")/.."

if ! rustup target list --installed 2>/dev/null | grep -qx wasm32-unknown-unknown; then
  rustup target add wasm32-unknown-unknown >/dev/null
fi

# crate name -> file name in games/dist (cargo names the artefact after the
# crate with '-' turned into '_').
crates=(tictactoe arena arena-v2 chaos)

args=()
for c in "${crates[@]}"; do args+=(-p "$c"); done
cargo build --quiet --profile wasm --target wasm32-unknown-unknown "${args[@]}"

target_dir="$(cargo metadata --format-version 1 --no-deps | sed -n 's/.*"target_directory":"\([^"]*\)".*/\1/p')"
out="$target_dir/wasm32-unknown-unknown/wasm"
mkdir -p games/dist
for c in "${crates[@]}"; do
  src="$out/${c//-/_}.wasm"
  cp "$src" "games/dist/$c.wasm"
  printf '%-16s %8d bytes\n' "$c.wasm" "$(wc -c < "games/dist/$c.wasm")"
done
