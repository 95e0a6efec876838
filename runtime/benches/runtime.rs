//! Runtime benchmarks, each against a baseline in the same run:
//! (a) a bare wasmtime call of an empty export (the floor),
//! (b) instantiating the WAT guest from its `InstancePre` (a session start),
//! (c) one `GuestInstance::event` round trip (encode, alloc, call, decode).
//! Run with `cargo bench -p minotaur-runtime`; compare (c)/(a) against the
//! ≤ 50× target and (b) against ≤ 20 µs.

use std::hint::black_box;

use criterion::{criterion_group, criterion_main, Criterion};
use minotaur_abi::{encode, pack_region, Event, GameInfo, Output};
use minotaur_runtime::{Limits, Runtime};

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

criterion_group!(benches, bench);
criterion_main!(benches);
