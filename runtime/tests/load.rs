//! `Runtime::load`: what a valid module gives, the module cache, and every
//! way a module is refused (each with its stable error code).

mod common;

use common::{info, runtime, small_limits, Guest, GARBAGE_AT};
use minotaur_abi::{encode, Event, ABI_VERSION};
use minotaur_runtime::{LoadError, ModuleHash, Runtime};

#[test]
fn valid_module_loads_with_its_info() {
    let rt = runtime();
    let wasm = Guest::default().wasm();
    let module = rt.load(&wasm).unwrap();
    assert_eq!(module.info(), &info());
    assert_eq!(module.hash(), ModuleHash::of(&wasm));
    assert_eq!(module.wasm_len(), wasm.len());
    assert_eq!(rt.get(&module.hash()).unwrap().hash(), module.hash());
}

#[test]
fn second_load_of_same_bytes_is_a_cache_hit() {
    let rt = runtime();
    let wasm = Guest::default().wasm();
    let first = rt.load(&wasm).unwrap();
    assert_eq!(rt.compiled_count(), 1);
    let second = rt.load(&wasm).unwrap();
    assert_eq!(rt.compiled_count(), 1, "same bytes compiled twice");
    assert_eq!(first.hash(), second.hash());

    // Different bytes are a different module.
    let mut renamed = info();
    renamed.name = "wat-ech2".into();
    let other = Guest {
        info_bytes: encode(&renamed).unwrap(),
        ..Guest::default()
    };
    let other = rt.load(&other.wasm()).unwrap();
    assert_eq!(rt.compiled_count(), 2);
    assert_ne!(other.hash(), first.hash());
    assert_eq!(other.info().name, "wat-ech2");
    assert_eq!(rt.cached().len(), 2);
}

#[test]
fn runtime_clones_share_the_cache() {
    let rt = runtime();
    let clone = rt.clone();
    let module = rt.load(&Guest::default().wasm()).unwrap();
    assert!(clone.get(&module.hash()).is_some());
    assert!(clone.get(&ModuleHash::of(b"nothing")).is_none());
}

#[test]
fn instances_are_independent() {
    let rt = runtime();
    let module = rt.load(&Guest::default().wasm()).unwrap();
    let mut a = module.instantiate().unwrap();
    let mut b = module.instantiate().unwrap();
    let tick = Event::Tick { n: 1, dt_ms: 50 };
    a.event(&tick).unwrap();
    a.event(&tick).unwrap();
    b.event(&tick).unwrap();
    // The counter is a one-byte MessagePack fixint in each instance's memory.
    assert_eq!(a.snapshot().unwrap(), vec![2]);
    assert_eq!(b.snapshot().unwrap(), vec![1]);
    // A fresh instance starts from the module's image, not from a's memory.
    assert_eq!(module.instantiate().unwrap().snapshot().unwrap(), vec![0]);
}

fn load_err(rt: &Runtime, wasm: &[u8]) -> LoadError {
    match rt.load(wasm) {
        Ok(m) => panic!("module {} loaded but should not", m.hash()),
        Err(e) => e,
    }
}

#[test]
fn not_wasm_is_refused() {
    let rt = runtime();
    let err = load_err(&rt, b"hello");
    assert!(matches!(err, LoadError::NotWasm(_)), "{err:?}");
    assert_eq!(err.code(), "not_wasm");
    // WAT text is not a module either: the host only takes binaries.
    assert_eq!(
        load_err(&rt, Guest::default().wat().as_bytes()).code(),
        "not_wasm"
    );
}

#[test]
fn malformed_wasm_is_a_compile_error() {
    let rt = runtime();
    let mut wasm = Guest::default().wasm();
    wasm.truncate(wasm.len() / 2);
    let err = load_err(&rt, &wasm);
    assert!(matches!(err, LoadError::Compile(_)), "{err:?}");
    assert_eq!(err.code(), "compile_failed");
    assert_eq!(rt.compiled_count(), 0);
}

#[test]
fn too_large_is_refused_before_anything_else() {
    let rt = Runtime::new(minotaur_runtime::Limits {
        max_module_bytes: 100,
        ..small_limits()
    })
    .unwrap();
    let wasm = Guest::default().wasm();
    assert!(wasm.len() > 100);
    let err = load_err(&rt, &wasm);
    assert!(
        matches!(err, LoadError::TooLarge { size, max: 100 } if size == wasm.len()),
        "{err:?}"
    );
    assert_eq!(err.code(), "module_too_large");
    // Also for bytes that are not wasm: size is checked first.
    assert_eq!(load_err(&rt, &[b'x'; 101]).code(), "module_too_large");
}

