#!/usr/bin/env bash
# Build the example games and the test guests to wasm32-unknown-unknown
# (profile `wasm`: size-optimised, LTO, panic=abort). The example games
# (served by `minotaur serve`) go to games/dist/<name>.wasm; the test-only
# modules (arena-v2, chaos, chaos-v2 = chaos with feature `v2`) go to
# games/dist/test/, which `serve` does not load. Idempotent; runs from any
# directory.
set -euo pipefail
cd "$(dirname "$0")/.."

if ! rustup target list --installed 2>/dev/null | grep -qx wasm32-unknown-unknown; then
  rustup target add wasm32-unknown-unknown >/dev/null
fi

games=(tictactoe arena)
test_only=(arena-v2 chaos)

build() { cargo build --quiet --profile wasm --target wasm32-unknown-unknown "$@"; }

args=()
for c in "${games[@]}" "${test_only[@]}"; do args+=(-p "$c"); done
build "${args[@]}"

target_dir="$(cargo metadata --format-version 1 --no-deps | sed -n 's/.*"target_directory":"\([^"]*\)".*/\1/p')"
out="$target_dir/wasm32-unknown-unknown/wasm"
mkdir -p games/dist/test
# Modules of an older layout would be served as games; they live in test/ now.
for c in "${test_only[@]}"; do rm -f "games/dist/$c.wasm"; done

copy() { # crate, destination
  cp "$out/${1//-/_}.wasm" "$2"
  printf '%-24s %8d bytes\n' "$2" "$(wc -c < "$2")"
}
for c in "${games[@]}"; do copy "$c" "games/dist/$c.wasm"; done
for c in "${test_only[@]}"; do copy "$c" "games/dist/test/$c.wasm"; done

# chaos again with feature v2: the same artefact name, so after the copy above.
build -p chaos --features v2
copy chaos games/dist/test/chaos-v2.wasm
