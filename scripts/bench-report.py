#!/usr/bin/env python3
"""Prints the criterion results under target/criterion as ratios against the baselines
measured in the same run (docs/BENCHMARKS.md). Run after `cargo bench`; `--json` for machines.

- runtime/*               against baseline/bare_wasmtime_call (a bare wasmtime call)
- state/<bench>/<n>       against state/baseline_msgpack_encode/<n> and state/baseline_vec_copy/<n>
- peers/automerge_<x>/<k> against peers/yrs_<x>/<k> (Automerge / yrs)
"""
import json
import os
import sys

ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..")
CRIT = os.environ.get("CRITERION_DIR", os.path.join(ROOT, "target", "criterion"))


def load():
    out = {}
    for dirpath, _dirs, files in os.walk(CRIT):
        if os.path.basename(dirpath) != "new" or "benchmark.json" not in files:
            continue
        with open(os.path.join(dirpath, "benchmark.json")) as f:
            bench = json.load(f)
        with open(os.path.join(dirpath, "estimates.json")) as f:
            est = json.load(f)
        median = est["median"]["point_estimate"]
        if bench.get("throughput"):
            # Throughput benches time a run of elements; report per element.
            t = bench["throughput"]
            n = t.get("Elements") or t.get("Bytes") or 1
            median /= n
        out[bench["full_id"]] = median
    return out


def fmt(ns):
    if ns >= 1e6:
        return f"{ns / 1e6:.2f} ms"
    if ns >= 1e3:
        return f"{ns / 1e3:.2f} µs"
    return f"{ns:.1f} ns"


def rows(res):
    bare = res.get("baseline/bare_wasmtime_call")
    for k in sorted(res):
        v = res[k]
        base = []
        if k.startswith("runtime/") and bare:
            base.append(("bare call", v / bare))
        elif k.startswith("state/") and not k.split("/")[1].startswith("baseline"):
            n = k.split("/")[-1]
            for b in ("baseline_msgpack_encode", "baseline_vec_copy"):
                ref = res.get(f"state/{b}/{n}")
                if ref:
                    base.append((b.removeprefix("baseline_"), v / ref))
        elif k.startswith("peers/automerge_"):
            ref = res.get(k.replace("peers/automerge_", "peers/yrs_"))
            if ref:
                base.append(("yrs", v / ref))
        yield k, v, base


def main():
    res = load()
    if not res:
        sys.exit(f"no criterion results under {CRIT}; run `cargo bench` first")
    if "--json" in sys.argv:
        print(json.dumps([{"id": k, "median_ns": v, "ratios": dict(b)} for k, v, b in rows(res)], indent=1))
        return
    print(f"{'benchmark':58} {'median':>11}  ratio")
    for k, v, base in rows(res):
        ratio = ", ".join(f"{r:.2f}x {name}" for name, r in base)
        print(f"{k:58} {fmt(v):>11}  {ratio}")


if __name__ == "__main__":
    main()
