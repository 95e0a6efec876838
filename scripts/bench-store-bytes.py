#!/usr/bin/env python3
"""Bytes a node's store writes per acknowledged input (docs/BENCHMARKS.md), for
scripts/bench-load.sh:

  bench-store-bytes.py snap --node-pid PID --data-dir DIR [--pg-port P --pg-dir D] > snap.json
  bench-store-bytes.py report BEFORE.json AFTER.json LOADTEST.json --game arena|tictactoe
                              [--waldump PGBIN]

`snap` records, at one instant: the node's /proc/PID/io write_bytes and the size of its
data dir (redb); with a PostgreSQL, the WAL position (pg_current_wal_lsn), pg_stat_wal,
the minotaur tables' total sizes (heap + TOAST + indexes) and row counters, and the
write_bytes of the server's live processes. `report` divides the differences by the
acknowledged inputs of the load run and compares them with the MessagePack size of one
input as the node hands it to the guest (JSON numbers become MessagePack f64/ints, as
serde_json -> rmpv does). With --waldump it also decodes the run's WAL (pg_waldump) and
breaks the bytes down by relation and record kind (full-page images apart).
"""
import argparse
import collections
import json
import os
import re
import struct
import subprocess
import sys

TABLES = ("minotaur_sessions", "minotaur_session_chunks", "minotaur_nodes")


# --- a minimal MessagePack encoder (maps, arrays, str, int, float, bool, nil) ---
def mp(v):
    if v is None:
        return b"\xc0"
    if v is True or v is False:
        return b"\xc3" if v else b"\xc2"
    if isinstance(v, int):
        if 0 <= v < 128:
            return bytes([v])
        if 0 <= v < 256:
            return b"\xcc" + bytes([v])
        if 0 <= v < 65536:
            return b"\xcd" + struct.pack(">H", v)
        return b"\xce" + struct.pack(">I", v)
    if isinstance(v, float):
        return b"\xcb" + struct.pack(">d", v)
    if isinstance(v, str):
        b = v.encode()
        return (bytes([0xA0 | len(b)]) if len(b) < 32 else b"\xd9" + bytes([len(b)])) + b
    if isinstance(v, (list, tuple)):
        return bytes([0x90 | len(v)]) + b"".join(mp(x) for x in v)
    if isinstance(v, dict):
        return bytes([0x80 | len(v)]) + b"".join(mp(k) + mp(x) for k, x in v.items())
    raise TypeError(v)


# What the bots send (loadtest/src/bot.rs); JSON floats arrive as f64.
INPUTS = {
    "arena": {"dir": [0.7071067690849304, 0.7071067690849304]},
    "tictactoe": {"cell": 4},
}


def io_write_bytes(pid):
    try:
        for line in open(f"/proc/{pid}/io"):
            if line.startswith("write_bytes:"):
                return int(line.split()[1])
    except OSError:
        pass
    return None


def du(path):
    total = 0
    for dirpath, _dirs, files in os.walk(path):
        for f in files:
            try:
                total += os.stat(os.path.join(dirpath, f)).st_blocks * 512
            except OSError:
                pass
    return total


def psql(port, sql):
    out = subprocess.run(
        ["psql", "-h", "127.0.0.1", "-p", str(port), "-U", "postgres", "-d", "minotaur",
         "-X", "-At", "-F", "\t", "-v", "ON_ERROR_STOP=1", "-c", sql],
        check=True, capture_output=True, text=True, env={**os.environ, "PATH": os.environ.get("PGBIN", "") + ":" + os.environ["PATH"]},
    ).stdout
    return [line.split("\t") for line in out.splitlines() if line]


