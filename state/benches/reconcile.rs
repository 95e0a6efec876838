//! State benchmarks per tick, each against baselines in the same run.
//!
//! Timed (criterion): `SessionDoc::set_state` + commit of a real arena snapshot per tick at
//! 8/32/64 players (with compaction whenever the default policy asks, as the host does), the
//! same with the former reading reconcile (`set_state_reading`), the same plus one full
//! Automerge sync exchange with a replica, and the baselines: a whole-snapshot MessagePack
//! encode and a `Vec` copy of the same bytes.
//! Sizes (printed once, not timed): full MessagePack snapshot, Automerge change bytes per
//! tick (`save_incremental`), sync bytes per tick (both directions, `automerge::sync`), and
//! the MessagePack size of the change itself (changed leaves with their paths), for arena
//! ticks and for a tictactoe move (the "small state change" of DESIGN §9).
//! Run: `cargo bench -p minotaur-state --bench reconcile`, then `python3 scripts/bench-report.py`.

use std::hint::black_box;

use automerge::sync::{self, SyncDoc};
use automerge::AutoCommit;
use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion};
use minotaur_guest::testing::Harness;
use minotaur_state::{CompactionPolicy, SessionDoc, SessionMeta};
use rmpv::Value;

/// Consecutive ticks recorded per player count; the benches cycle through them.
const TICKS: usize = 200;

/// `TICKS` consecutive arena snapshots with `players` players steering around.
fn arena_snapshots(players: u64) -> Vec<Vec<u8>> {
    let config = arena::Config {
        target_score: u32::MAX,
        tick_limit: u64::MAX,
        ..arena::Config::default()
    };
    let mut h = Harness::<arena::Arena>::new(7, config);
    let ids: Vec<_> = (0..players)
        .map(|i| h.join(&format!("player-{i}")).expect("join"))
        .collect();
    let steer = |h: &mut Harness<arena::Arena>, t: usize| {
        for (i, id) in ids.iter().enumerate() {
            // Each player turns every 10 ticks, staggered: a realistic trickle of inputs.
            if (t + i).is_multiple_of(10) {
                let a = ((t / 10 + i) % 16) as f32 * 0.39;
                h.input(
                    *id,
                    &arena::Input {
                        dir: Some([a.cos(), a.sin()]),
                        boost: false,
                    },
                )
                .expect("input");
            }
        }
    };
    for t in 0..20 {
        steer(&mut h, t);
        h.tick();
    }
    (0..TICKS)
        .map(|t| {
            steer(&mut h, t);
            h.tick();
            h.snapshot()
        })
        .collect()
}

/// The snapshots of a tictactoe game, one per move (the first is after the joins).
fn tictactoe_snapshots() -> Vec<Vec<u8>> {
    let mut h = Harness::<tictactoe::TicTacToe>::new(7, ());
    let a = h.join("alice").unwrap();
    let b = h.join("bob").unwrap();
    let mut out = vec![h.snapshot()];
    for (p, cell) in [(a, 0), (b, 4), (a, 1), (b, 8)] {
        h.input(p, &tictactoe::Move { cell }).unwrap();
        out.push(h.snapshot());
    }
    out
}

fn meta(game: &str) -> SessionMeta {
    SessionMeta {
        session: "bench".into(),
        game: game.into(),
        module_hash: "0".repeat(64),
        rules_version: 1,
        owner_node: "bench".into(),
        tick_hz: 20,
        ..SessionMeta::default()
    }
}

/// Changed leaves of `new` against `old`, each as `[path, value]`.
fn diff(old: &Value, new: &Value, path: &mut Vec<Value>, out: &mut Vec<Value>) {
    match (old, new) {
        (Value::Map(a), Value::Map(b)) if a.len() == b.len() => {
            for ((ka, va), (kb, vb)) in a.iter().zip(b) {
                if ka != kb {
                    out.push(Value::Array(vec![Value::Array(path.clone()), new.clone()]));
                    return;
                }
                path.push(kb.clone());
                diff(va, vb, path, out);
                path.pop();
            }
        }
        (Value::Array(a), Value::Array(b)) if a.len() == b.len() => {
            for (i, (va, vb)) in a.iter().zip(b).enumerate() {
                path.push(Value::from(i));
                diff(va, vb, path, out);
                path.pop();
            }
        }
        _ if old == new => {}
        _ => out.push(Value::Array(vec![Value::Array(path.clone()), new.clone()])),
    }
}

/// MessagePack size of what changed between two snapshots (paths included).
fn change_msgpack_len(old: &[u8], new: &[u8]) -> usize {
    let old = rmpv::decode::read_value(&mut &old[..]).unwrap();
    let new = rmpv::decode::read_value(&mut &new[..]).unwrap();
    let mut out = Vec::new();
    diff(&old, &new, &mut Vec::new(), &mut out);
    let mut bytes = Vec::new();
    rmpv::encode::write_value(&mut bytes, &Value::Array(out)).unwrap();
    bytes.len()
}

/// An owner document and a replica kept in sync by `automerge::sync`.
struct Pair {
    owner: SessionDoc,
    replica: AutoCommit,
    owner_state: sync::State,
    replica_state: sync::State,
}

impl Pair {
    fn new(game: &str, first: &[u8]) -> Pair {
        let mut owner = SessionDoc::new(&meta(game));
        owner.set_state(first).unwrap();
        owner.commit();
        let replica = AutoCommit::load(&owner.save()).unwrap();
        let mut pair = Pair {
            owner,
            replica,
            owner_state: sync::State::new(),
            replica_state: sync::State::new(),
        };
        pair.sync();
        pair
    }

