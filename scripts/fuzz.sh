#!/usr/bin/env bash
# Fuzzing (cargo-fuzz, libFuzzer; SECURITY.md "Fuzzing"): builds the targets in fuzz/
# and runs each for FUZZ_SECS seconds (default 60), seeded from its committed corpus
# fuzz/corpus/<target>/ (read only: what a run discovers goes to a scratch directory),
# and prints the executions of each. Exits non-zero if any target fails (panic, failed
# assertion, timeout, memory limit); the input that did it is in fuzz/artifacts/<target>/
# (`cargo +nightly fuzz run <target> <file>` replays it). Needs a nightly toolchain;
# without one it says so and skips. Installs cargo-fuzz if missing.
# FUZZ_TARGETS="frame_decode guest_output" runs only those.
set -euo pipefail
cd "$(dirname "$0")/.."
secs="${FUZZ_SECS:-60}"

if ! cargo +nightly --version >/dev/null 2>&1; then
  echo "fuzz: skipped (no nightly toolchain; \`rustup toolchain install nightly\` enables it)"
  exit 0
fi
if ! cargo +nightly fuzz --version >/dev/null 2>&1; then
  cargo install --locked cargo-fuzz
fi

targets="${FUZZ_TARGETS:-$(ls fuzz/fuzz_targets | sed -n 's/\.rs$//p')}"
start=$(date +%s)
cargo +nightly fuzz build
echo "fuzz: targets built in $(($(date +%s) - start)) s"

scratch="$(mktemp -d)"
trap 'rm -rf "$scratch"' EXIT
failed=""
for target in $targets; do
  mkdir -p "$scratch/$target"
  log="$scratch/$target.log"
  # -timeout: one input taking this long is a finding (a quadratic path), not a slow CI;
  # -rss_limit_mb: so is a process growing past it (also the largest single allocation).
  if cargo +nightly fuzz run "$target" "$scratch/$target" "fuzz/corpus/$target" -- \
    -max_total_time="$secs" -timeout=20 -rss_limit_mb=2048 -print_final_stats=1 \
    >"$log" 2>&1; then
    status="ok"
  else
    status="FAILED"
    failed="$failed $target"
    tail -n 60 "$log"
  fi
  execs="$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -n 1)"
  rate="$(sed -n 's/^stat::average_exec_per_sec: *//p' "$log" | tail -n 1)"
  echo "fuzz: $target: $status, ${execs:-?} executions in ${secs} s (${rate:-?}/s)," \
    "$(ls "$scratch/$target" | wc -l) new corpus inputs"
done

if [ -n "$failed" ]; then
  echo "fuzz: FAILED:$failed (inputs in fuzz/artifacts/)"
  exit 1
fi
echo "fuzz: passed"
