//! Runtime benchmarks, each against a baseline in the same run:
//! (a) a bare wasmtime call of an empty export (the floor),
//! (b) instantiating the WAT guest from its `InstancePre` (a session start),
//! (c) one `GuestInstance::event` round trip (encode, alloc, call, decode),
//! (d) the same for the real games in `games/dist` (or `games/dist/test`):
//!     instantiate tictactoe and arena, a tictactoe move, and an arena input
//!     and tick at 8/32/64 players. Skipped when the wasm files are missing
//!     (build them with `scripts/build-games.sh`).
//! Run with `cargo bench -p minotaur-runtime --bench runtime`, then
//! `python3 scripts/bench-report.py` for the ratios against (a); compare the
//! round trips against the ≤ 50× target and (b) against ≤ 20 µs.

use std::hint::black_box;
use std::path::PathBuf;

use criterion::{criterion_group, criterion_main, BatchSize, BenchmarkId, Criterion};
use minotaur_abi::{encode, pack_region, Event, GameInfo, Init, Output};
use minotaur_runtime::{GameModule, GuestInstance, Limits, Runtime};

/// The smallest guest that satisfies the ABI: fixed info and output regions.
fn guest_wat() -> String {
    let info = encode(&GameInfo {
        name: "bench".into(),
        rules_version: 1,
        min_players: 1,
        max_players: 8,
        tick_hz: 20,
    })
    .unwrap();
    let out = encode(&Output::default()).unwrap();
    let esc = |b: &[u8]| b.iter().map(|b| format!("\\{b:02x}")).collect::<String>();
    let info_region = pack_region(16, info.len() as u32) as i64;
    let out_region = pack_region(512, out.len() as u32) as i64;
    format!(
        r#"(module
  (memory (export "memory") 1)
  (data (i32.const 16) "{info}")
  (data (i32.const 512) "{out}")
  (func (export "minotaur_abi_version") (result i32) (i32.const 1))
  (func (export "minotaur_alloc") (param i32) (result i32) (i32.const 4096))
  (func (export "minotaur_free") (param i32 i32))
  (func (export "minotaur_info") (result i64) (i64.const {info_region}))
  (func (export "minotaur_init") (param i32 i32) (result i64) (i64.const {out_region}))
  (func (export "minotaur_event") (param i32 i32) (result i64) (i64.const {out_region}))
  (func (export "minotaur_snapshot") (result i64) (i64.const {out_region}))
  (func (export "minotaur_restore") (param i32 i32) (result i64) (i64.const {out_region}))
  (func (export "empty"))
)"#,
        info = esc(&info),
        out = esc(&out),
    )
}

fn bench(c: &mut Criterion) {
    let wasm = wat::parse_str(guest_wat()).unwrap();
    let limits = Limits {
        max_instances: 1_000,
        ..Limits::default()
    };

    // (a) Baseline: a plain engine, a plain call, no Minotaur in the way.
    let engine = wasmtime::Engine::default();
    let module = wasmtime::Module::new(&engine, &wasm).unwrap();
    let mut store = wasmtime::Store::new(&engine, ());
    let instance = wasmtime::Instance::new(&mut store, &module, &[]).unwrap();
    let empty = instance
        .get_typed_func::<(), ()>(&mut store, "empty")
        .unwrap();
    c.bench_function("baseline/bare_wasmtime_call", |b| {
        b.iter(|| empty.call(&mut store, ()).unwrap())
    });

    let rt = Runtime::new(limits).unwrap();
    let game = rt.load(&wasm).unwrap();

    // (b) A session start: a pooled slot and a copy-on-write memory image.
    c.bench_function("runtime/instantiate", |b| {
        b.iter(|| black_box(game.instantiate().unwrap()))
    });

    // (c) The hot path: one event in, its effects out.
    let mut g = game.instantiate().unwrap();
    let event = Event::Input {
        player: 7,
        data: vec![0x81, 0xa4, b'c', b'e', b'l', b'l', 4],
    };
    c.bench_function("runtime/event_round_trip", |b| {
        b.iter(|| black_box(g.event(black_box(&event)).unwrap()))
    });
}