    /// One full exchange until both sides are quiet; returns (owner→replica, replica→owner) bytes.
    fn sync(&mut self) -> (usize, usize) {
        let (mut down, mut up) = (0, 0);
        loop {
            let m = self
                .owner
                .automerge()
                .sync()
                .generate_sync_message(&mut self.owner_state);
            let sent = m.is_some();
            if let Some(m) = m {
                let bytes = m.encode();
                down += bytes.len();
                let m = sync::Message::decode(&bytes).unwrap();
                self.replica
                    .sync()
                    .receive_sync_message(&mut self.replica_state, m)
                    .unwrap();
            }
            let r = self
                .replica
                .sync()
                .generate_sync_message(&mut self.replica_state);
            let replied = r.is_some();
            if let Some(r) = r {
                let bytes = r.encode();
                up += bytes.len();
                let r = sync::Message::decode(&bytes).unwrap();
                self.owner
                    .automerge()
                    .sync()
                    .receive_sync_message(&mut self.owner_state, r)
                    .unwrap();
            }
            if !sent && !replied {
                return (down, up);
            }
        }
    }
}

/// Prints the per-step sizes of a snapshot sequence (not timed).
fn report_sizes(label: &str, snaps: &[Vec<u8>]) {
    let mut pair = Pair::new(label, &snaps[0]);
    pair.owner.save();
    let steps = snaps.len() - 1;
    let (mut change, mut down, mut up, mut delta, mut ops) = (0, 0, 0, 0, 0);
    for w in snaps.windows(2) {
        ops += pair.owner.set_state(&w[1]).unwrap().ops;
        pair.owner.commit();
        change += pair.owner.save_incremental().len();
        let (d, u) = pair.sync();
        down += d;
        up += u;
        delta += change_msgpack_len(&w[0], &w[1]);
    }
    let avg = |x: usize| x as f64 / steps as f64;
    let full = avg(snaps[1..].iter().map(Vec::len).sum());
    println!(
        "sizes {label}: snapshot {full:.0} B; per step: ops {:.1}, change {:.0} B ({:.3}x snapshot), \
         sync owner->replica {:.0} B ({:.3}x snapshot, {:.2}x change-as-msgpack), \
         sync replica->owner {:.0} B, change-as-msgpack {:.0} B",
        avg(ops),
        avg(change),
        avg(change) / full,
        avg(down),
        avg(down) / full,
        avg(down) / avg(delta),
        avg(up),
        avg(delta),
    );
}

fn bench(c: &mut Criterion) {
    let policy = CompactionPolicy::default();
    report_sizes("tictactoe/move", &tictactoe_snapshots());
    for players in [8u64, 32, 64] {
        let snaps = arena_snapshots(players);
        report_sizes(&format!("arena/{players}"), &snaps);

        let mut g = c.benchmark_group("state");
        // Baselines: what producing and copying the whole state costs.
        let h = {
            let mut h = Harness::<arena::Arena>::from_snapshot(&snaps[0], 1).unwrap();
            h.tick();
            h
        };
        g.bench_function(BenchmarkId::new("baseline_msgpack_encode", players), |b| {
            b.iter(|| black_box(h.snapshot()))
        });
        let bytes = &snaps[0];
        g.bench_function(BenchmarkId::new("baseline_vec_copy", players), |b| {
            b.iter(|| black_box(black_box(bytes).to_vec()))
        });

        // The reconcile before the plain-Rust diff: it reads the document to find changes.
        let mut doc = SessionDoc::new(&meta("arena"));
        let mut i = 0;
        g.bench_function(BenchmarkId::new("reconcile_commit_reading", players), |b| {
            b.iter(|| {
                i = (i + 1) % TICKS;
                doc.set_state_reading(&snaps[i]).unwrap();
                doc.commit();
                if doc.should_compact(&policy) {
                    doc.compact().unwrap();
                }
            })
        });

        // The host's path; the `_compact_N` variants shorten the history: Automerge's cost
        // per put could grow with the overwrites a key's column holds until compaction
        // (default: 1,000 changes).
        let variants = [
            ("reconcile_commit".to_string(), policy.clone()),
            (
                "reconcile_commit_compact_50".to_string(),
                CompactionPolicy {
                    max_changes: 50,
                    ..policy.clone()
                },
            ),
            (
                "reconcile_commit_compact_200".to_string(),
                CompactionPolicy {
                    max_changes: 200,
                    ..policy.clone()
                },
            ),
        ];
        for (id, policy) in variants {
            let mut doc = SessionDoc::new(&meta("arena"));
            let mut i = 0;
            g.bench_function(BenchmarkId::new(id, players), |b| {
                b.iter(|| {
                    i = (i + 1) % TICKS;
                    doc.set_state(&snaps[i]).unwrap();
                    doc.commit();
                    if doc.should_compact(&policy) {
                        doc.compact().unwrap();
                    }
                })
            });
        }

        let mut pair = Pair::new("arena", &snaps[0]);
        let mut i = 0;
        g.bench_function(BenchmarkId::new("reconcile_commit_sync", players), |b| {
            b.iter(|| {
                i = (i + 1) % TICKS;
                pair.owner.set_state(&snaps[i]).unwrap();
                pair.owner.commit();
                black_box(pair.sync());
            })
        });
        g.finish();
    }
}

criterion_group!(benches, bench);
criterion_main!(benches);