#[test]
fn missing_export_is_refused() {
    let rt = runtime();
    let guest = Guest {
        replace: vec![("(export \"minotaur_snapshot\")", "(export \"snapshot\")")],
        ..Guest::default()
    };
    let err = load_err(&rt, &guest.wasm());
    assert_eq!(err.code(), "missing_export");
    assert!(err.to_string().contains("minotaur_snapshot"), "{err}");

    let no_memory = Guest {
        replace: vec![("(memory (export \"memory\") 1)", "(memory 1)")],
        ..Guest::default()
    };
    let err = load_err(&rt, &no_memory.wasm());
    assert_eq!(err.code(), "missing_export");
    assert!(err.to_string().contains("`memory`"), "{err}");
}

#[test]
fn wrong_export_signature_is_refused() {
    let rt = runtime();
    let guest = Guest {
        replace: vec![(
            "(func (export \"minotaur_free\") (param i32 i32))",
            "(func (export \"minotaur_free\") (param i32))",
        )],
        ..Guest::default()
    };
    let err = load_err(&rt, &guest.wasm());
    assert!(matches!(err, LoadError::MissingExport(_)), "{err:?}");
    assert_eq!(err.code(), "missing_export");
    assert_eq!(
        err.to_string(),
        "export `minotaur_free` has type (i32) -> (), expected (i32, i32) -> ()"
    );

    let i32_result = Guest {
        info_body: "(i32.const 0)".into(),
        replace: vec![(
            "(func (export \"minotaur_info\") (result i64)",
            "(func (export \"minotaur_info\") (result i32)",
        )],
        ..Guest::default()
    };
    let err = load_err(&rt, &i32_result.wasm());
    assert_eq!(
        err.to_string(),
        "export `minotaur_info` has type () -> i32, expected () -> i64"
    );
}

#[test]
fn wrong_abi_version_is_refused() {
    let rt = runtime();
    let guest = Guest {
        abi_version: 2,
        ..Guest::default()
    };
    let err = load_err(&rt, &guest.wasm());
    assert!(
        matches!(
            err,
            LoadError::WrongAbiVersion {
                found: 2,
                expected: ABI_VERSION
            }
        ),
        "{err:?}"
    );
    assert_eq!(err.code(), "wrong_abi_version");
}

#[test]
fn any_import_is_refused() {
    let rt = runtime();
    let guest = Guest {
        imports: r#"(import "env" "clock" (func))"#,
        ..Guest::default()
    };
    let err = load_err(&rt, &guest.wasm());
    assert!(matches!(err, LoadError::ForbiddenImport(_)), "{err:?}");
    assert_eq!(err.code(), "forbidden_import");
    assert!(err.to_string().contains("`env`.`clock`"), "{err}");

    let wasi = Guest {
        imports: r#"(import "wasi_snapshot_preview1" "random_get" (func (param i32 i32) (result i32)))"#,
        ..Guest::default()
    };
    assert_eq!(load_err(&rt, &wasi.wasm()).code(), "forbidden_import");
}

#[test]
fn garbage_game_info_is_refused() {
    let rt = runtime();
    let garbage = Guest {
        info_body: common::region(GARBAGE_AT, 4),
        ..Guest::default()
    };
    let err = load_err(&rt, &garbage.wasm());
    assert!(matches!(err, LoadError::Info(_)), "{err:?}");
    assert_eq!(err.code(), "bad_game_info");

    let trapping = Guest {
        info_body: "unreachable".into(),
        ..Guest::default()
    };
    let err = load_err(&rt, &trapping.wasm());
    assert!(
        matches!(&err, LoadError::Info(g) if g.code() == "guest_trap"),
        "{err:?}"
    );

    let mut nonsense = info();
    nonsense.min_players = 5; // more than max_players
    let nonsense = Guest {
        info_bytes: encode(&nonsense).unwrap(),
        ..Guest::default()
    };
    assert_eq!(load_err(&rt, &nonsense.wasm()).code(), "bad_game_info");
}

#[test]
fn module_hash_hex_round_trips() {
    let h = ModuleHash::of(&Guest::default().wasm());
    assert_eq!(ModuleHash::from_hex(&h.to_string()).unwrap(), h);
    assert_eq!(
        ModuleHash::from_hex("nope").unwrap_err().code(),
        "bad_module_hash"
    );
}

#[test]
fn default_limits_reserve_20k_slots_and_run() {
    // 20,000 slots × 32 MiB must fit in the address space; this is the
    // configuration a node runs with.
    let rt = Runtime::new(minotaur_runtime::Limits::default()).unwrap();
    assert_eq!(rt.limits().max_instances, 20_000);
    let module = rt.load(&Guest::default().wasm()).unwrap();
    let mut g = module.instantiate().unwrap();
    assert_eq!(
        g.event(&Event::Leave { player: 1 }).unwrap(),
        common::output()
    );
}
