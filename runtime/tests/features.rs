//! What `Runtime::load` refuses before Cranelift runs: every wasm feature the
//! guest ABI does not allow (one hand-written module per feature, each refused
//! with `forbidden_feature` naming it), too many functions, a function body
//! too large — and a compile that takes longer than its limit.

mod common;

use std::time::Duration;

use common::{runtime, small_limits, Guest};
use minotaur_runtime::{Limits, LoadError, Runtime, REFUSED_FEATURES};

/// One module per refused feature, each using that feature and nothing else
/// beyond wasm 2.0.
const CASES: &[(&str, &str)] = &[
    ("memory64", "(module (memory i64 1))"),
    ("multi-memory", "(module (memory 1) (memory 1))"),
    ("threads", "(module (memory 1 1 shared))"),
    (
        "threads",
        "(module (memory 1) (func (drop (i32.atomic.load (i32.const 0)))))",
    ),
    ("tail-call", "(module (func $f (return_call $f)))"),
    ("gc", "(module (type (struct (field i32))))"),
    (
        "function-references",
        "(module (type $t (func)) (func (param (ref $t))))",
    ),
    (
        "exceptions",
        "(module (tag $e) (func (try_table (catch_all 0)) ))",
    ),
    (
        "relaxed-simd",
        "(module (func (result v128) (i8x16.relaxed_swizzle (v128.const i64x2 0 0) (v128.const i64x2 0 0))))",
    ),
    (
        "extended-const",
        "(module (global i32 (i32.add (i32.const 1) (i32.const 2))))",
    ),
    (
        "custom-page-sizes",
        "(module (memory 1 (pagesize 1)))",
    ),
    (
        "wide-arithmetic",
        "(module (func (result i64 i64) (i64.add128 (i64.const 0) (i64.const 0) (i64.const 0) (i64.const 0))))",
    ),
];

#[test]
fn every_refused_feature_is_named_in_a_typed_error() {
    let rt = runtime();
    for (feature, wat) in CASES {
        let wasm = wat::parse_str(wat).unwrap_or_else(|e| panic!("{wat}: {e}"));
        match rt.load(&wasm) {
            Err(e @ LoadError::ForbiddenFeature { .. }) => {
                assert_eq!(e.code(), "forbidden_feature");
                let LoadError::ForbiddenFeature { feature: got, .. } = e else {
                    unreachable!()
                };
                assert_eq!(got, *feature, "{wat}");
            }
            other => panic!("{wat}: expected forbidden_feature `{feature}`, got {other:?}"),
        }
    }
    assert_eq!(rt.compiled_count(), 0, "a refused module reached Cranelift");
}

#[test]
fn a_module_using_two_refused_features_is_refused_by_one_of_them() {
    let wasm = wat::parse_str("(module (memory i64 1) (func $f (return_call $f)))").unwrap();
    let e = runtime().load(&wasm).unwrap_err();
    assert!(
        matches!(
            e,
            LoadError::ForbiddenFeature {
                feature: "memory64",
                ..
            }
        ),
        "{e:?}"
    );
}

#[test]
fn every_refused_feature_has_a_case() {
    // A feature added to the refused list must come with a module that uses it
    // (stack switching and memory control have no text syntax in `wat` yet).
    let untested = ["stack-switching", "memory-control"];
    for (name, _) in REFUSED_FEATURES {
        assert!(
            untested.contains(name) || CASES.iter().any(|(f, _)| f == name),
            "no test module for the refused feature `{name}`"
        );
    }
}

#[test]
fn what_rust_and_c_toolchains_emit_is_allowed() {
    // Wasm 2.0 beyond the MVP: bulk memory, sign extension, saturating
    // float-to-int, multi-value, reference types (function tables), SIMD.
    let rt = runtime();
    let extras = r#"
  (table 2 funcref)
  (elem (i32.const 0) func $two)
  (func $two (result i32 i32) (i32.const 1) (i32.const 2))
  (func (export "extras") (result i32)
    (memory.fill (i32.const 8192) (i32.const 0) (i32.const 16))
    (memory.copy (i32.const 8192) (i32.const 8200) (i32.const 8))
    (drop (i32.trunc_sat_f32_s (f32.const 1.5)))
    (drop (v128.const i64x2 1 2))
    (call_indirect (result i32 i32) (i32.const 0))
    (drop)
    (drop)
    (i32.extend8_s (i32.const 255)))
)"#;
    let guest = Guest {
        replace: vec![("\n)", extras)],
        ..Guest::default()
    };
    rt.load(&guest.wasm()).expect("wasm 2.0 features load");
}

#[test]
fn too_many_functions_are_refused_before_compiling() {
    let rt = Runtime::new(Limits {
        max_functions: 5,
        ..small_limits()
    })
    .unwrap();
    // The ABI guest defines 8 functions.
    let e = rt.load(&Guest::default().wasm()).unwrap_err();
    assert_eq!(e.code(), "too_many_functions", "{e}");
    assert!(
        matches!(e, LoadError::TooManyFunctions { count: 8, max: 5 }),
        "{e:?}"
    );
    assert_eq!(rt.compiled_count(), 0);
}

#[test]
fn a_function_body_too_large_is_refused_before_compiling() {
    let rt = Runtime::new(Limits {
        max_function_body_bytes: 64,
        ..small_limits()
    })
    .unwrap();
    let big = Guest {
        event_body: format!(
            "{} {}",
            "(drop (i32.const 1000000))".repeat(20),
            common::fixed_output()
        ),
        ..Guest::default()
    };
    let e = rt.load(&big.wasm()).unwrap_err();
    assert_eq!(e.code(), "function_too_large", "{e}");
    assert_eq!(rt.compiled_count(), 0);
    // The same guest without the padding is within the limit.
    rt.load(&Guest::default().wasm())
        .expect("small bodies load");
}

#[test]
fn a_compile_over_its_time_limit_is_refused_and_the_runtime_goes_on() {
    let wasm = std::fs::read(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../games/dist/arena.wasm"
    ))
    .expect("games/dist/arena.wasm (run scripts/build-games.sh)");
    // No compile of a real game finishes within a microsecond.
    let rt = Runtime::new(Limits {
        compile_timeout: Duration::from_micros(1),
        ..small_limits()
    })
    .unwrap();
    let e = rt.load(&wasm).unwrap_err();
    assert_eq!(e.code(), "compile_timeout", "{e}");
    assert!(rt.get(&minotaur_runtime::ModuleHash::of(&wasm)).is_none());

    // A runtime with room for the compile loads the same bytes.
    let rt = runtime();
    rt.load(&wasm)
        .expect("arena loads within the default limit");
}
