//! The checks a module passes before Cranelift sees it: one `wasmparser` pass
//! that validates it against exactly the wasm features the guest ABI allows
//! ([`ALLOWED`]) and bounds the number of functions and the size of each
//! function body, so the compile that follows is bounded too; before it, the
//! size and magic ([`check_envelope`]). Called by `Runtime::load` and fuzzed
//! (`fuzz/`, target `admin_body`); the engine's `Config` pins the same features
//! (`engine.rs`), so nothing refused here can get in another way.

use wasmparser::{
    FuncValidatorAllocations, Parser, Payload, ValidPayload, Validator, WasmFeatures,
};

use crate::{Limits, LoadError};

/// The wasm features a guest may use (docs/GUEST_ABI.md, "The sandbox"): wasm
/// 2.0 as Rust, C and Zig emit it for `wasm32` — 32-bit memory, one memory,
/// mutable globals, sign extension, saturating float-to-int, multi-value,
/// bulk memory, reference types (function tables; `externref` needs GC types,
/// which stay off), and fixed-width SIMD (deterministic: NaNs are
/// canonicalised).
pub const ALLOWED: WasmFeatures = WasmFeatures::MUTABLE_GLOBAL
    .union(WasmFeatures::FLOATS)
    .union(WasmFeatures::SIGN_EXTENSION)
    .union(WasmFeatures::SATURATING_FLOAT_TO_INT)
    .union(WasmFeatures::MULTI_VALUE)
    .union(WasmFeatures::BULK_MEMORY)
    .union(WasmFeatures::BULK_MEMORY_OPT)
    .union(WasmFeatures::REFERENCE_TYPES)
    .union(WasmFeatures::CALL_INDIRECT_OVERLONG)
    .union(WasmFeatures::SIMD);

/// Every feature a guest may not use, by the name `LoadError::ForbiddenFeature`
/// reports; a name's flags are what its proposal needs beyond [`ALLOWED`].
/// A proposal that builds on another comes after it (gc after function
/// references), so a module is blamed on the smallest proposal it needs.
pub const REFUSED: &[(&str, WasmFeatures)] = &[
    ("memory64", WasmFeatures::MEMORY64),
    ("multi-memory", WasmFeatures::MULTI_MEMORY),
    (
        "threads",
        WasmFeatures::THREADS.union(WasmFeatures::SHARED_EVERYTHING_THREADS),
    ),
    ("tail-call", WasmFeatures::TAIL_CALL),
    ("function-references", WasmFeatures::FUNCTION_REFERENCES),
    ("gc", WasmFeatures::GC.union(WasmFeatures::GC_TYPES)),
    (
        "exceptions",
        WasmFeatures::EXCEPTIONS.union(WasmFeatures::LEGACY_EXCEPTIONS),
    ),
    ("relaxed-simd", WasmFeatures::RELAXED_SIMD),
    ("extended-const", WasmFeatures::EXTENDED_CONST),
    ("custom-page-sizes", WasmFeatures::CUSTOM_PAGE_SIZES),
    ("wide-arithmetic", WasmFeatures::WIDE_ARITHMETIC),
    ("stack-switching", WasmFeatures::STACK_SWITCHING),
    ("memory-control", WasmFeatures::MEMORY_CONTROL),
];

/// The first look at a module's bytes, before they are even hashed: at most
/// `Limits::max_module_bytes`, and the wasm magic `\0asm`.
pub fn check_envelope(wasm: &[u8], limits: &Limits) -> Result<(), LoadError> {
    let max = limits.max_module_bytes;
    if wasm.len() > max {
        return Err(LoadError::TooLarge {
            size: wasm.len(),
            max,
        });
    }
    if !wasm.starts_with(b"\0asm") {
        let head = &wasm[..wasm.len().min(4)];
        return Err(LoadError::NotWasm(format!(
            "expected the bytes `\\0asm`, found {head:02x?}"
        )));
    }
    Ok(())
}

/// Validate `wasm` with [`ALLOWED`] features only and within the function
/// limits. Cost: one parse and validation of the bytes (no code generation).
pub fn check(wasm: &[u8], limits: &Limits) -> Result<(), LoadError> {
    match validate(wasm, ALLOWED, Some(limits)) {
        Ok(()) => Ok(()),
        Err(Refusal::Limit(e)) => Err(e),
        Err(Refusal::Invalid(message)) => Err(match forbidden_feature(wasm) {
            Some(feature) => LoadError::ForbiddenFeature { feature, message },
            None => LoadError::Compile(message),
        }),
    }
}

enum Refusal {
    Limit(LoadError),
    Invalid(String),
}

fn validate(wasm: &[u8], features: WasmFeatures, limits: Option<&Limits>) -> Result<(), Refusal> {
    let invalid = |e: wasmparser::BinaryReaderError| Refusal::Invalid(e.to_string());
    let mut validator = Validator::new_with_features(features);
    let mut parser = Parser::new(0);
    parser.set_features(features);
    let mut allocs = FuncValidatorAllocations::default();
    let mut index = 0u32;
    for payload in parser.parse_all(wasm) {
        let payload = payload.map_err(invalid)?;
        if let Some(limits) = limits {
            check_limits(&payload, &mut index, limits)?;
        }
        if let ValidPayload::Func(func, body) = validator.payload(&payload).map_err(invalid)? {
            let mut func = func.into_validator(std::mem::take(&mut allocs));
            func.validate(&body).map_err(invalid)?;
            allocs = func.into_allocations();
        }
    }
    Ok(())
}

/// Function count (from the function section, before any body is read) and
/// each body's size in bytes.
fn check_limits(payload: &Payload<'_>, index: &mut u32, limits: &Limits) -> Result<(), Refusal> {
    match payload {
        Payload::FunctionSection(functions) if functions.count() > limits.max_functions => {
            Err(Refusal::Limit(LoadError::TooManyFunctions {
                count: functions.count(),
                max: limits.max_functions,
            }))
        }
        Payload::CodeSectionEntry(body) => {
            let size = body.range().len();
            let at = *index;
            *index += 1;
            if size > limits.max_function_body_bytes {
                return Err(Refusal::Limit(LoadError::FunctionTooLarge {
                    index: at,
                    size,
                    max: limits.max_function_body_bytes,
                }));
            }
            Ok(())
        }
        _ => Ok(()),
    }
}

/// The refused feature a module that fails validation needs, if that is why it
/// fails: the first one that alone makes it valid or, for a module using
/// several, the first without which it is invalid even with all the others.
/// Only runs for refused modules (at most twice a validation per feature).
fn forbidden_feature(wasm: &[u8]) -> Option<&'static str> {
    let valid_with = |features| validate(wasm, features, None).is_ok();
    if let Some((name, _)) = REFUSED
        .iter()
        .find(|(_, flags)| valid_with(ALLOWED.union(*flags)))
    {
        return Some(name);
    }
    let all = REFUSED
        .iter()
        .fold(ALLOWED, |acc, (_, flags)| acc.union(*flags));
    if !valid_with(all) {
        return None;
    }
    REFUSED
        .iter()
        .find(|(_, flags)| !valid_with(all.difference(*flags)))
        .map(|(name, _)| *name)
}
