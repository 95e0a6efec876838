//! Fuzz target `admin_body`: the body of `POST /admin/games/{game}/modules` (a wasm
//! module) through everything the node does with it before Cranelift runs:
//! `minotaur_runtime::precheck::check_envelope` (size, magic) and `precheck::check`
//! (the allowed wasm features, the function count and body size limits).
//!
//! Holds for any bytes: no panic; a module that passes validates under exactly the
//! allowed features by an independent `wasmparser` validation; a module refused for a
//! feature names one of the refused features and validates once every feature is on;
//! tighter limits never accept what the default ones refuse.

#![no_main]

use libfuzzer_sys::fuzz_target;
use minotaur_runtime::{precheck, Limits, LoadError, ALLOWED_FEATURES, REFUSED_FEATURES};
use wasmparser::Validator;

fuzz_target!(|body: &[u8]| {
    let limits = Limits::default();
    if precheck::check_envelope(body, &limits).is_err() {
        return;
    }
    let tight = Limits {
        max_functions: 4,
        max_function_body_bytes: 64,
        ..Limits::default()
    };
    let verdict = precheck::check(body, &limits);
    let tight_verdict = precheck::check(body, &tight);
    if verdict.is_err() {
        assert!(
            tight_verdict.is_err(),
            "tighter limits accepted a refused module"
        );
    }
    match verdict {
        Ok(()) => {
            Validator::new_with_features(ALLOWED_FEATURES)
                .validate_all(body)
                .expect("an accepted module validates with the allowed features");
        }
        Err(LoadError::ForbiddenFeature { feature, .. }) => {
            assert!(
                REFUSED_FEATURES.iter().any(|(name, _)| *name == feature),
                "unknown feature name {feature}"
            );
            let all = REFUSED_FEATURES
                .iter()
                .fold(ALLOWED_FEATURES, |acc, (_, flags)| acc.union(*flags));
            Validator::new_with_features(all)
                .validate_all(body)
                .expect("a module refused for a feature is valid wasm with it");
        }
        Err(
            LoadError::Compile(_)
            | LoadError::TooManyFunctions { .. }
            | LoadError::FunctionTooLarge { .. },
        ) => {}
        Err(other) => panic!("precheck answered {other:?} ({})", other.code()),
    }
});