def pg_pids(pg_dir):
    try:
        master = int(open(os.path.join(pg_dir, "postmaster.pid")).readline())
    except (OSError, ValueError):
        return []
    pids = [master]
    for p in os.listdir("/proc"):
        if p.isdigit():
            try:
                ppid = int(open(f"/proc/{p}/stat").read().rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                continue
            if ppid == master:
                pids.append(int(p))
    return pids


def snap(a):
    s = {"node_write_bytes": io_write_bytes(a.node_pid), "data_dir_bytes": du(a.data_dir)}
    if a.pg_port:
        (lsn, recs, fpi, wbytes, syncs), = psql(
            a.pg_port,
            "SELECT pg_current_wal_lsn(), wal_records, wal_fpi, wal_bytes, wal_sync FROM pg_stat_wal")
        s["pg"] = {
            "lsn": lsn,
            "wal_records": int(recs), "wal_fpi": int(fpi), "wal_bytes": int(wbytes),
            "wal_sync": int(syncs),
            "tables": {
                r[0]: {"total": int(r[1]), "heap": int(r[2]), "toast": int(r[3]),
                       "ins": int(r[4]), "upd": int(r[5]), "hot_upd": int(r[6]), "del": int(r[7])}
                for r in psql(a.pg_port, f"""
                    SELECT c.relname, pg_total_relation_size(c.oid), pg_relation_size(c.oid),
                           coalesce(pg_total_relation_size(nullif(c.reltoastrelid, 0)), 0),
                           s.n_tup_ins, s.n_tup_upd, s.n_tup_hot_upd, s.n_tup_del
                    FROM pg_class c JOIN pg_stat_user_tables s ON s.relid = c.oid
                    WHERE c.relname IN ({",".join(f"'{t}'" for t in TABLES)})""")
            },
            "relfilenodes": {
                r[0]: r[1] for r in psql(a.pg_port, """
                    SELECT pg_relation_filenode(c.oid)::text,
                           coalesce((SELECT o.relname || ' TOAST' FROM pg_class o
                                     WHERE o.reltoastrelid = c.oid),
                                    (SELECT o.relname || ' TOAST index' FROM pg_class o
                                     JOIN pg_index i ON i.indrelid = o.reltoastrelid
                                     WHERE i.indexrelid = c.oid),
                                    c.relname)
                    FROM pg_class c WHERE pg_relation_filenode(c.oid) IS NOT NULL""")
            },
            "rows": dict(zip(
                ("live", "doc_avg", "journal_avg", "journals", "chunks", "chunk_avg"),
                (float(x or 0) for x in psql(a.pg_port, """
                    SELECT count(*) FILTER (WHERE NOT ended), avg(octet_length(doc)),
                           avg(octet_length(journal)), count(journal),
                           (SELECT count(*) FROM minotaur_session_chunks),
                           (SELECT avg(octet_length(chunk)) FROM minotaur_session_chunks)
                    FROM minotaur_sessions""")[0]))),
            "proc_write_bytes": {str(p): io_write_bytes(p) for p in pg_pids(a.pg_dir)},
        }
    json.dump(s, sys.stdout)


def lsn_int(lsn):
    hi, lo = lsn.split("/")
    return (int(hi, 16) << 32) + int(lo, 16)


def human(n):
    for unit in ("B", "KiB", "MiB", "GiB"):
        if abs(n) < 1024 or unit == "GiB":
            return f"{n:,.0f} {unit}" if unit == "B" else f"{n:,.1f} {unit}"
        n /= 1024


LINE = re.compile(r"rmgr: (\S+)\s+len \(rec/tot\):\s+(\d+)/\s*(\d+),.*?desc: (\S+)(.*)")
REL = re.compile(r"blkref #\d+: rel \d+/\d+/(\d+)(?: fork (\w+))?")


def waldump(pgbin, pg_dir, start, end, names):
    """Bytes per relation (first block reference) and per record kind, FPIs apart."""
    by_rel = collections.Counter()
    by_kind = collections.Counter()
    count = collections.Counter()
    fpw = collections.Counter()
    proc = subprocess.Popen(
        [os.path.join(pgbin, "pg_waldump"), "-p", os.path.join(pg_dir, "pg_wal"),
         "-s", start, "-e", end],
        stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    for line in proc.stdout:
        m = LINE.match(line)
        if not m:
            continue
        rmgr, rec, tot, desc, rest = m.group(1), int(m.group(2)), int(m.group(3)), m.group(4), m.group(5)
        r = REL.search(rest)
        rel = names.get(r.group(1), f"relfilenode {r.group(1)}") if r else "(no relation: commits, etc.)"
        by_rel[rel] += tot
        kind = f"{rmgr}/{desc}"
        by_kind[kind] += tot
        count[kind] += 1
        if tot > rec:
            fpw[rel] += tot - rec
    proc.wait()
    return by_rel, by_kind, count, fpw


def report(a):
    before, after = json.load(open(a.before)), json.load(open(a.after))
    run = json.load(open(a.loadtest))
    acks = run["acks"]
    inp = len(mp(INPUTS[a.game]))
    frame = len(mp({"type": "input", "seq": 1000, "data": INPUTS[a.game]}))
    print(f"-- store bytes: {acks:,} acked inputs; one input as MessagePack: {inp} B "
          f"(the whole `input` frame: {frame} B)")
    per = lambda n: f"{human(n)} = {n / max(acks, 1):,.0f} B/acked input = {n / max(acks, 1) / inp:,.1f}x the input"
    nb, na = before.get("node_write_bytes"), after.get("node_write_bytes")
    if nb is not None and na is not None:
        print(f"node process write_bytes: {per(na - nb)}")
    print(f"node data dir growth:     {per(after['data_dir_bytes'] - before['data_dir_bytes'])}")
    if "pg" not in before:
        return
    pb, pa = before["pg"], after["pg"]
    wal = lsn_int(pa["lsn"]) - lsn_int(pb["lsn"])
    print(f"PostgreSQL WAL (pg_wal_lsn_diff): {per(wal)}")
    d = {k: pa[k] - pb[k] for k in ("wal_records", "wal_fpi", "wal_bytes", "wal_sync")}
    print(f"pg_stat_wal: {d['wal_records']:,} records, {d['wal_fpi']:,} full-page images, "
          f"{d['wal_sync']:,} WAL syncs ({acks / max(d['wal_sync'], 1):.1f} acked inputs per sync)")
    procs = [p for p, v in pa["proc_write_bytes"].items() if v is not None and pb["proc_write_bytes"].get(p) is not None]
    pw = sum(pa["proc_write_bytes"][p] - pb["proc_write_bytes"][p] for p in procs)
    print(f"server processes' write_bytes (the {len(procs)} alive at both ends): {per(pw)}")
    for t in TABLES:
        tb, ta = pb["tables"].get(t), pa["tables"].get(t)
        if not tb or not ta:
            continue
        print(f"  {t}: total {human(tb['total'])} -> {human(ta['total'])} (heap {human(ta['heap'])}, "
              f"TOAST {human(ta['toast'])}); rows inserted {ta['ins'] - tb['ins']:,}, updated "
              f"{ta['upd'] - tb['upd']:,} (HOT {ta['hot_upd'] - tb['hot_upd']:,}), deleted {ta['del'] - tb['del']:,}")
    r = pa.get("rows")
    if r:
        print(f"  at the end: {r['live']:,.0f} live sessions, document {r['doc_avg']:,.0f} B on average, "
              f"{r['journals']:,.0f} journal entries of {r['journal_avg']:,.0f} B on average, "
              f"{r['chunks']:,.0f} incremental chunks of {r['chunk_avg']:,.0f} B on average")
    if a.waldump:
        by_rel, by_kind, count, fpw = waldump(a.waldump, a.pg_dir, pb["lsn"], pa["lsn"], pa["relfilenodes"])
        total = sum(by_rel.values()) or 1
        print(f"WAL by relation (pg_waldump, {human(total)} decoded; first block reference of each record):")
        for rel, n in by_rel.most_common(10):
            print(f"  {rel:44} {human(n):>12} {100 * n / total:5.1f} %  {n / max(acks, 1):8,.0f} B/ack"
                  f"  (full-page images {human(fpw[rel])})")
        print("WAL by record kind:")
        for kind, n in by_kind.most_common(10):
            print(f"  {kind:44} {human(n):>12} {100 * n / total:5.1f} %  {count[kind]:>10,} records, "
                  f"mean {n / count[kind]:,.0f} B")


def main():
    ap = argparse.ArgumentParser()
    sub = ap.add_subparsers(dest="cmd", required=True)
    s = sub.add_parser("snap")
    s.add_argument("--node-pid", type=int, required=True)
    s.add_argument("--data-dir", required=True)
    s.add_argument("--pg-port")
    s.add_argument("--pg-dir")
    r = sub.add_parser("report")
    r.add_argument("before")
    r.add_argument("after")
    r.add_argument("loadtest")
    r.add_argument("--game", required=True, choices=sorted(INPUTS))
    r.add_argument("--waldump", metavar="PGBIN")
    r.add_argument("--pg-dir")
    a = ap.parse_args()
    snap(a) if a.cmd == "snap" else report(a)


if __name__ == "__main__":
    main()