/// The bytes of a built game, from `games/dist` or `games/dist/test`.
fn game_wasm(name: &str) -> Option<Vec<u8>> {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../games/dist");
    [
        root.join(format!("{name}.wasm")),
        root.join(format!("test/{name}.wasm")),
    ]
    .iter()
    .find_map(|p| std::fs::read(p).ok())
}

fn started(game: &GameModule, config: Vec<u8>, players: u64) -> GuestInstance {
    let mut g = game.instantiate().unwrap();
    g.init(&Init {
        session: "bench".into(),
        seed: 7,
        config,
    })
    .unwrap();
    for player in 1..=players {
        let out = g
            .event(&Event::Join {
                player,
                name: format!("p{player}"),
            })
            .unwrap();
        assert!(out.reject.is_none(), "join {player} rejected");
    }
    g
}

fn games(c: &mut Criterion) {
    let rt = Runtime::new(Limits {
        max_instances: 1_000,
        ..Limits::default()
    })
    .unwrap();

    match game_wasm("tictactoe") {
        None => eprintln!("games/dist/tictactoe.wasm missing: tictactoe cases skipped"),
        Some(wasm) => {
            let ttt = rt.load(&wasm).unwrap();
            c.bench_function("runtime/instantiate/tictactoe", |b| {
                b.iter(|| black_box(ttt.instantiate().unwrap()))
            });
            // A move needs a fresh board (nine moves end the game): the set-up
            // (instantiate, init, two joins) is outside the timing.
            let mv = encode(&tictactoe::Move { cell: 4 }).unwrap();
            let event = Event::Input {
                player: 1,
                data: mv,
            };
            c.bench_function("runtime/event_round_trip/tictactoe_move", |b| {
                b.iter_batched(
                    || started(&ttt, Vec::new(), 2),
                    |mut g| {
                        black_box(g.event(&event).unwrap());
                        g
                    },
                    BatchSize::NumIterations(64),
                )
            });
        }
    }

    match game_wasm("arena") {
        None => eprintln!("games/dist/arena.wasm missing: arena cases skipped"),
        Some(wasm) => {
            let arena = rt.load(&wasm).unwrap();
            c.bench_function("runtime/instantiate/arena", |b| {
                b.iter(|| black_box(arena.instantiate().unwrap()))
            });
            // A game that never ends, so every tick is a steady-state tick.
            let config = encode(&arena::Config {
                target_score: u32::MAX,
                tick_limit: u64::MAX,
                ..arena::Config::default()
            })
            .unwrap();
            let mut group = c.benchmark_group("runtime/event_round_trip/arena");
            for players in [8u64, 32, 64] {
                let mut g = started(&arena, config.clone(), players);
                let mut n = 0u64;
                let mut tick = |g: &mut GuestInstance| {
                    n += 1;
                    g.event(&Event::Tick { n, dt_ms: 50 }).unwrap()
                };
                for _ in 0..40 {
                    tick(&mut g);
                }
                let mut which = 0u64;
                group.bench_function(BenchmarkId::new("input", players), |b| {
                    b.iter(|| {
                        which += 1;
                        let a = (which % 16) as f32 * 0.39;
                        let data = encode(&arena::Input {
                            dir: Some([a.cos(), a.sin()]),
                            boost: false,
                        })
                        .unwrap();
                        let player = which % players + 1;
                        black_box(g.event(&Event::Input { player, data }).unwrap())
                    })
                });
                group.bench_function(BenchmarkId::new("tick", players), |b| {
                    b.iter(|| black_box(tick(&mut g)))
                });
            }
            group.finish();
        }
    }
}

criterion_group!(benches, bench, games);
criterion_main!(benches);
