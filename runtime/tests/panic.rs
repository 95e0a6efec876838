//! The panic import, `minotaur`.`panic(ptr, len)`, through real wasmtime: a
//! guest that reports a panic and traps fails with `GuestError::Panicked` and
//! its message (cut to 1 KiB, control characters escaped); a report is
//! forgotten at the next call; a bad region or a wrong signature cannot hurt.

mod common;

use common::{runtime, Guest};
use minotaur_runtime::{Event, GuestError, LoadError};

const PANIC_IMPORT: &str = r#"(import "minotaur" "panic" (func $panic (param i32 i32)))"#;
const MEMORY: &str = r#"(memory (export "memory") 1)"#;

fn join() -> Event {
    Event::Join {
        player: 1,
        name: "p".into(),
    }
}

/// A guest whose `minotaur_event` runs `body`, with `data` placed at 0x8000.
fn guest(body: &str, data: &'static str) -> Guest {
    Guest {
        imports: PANIC_IMPORT,
        event_body: body.to_owned(),
        replace: vec![(MEMORY, data)],
        ..Guest::default()
    }
}

fn leak(s: String) -> &'static str {
    Box::leak(s.into_boxed_str())
}

#[test]
fn a_reported_panic_comes_back_with_its_message_cleaned() {
    let rt = runtime();
    let data = leak(format!(
        r#"{MEMORY} (data (i32.const 0x8000) "boom\n\1b[31mfake log line\ff")"#
    ));
    let g = guest(
        "(call $panic (i32.const 0x8000) (i32.const 24)) unreachable",
        data,
    );
    let module = rt.load(&g.wasm()).expect("the panic import is allowed");
    let mut i = module.instantiate().unwrap();
    let err = i.event(&join()).unwrap_err();
    assert_eq!(err.code(), "guest_trap", "a panic keeps the trap's code");
    let GuestError::Panicked { message } = &err else {
        panic!("expected Panicked, got {err:?}");
    };
    assert_eq!(message, "boom\\n\\u{1b}[31mfake log line\u{FFFD}");
    assert_eq!(err.panic_message(), Some(message.as_str()));
    assert!(!err.to_string().contains('\n'), "{err}");
}

#[test]
fn a_long_message_is_cut_to_one_kib() {
    let rt = runtime();
    let data = leak(format!(
        r#"{MEMORY} (data (i32.const 0x8000) "{}")"#,
        "x".repeat(5000)
    ));
    let g = guest(
        "(call $panic (i32.const 0x8000) (i32.const 5000)) unreachable",
        data,
    );
    let mut i = rt.load(&g.wasm()).unwrap().instantiate().unwrap();
    let err = i.event(&join()).unwrap_err();
    let message = err.panic_message().expect("a panic");
    assert_eq!(message, format!("{}…", "x".repeat(1024)));
}

#[test]
fn a_region_outside_memory_gives_a_placeholder_not_a_fault() {
    let rt = runtime();
    let g = guest(
        "(call $panic (i32.const -16) (i32.const 64)) unreachable",
        MEMORY,
    );
    let mut i = rt.load(&g.wasm()).unwrap().instantiate().unwrap();
    let err = i.event(&join()).unwrap_err();
    let message = err.panic_message().expect("still a panic");
    assert!(message.contains("outside memory"), "{message}");
}

#[test]
fn a_report_without_a_trap_is_harmless_and_forgotten_by_the_next_call() {
    let rt = runtime();
    let data = leak(format!(r#"{MEMORY} (data (i32.const 0x8000) "stale")"#));
    // The first event reports a "panic" and returns normally; the second traps
    // without reporting: it must not inherit the first call's message.
    let body = format!(
        "(if (i32.eq (i32.load8_u (i32.const {at})) (i32.const 1))
           (then (call $panic (i32.const 0x8000) (i32.const 5)))
           (else unreachable))
         {ok}",
        at = common::COUNTER_AT,
        ok = common::fixed_output(),
    );
    let g = guest(&body, data);
    let mut i = rt.load(&g.wasm()).unwrap().instantiate().unwrap();
    i.event(&join()).expect("a report alone is not a failure");
    let err = i.event(&join()).unwrap_err();
    assert!(matches!(err, GuestError::Trap(_)), "{err:?}");
    assert_eq!(err.panic_message(), None);
}

#[test]
fn a_panic_import_of_another_signature_is_refused() {
    let rt = runtime();
    let g = Guest {
        imports: r#"(import "minotaur" "panic" (func (param i32 i32) (result i32)))"#,
        ..Guest::default()
    };
    let err = rt.load(&g.wasm()).unwrap_err();
    assert!(matches!(err, LoadError::ForbiddenImport(_)), "{err:?}");
    assert!(
        err.to_string().contains("(i32, i32) -> i32"),
        "the message names the wrong signature: {err}"
    );
}
