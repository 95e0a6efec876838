//! Extism against a bare wasmtime call of the same engine version, in the same run:
//! (a) the floor, a typed call of an empty export; (b) a plugin instance from a
//! pre-compiled plugin (Extism's `CompiledPlugin`, like Minotaur's warm module);
//! (c) `Plugin::call` of an export that returns 0 at once, with no input and with a
//! 64-byte input (about one Minotaur input event). Compare the ratios to (a) with
//! `runtime/benches/runtime.rs` (Minotaur's instantiate and event round trip against its
//! own bare call): docs/BENCHMARKS.md, "Peers side by side".

use std::hint::black_box;

use criterion::{criterion_group, criterion_main, Criterion};
use extism::{CompiledPlugin, Manifest, Plugin, PluginBuilder, Wasm};

const PLUGIN: &str = r#"(module
  (memory (export "memory") 1)
  (func (export "noop") (result i32) (i32.const 0))
  (func (export "empty"))
)"#;

fn bench(c: &mut Criterion) {
    let wasm = wat::parse_str(PLUGIN).unwrap();

    // (a) Baseline: a plain engine, a plain call.
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

    let manifest = Manifest::new([Wasm::data(wasm.clone())]);
    let compiled = CompiledPlugin::new(PluginBuilder::new(manifest).with_wasi(false)).unwrap();

    // (b) A new plugin instance from the compiled plugin.
    c.bench_function("extism/instantiate", |b| {
        b.iter(|| black_box(Plugin::new_from_compiled(&compiled).unwrap()))
    });

    // (c) The call itself: input into the kernel's memory, call, output back.
    let mut plugin = Plugin::new_from_compiled(&compiled).unwrap();
    c.bench_function("extism/call_noop", |b| {
        b.iter(|| {
            let out: &[u8] = plugin.call("noop", &[][..]).unwrap();
            black_box(out.len())
        })
    });
    let input = [7u8; 64];
    c.bench_function("extism/call_noop_64B", |b| {
        b.iter(|| {
            let out: &[u8] = plugin.call("noop", &input[..]).unwrap();
            black_box(out.len())
        })
    });
}

criterion_group!(benches, bench);
criterion_main!(benches);
