//! A peer side by side: the same document changes in `yrs` (the Rust port of Yjs) and in
//! Automerge, in one run. The document is 32 players `{x, y, score}` in a map; a change is
//! either a tick (every player's `x` and `y`) or one field (one player's `score`).
//! Timed: making a change and encoding it for the wire; applying a run of encoded changes to
//! a replica. Printed: bytes per encoded change. Ratios: `python3 scripts/bench-report.py`.
//! Run: `cargo bench -p minotaur-state --bench peers`.

use std::hint::black_box;

use automerge::transaction::Transactable;
use automerge::{AutoCommit, ObjId, ObjType, ROOT};
use criterion::{criterion_group, criterion_main, BatchSize, BenchmarkId, Criterion, Throughput};
use yrs::updates::decoder::Decode;
use yrs::{Doc, Map, MapPrelim, MapRef, Transact, Update};

const PLAYERS: usize = 32;
/// Changes applied per replica in the apply benches.
const RUN: usize = 100;

#[derive(Clone, Copy)]
enum Change {
    Tick,
    OneField,
}

impl Change {
    fn name(self) -> &'static str {
        match self {
            Change::Tick => "tick32",
            Change::OneField => "one_field",
        }
    }
}

fn pos(step: usize, player: usize) -> (f64, f64) {
    let t = step as f64 * 0.05 + player as f64;
    (500.0 + 300.0 * t.cos(), 500.0 + 300.0 * t.sin())
}

struct Am {
    doc: AutoCommit,
    players: Vec<ObjId>,
}

impl Am {
    fn new() -> Am {
        let mut doc = AutoCommit::new();
        let map = doc.put_object(ROOT, "players", ObjType::Map).unwrap();
        let players = (0..PLAYERS)
            .map(|i| {
                let p = doc.put_object(&map, i.to_string(), ObjType::Map).unwrap();
                let (x, y) = pos(0, i);
                doc.put(&p, "x", x).unwrap();
                doc.put(&p, "y", y).unwrap();
                doc.put(&p, "score", 0i64).unwrap();
                p
            })
            .collect();
        doc.commit();
        Am { doc, players }
    }

    /// Makes the change of `step` and returns it encoded for the wire.
    fn change(&mut self, kind: Change, step: usize) -> Vec<u8> {
        match kind {
            Change::Tick => {
                for (i, p) in self.players.iter().enumerate() {
                    let (x, y) = pos(step, i);
                    self.doc.put(p, "x", x).unwrap();
                    self.doc.put(p, "y", y).unwrap();
                }
            }
            Change::OneField => {
                let p = &self.players[step % PLAYERS];
                self.doc.put(p, "score", step as i64).unwrap();
            }
        }
        self.doc.commit();
        self.doc
            .get_last_local_change()
            .unwrap()
            .raw_bytes()
            .to_vec()
    }
}

struct Y {
    doc: Doc,
    players: Vec<MapRef>,
}

impl Y {
    fn new() -> Y {
        let doc = Doc::with_client_id(1);
        let map = doc.get_or_insert_map("players");
        let players = {
            let mut txn = doc.transact_mut();
            (0..PLAYERS)
                .map(|i| {
                    let (x, y) = pos(0, i);
                    let p = map.insert(&mut txn, i.to_string(), MapPrelim::default());
                    p.insert(&mut txn, "x", x);
                    p.insert(&mut txn, "y", y);
                    p.insert(&mut txn, "score", 0i64);
                    p
                })
                .collect()
        };
        Y { doc, players }
    }

    fn change(&mut self, kind: Change, step: usize) -> Vec<u8> {
        let mut txn = self.doc.transact_mut();
        match kind {
            Change::Tick => {
                for (i, p) in self.players.iter().enumerate() {
                    let (x, y) = pos(step, i);
                    p.insert(&mut txn, "x", x);
                    p.insert(&mut txn, "y", y);
                }
            }
            Change::OneField => {
                let p = &self.players[step % PLAYERS];
                p.insert(&mut txn, "score", step as i64);
            }
        }
        txn.encode_update_v1()
    }
}

fn yrs_base() -> Vec<u8> {
    use yrs::ReadTxn;
    let y = Y::new();
    let txn = y.doc.transact();
    txn.encode_state_as_update_v1(&yrs::StateVector::default())
}

fn bench(c: &mut Criterion) {
    for kind in [Change::Tick, Change::OneField] {
        // Bytes per change, and the runs the apply benches replay.
        let mut am = Am::new();
        let am_base = am.doc.save();
        let am_run: Vec<Vec<u8>> = (1..=RUN).map(|s| am.change(kind, s)).collect();
        let mut y = Y::new();
        let y_base = yrs_base();
        let y_run: Vec<Vec<u8>> = (1..=RUN).map(|s| y.change(kind, s)).collect();
        let avg = |run: &[Vec<u8>]| run.iter().map(Vec::len).sum::<usize>() as f64 / RUN as f64;
        println!(
            "sizes peers/{}: automerge {:.0} B per change, yrs {:.0} B per change (automerge/yrs {:.2}x)",
            kind.name(),
            avg(&am_run),
            avg(&y_run),
            avg(&am_run) / avg(&y_run)
        );

        let mut g = c.benchmark_group("peers");
        let mut step = RUN;
        g.bench_function(BenchmarkId::new("automerge_change", kind.name()), |b| {
            b.iter(|| {
                step += 1;
                black_box(am.change(kind, step))
            })
        });
        let mut step = RUN;
        g.bench_function(BenchmarkId::new("yrs_change", kind.name()), |b| {
            b.iter(|| {
                step += 1;
                black_box(y.change(kind, step))
            })
        });

        g.throughput(Throughput::Elements(RUN as u64));
        g.bench_function(BenchmarkId::new("automerge_apply", kind.name()), |b| {
            b.iter_batched(
                || AutoCommit::load(&am_base).unwrap(),
                |mut replica| {
                    for bytes in &am_run {
                        replica.load_incremental(bytes).unwrap();
                    }
                    replica
                },
                BatchSize::SmallInput,
            )
        });
        g.bench_function(BenchmarkId::new("yrs_apply", kind.name()), |b| {
            b.iter_batched(
                || {
                    let doc = Doc::with_client_id(2);
                    doc.transact_mut()
                        .apply_update(Update::decode_v1(&y_base).unwrap())
                        .unwrap();
                    doc
                },
                |replica| {
                    // One transaction per received update, as a replica would.
                    for bytes in &y_run {
                        replica
                            .transact_mut()
                            .apply_update(Update::decode_v1(bytes).unwrap())
                            .unwrap();
                    }
                    replica
                },
                BatchSize::SmallInput,
            )
        });
        g.finish();
    }
}

criterion_group!(benches, bench);
criterion_main!(benches);
