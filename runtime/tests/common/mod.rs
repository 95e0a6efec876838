//! WAT guests for the runtime's integration tests: a minimal guest that
//! implements the ABI by hand, plus knobs to break it in every way the
//! runtime must catch. The MessagePack payloads are computed with
//! `minotaur_abi::encode` and embedded as data segments.

#![allow(dead_code)] // each test binary uses a different subset

use minotaur_abi::{encode, pack_region, Effect, GameInfo, Output};
use minotaur_runtime::{Limits, Runtime};

/// Where the guest keeps its payloads and its heap.
pub const INFO_AT: u32 = 16;
pub const OUTPUT_AT: u32 = 1024;
pub const GARBAGE_AT: u32 = 2048;
pub const COUNTER_AT: u32 = 3000;
pub const HEAP_AT: u32 = 4096;

pub fn info() -> GameInfo {
    GameInfo {
        name: "wat-echo".into(),
        rules_version: 3,
        min_players: 1,
        max_players: 4,
        tick_hz: 0,
    }
}

/// The fixed `Output` that `minotaur_init`/`minotaur_event` return.
pub fn output() -> Output {
    Output {
        reject: None,
        effects: vec![
            Effect::Broadcast {
                msg: vec![0x92, 1, 2],
            },
            Effect::SetTickRate { hz: 20 },
        ],
    }
}

/// How to build (or break) the guest.
pub struct Guest {
    pub abi_version: i32,
    pub imports: &'static str,
    /// Body of `minotaur_event` (must leave an i64 on the stack).
    pub event_body: String,
    /// Body of `minotaur_info`.
    pub info_body: String,
    /// Bytes behind the info region (defaults to `encode(&info())`).
    pub info_bytes: Vec<u8>,
    /// Text replacements applied last, to drop or retype an export.
    pub replace: Vec<(&'static str, &'static str)>,
}

impl Default for Guest {
    fn default() -> Self {
        let info_bytes = encode(&info()).unwrap();
        Guest {
            abi_version: 1,
            imports: "",
            event_body: fixed_output(),
            info_body: String::new(),
            info_bytes,
            replace: Vec::new(),
        }
    }
}

/// `i64.const` of the packed region holding `output()`.
pub fn fixed_output() -> String {
    let len = encode(&output()).unwrap().len() as u32;
    format!("(i64.const {})", pack_region(OUTPUT_AT, len) as i64)
}

pub fn region(ptr: u32, len: u32) -> String {
    format!("(i64.const {})", pack_region(ptr, len) as i64)
}

impl Guest {
    pub fn wat(&self) -> String {
        let out = encode(&output()).unwrap();
        let info_body = if self.info_body.is_empty() {
            region(INFO_AT, self.info_bytes.len() as u32)
        } else {
            self.info_body.clone()
        };
        let mut wat = format!(
            r#"(module
  {imports}
  (memory (export "memory") 1)
  ;; The input region of the latest call, and what `minotaur_snapshot` returns:
  ;; at first the one-byte counter (a MessagePack fixint), after a restore the
  ;; restore message itself, so tests can see exactly what the host wrote.
  (global $snap_ptr (mut i32) (i32.const {COUNTER_AT}))
  (global $snap_len (mut i32) (i32.const 1))
  (data (i32.const {INFO_AT}) "{info}")
  (data (i32.const {OUTPUT_AT}) "{out}")
  (data (i32.const {GARBAGE_AT}) "\c1\c1\c1\c1")
  (func (export "minotaur_abi_version") (result i32) (i32.const {abi}))
  ;; One region at a time (the host passes one input per call and the guest
  ;; is done with it when the call returns); grows memory to fit.
  (func (export "minotaur_alloc") (param $len i32) (result i32)
    (local $need i32)
    (local.set $need
      (i32.sub
        (i32.shr_u (i32.add (i32.add (i32.const {HEAP_AT}) (local.get $len)) (i32.const 65535)) (i32.const 16))
        (memory.size)))
    (if (i32.gt_s (local.get $need) (i32.const 0))
      (then (if (i32.eq (memory.grow (local.get $need)) (i32.const -1)) (then unreachable))))
    (i32.const {HEAP_AT}))
  (func (export "minotaur_free") (param i32 i32))
  (func (export "minotaur_info") (result i64) {info_body})
  (func (export "minotaur_init") (param i32 i32) (result i64) {fixed})
  (func (export "minotaur_event") (param $ptr i32) (param $len i32) (result i64)
    (i32.store8 (i32.const {COUNTER_AT}) (i32.add (i32.load8_u (i32.const {COUNTER_AT})) (i32.const 1)))
    {event})
  (func (export "minotaur_snapshot") (result i64)
    (i64.or
      (i64.shl (i64.extend_i32_u (global.get $snap_ptr)) (i64.const 32))
      (i64.extend_i32_u (global.get $snap_len))))
  (func (export "minotaur_restore") (param $ptr i32) (param $len i32) (result i64)
    (global.set $snap_ptr (local.get $ptr))
    (global.set $snap_len (local.get $len))
    {fixed})
)"#,
            imports = self.imports,
            info = escape(&self.info_bytes),
            out = escape(&out),
            abi = self.abi_version,
            fixed = fixed_output(),
            event = self.event_body,
        );
        for (from, to) in &self.replace {
            assert!(wat.contains(from), "replacement `{from}` matches nothing");
            wat = wat.replace(from, to);
        }
        wat
    }

    pub fn wasm(&self) -> Vec<u8> {
        wat::parse_str(self.wat()).expect("test guest is valid WAT")
    }
}

fn escape(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("\\{b:02x}")).collect()
}

/// Limits small enough that many test runtimes fit side by side.
pub fn small_limits() -> Limits {
    Limits {
        max_memory_bytes: 2 << 20,
        max_instances: 64,
        ..Limits::default()
    }
}

pub fn runtime() -> Runtime {
    Runtime::new(small_limits()).expect("runtime")
}
