#!/usr/bin/env bash
# Build the Minotaur node image with no registry access: a static musl binary and
# the example games are built on this machine and put into a FROM-scratch image
# (`Dockerfile`, target `local`).
#
#   scripts/docker-image.sh [TAG] [RELEASE]
#
# TAG defaults to `minotaur:dev`. RELEASE (default: the crate version) is baked into
# the image as MINOTAUR_RELEASE, which the node reports as its version, so two
# images of the same code can be told apart in a rolling-upgrade test.
# CARGO_TARGET_DIR is honoured (e.g. to share compiled dependencies between work trees).
#
# MINOTAUR_IMAGE_BINARY=PATH puts that (dynamically linked, glibc) binary into the same
# FROM-scratch image instead, with the loader and libraries `ldd` names copied beside it:
# no musl build. The Docker end-to-end test uses it with the debug binary the test suite
# has just built (the musl release build costs ≈ 20 min of a cold CI run); operators'
# images come from the musl release build.
set -euo pipefail
cd "$(dirname "$0")/.."
tag="${1:-minotaur:dev}"
release="${2:-}"

bash scripts/setup.sh
bash scripts/build-games.sh >/dev/null
ctx=$(mktemp -d /tmp/minotaur-docker-ctx.XXXXXX)
trap 'rm -rf "$ctx"' EXIT
mkdir -p "$ctx/dist/games" "$ctx/dist/data"
if [ -n "${MINOTAUR_IMAGE_BINARY:-}" ]; then
  cp "$MINOTAUR_IMAGE_BINARY" "$ctx/dist/minotaur"
  # The dynamic loader and every library it loads, at the paths the binary asks for.
  for lib in $(ldd "$MINOTAUR_IMAGE_BINARY" | grep -o '/[^ ]*'); do
    mkdir -p "$ctx/dist$(dirname "$lib")"
    cp -L "$lib" "$ctx/dist$lib"
  done
else
  if ! rustup target list --installed | grep -qx x86_64-unknown-linux-musl; then
    rustup target add x86_64-unknown-linux-musl
  fi
  if ! command -v musl-gcc >/dev/null 2>&1; then
    apt-get update -qq && apt-get install -y -qq musl-tools >/dev/null
  fi
  cargo build --release --target x86_64-unknown-linux-musl -p minotaur-host
  target_dir="$(cargo metadata --format-version 1 --no-deps | sed -n 's/.*"target_directory":"\([^"]*\)".*/\1/p')"
  cp "$target_dir/x86_64-unknown-linux-musl/release/minotaur" "$ctx/dist/minotaur"
fi
strip "$ctx/dist/minotaur"  # the release profile keeps line tables for backtraces
cp games/dist/tictactoe.wasm games/dist/arena.wasm "$ctx/dist/games/"
cp Dockerfile "$ctx/Dockerfile"
docker build -q --target local --build-arg "MINOTAUR_RELEASE=$release" -t "$tag" "$ctx" >/dev/null
size=$(docker image inspect -f '{{.Size}}' "$tag")
echo "built $tag ($((size / 1024 / 1024)) MiB)"
